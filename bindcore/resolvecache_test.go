package bindcore

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/rdma"
)

// A Bind of an address the cache cannot resolve reloads the topology (every
// GID file of every port) only when the cache may be out of date: not for
// loopback, not again within missReload while the host's addresses are the
// same. Before, every such Bind reloaded: 400 Binds of 127.0.0.1 in the
// guest took 125 s, all of it reading sysfs.
func TestResolveCacheMissReload(t *testing.T) {
	c := resolveCache{root: testutil.RDMAFixture("softroce")}
	notHost := netip.MustParseAddr("192.0.2.1") // TEST-NET-1: no host holds it
	if _, err := c.resolve(notHost, false); err == nil {
		t.Fatalf("resolve %v on the fixture: no error", notHost)
	}
	first := c.loaded
	if first.IsZero() || c.res == nil {
		t.Fatal("the first resolve did not load the topology")
	}
	for _, a := range []netip.Addr{notHost, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
		_, err := c.resolve(a, false)
		if !errors.Is(err, unix.EADDRNOTAVAIL) {
			t.Errorf("resolve %v: %v, want EADDRNOTAVAIL", a, err)
		}
		if c.loaded != first {
			t.Errorf("resolve %v %v after the load reloaded the unchanged topology", a, time.Since(first))
		}
	}

	// Older than missReload: a miss reloads, except for loopback.
	old := time.Now().Add(-2 * missReload)
	c.loaded = old
	c.resolve(netip.MustParseAddr("127.0.0.1"), false)
	if c.loaded != old {
		t.Error("a loopback miss reloaded the topology")
	}
	c.resolve(notHost, false)
	if !c.loaded.After(old) {
		t.Error("a miss on a topology older than missReload did not reload it")
	}

	// A change of the host's addresses reloads at once.
	c.addrs = rdma.NewAddrTable(nil)
	before := c.loaded
	c.resolve(notHost, false)
	if !c.loaded.After(before) {
		t.Error("a miss after the host's addresses changed did not reload")
	}
}
