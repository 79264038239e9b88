package qp

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/rdmabind/rdmabind/bindcore"
)

// testListener is a Listener with no accept loop, for the tests to start
// their own.
func testListener(t *testing.T) *Listener {
	t.Helper()
	l := newListener(bindcore.Endpoint{Local: netip.MustParseAddrPort("127.0.0.1:7470")}, (&Options{}).withDefaults())
	t.Cleanup(func() { l.Close() })
	return l
}

// TestSetupErrorsKeepsTheNewest: with nobody reading, SetupErrors holds
// the last 64 failed handshakes, the oldest dropped, as its doc says.
func TestSetupErrorsKeepsTheNewest(t *testing.T) {
	l := testListener(t)
	for i := range 70 {
		l.deliver(nil, fmt.Errorf("handshake %d failed", i))
	}
	var got []string
	for len(got) < 70 {
		select {
		case err := <-l.SetupErrors():
			got = append(got, err.Error())
			continue
		default:
		}
		break
	}
	if len(got) != 64 || got[0] != "handshake 6 failed" || got[63] != "handshake 69 failed" {
		t.Fatalf("SetupErrors kept %d: first %q, last %q; want 64, handshakes 6 to 69", len(got), got[0], got[len(got)-1])
	}
}
