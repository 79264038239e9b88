package qp

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/rdma"
)

// TestOpenVerbsQPWithoutTheDevice: the rendezvous' real opener fails with
// ENODEV for a device that does not exist (or ErrNotSupported without
// cgo), freeing what it made: on a host without RDMA rdma_cm has no
// device, in the SoftRoCE guest its id binds to rxe0, which is not the
// endpoint's device; a socket bound to one address uses its own endpoint,
// and closing a transport whose setup failed before anything was
// allocated is a no-op.
func TestOpenVerbsQPWithoutTheDevice(t *testing.T) {
	own := rdma.Endpoint{Addr: netip.MustParseAddr("10.77.0.1"), Device: "nosuchdev0", Port: 1, GIDIndex: 1}
	ep := bindcore.Endpoint{Local: netip.MustParseAddrPort("10.77.0.1:7470"), Endpoint: own}
	if got, err := endpointFor(ep, netip.MustParseAddr("10.77.0.1")); err != nil || got != own {
		t.Fatalf("endpointFor a bound socket: %+v, %v; want its own endpoint", got, err)
	}
	_, _, err := openVerbsQP(ep, netip.MustParseAddr("10.77.0.1"), newLayout(small().withDefaults()))
	if !errors.Is(err, unix.ENODEV) && !errors.Is(err, ErrNotSupported) {
		t.Fatalf("openVerbsQP on %s: %v, want ENODEV (or ErrNotSupported without cgo)", own.Device, err)
	}
	if err := (&verbsTransport{}).close(); err != nil {
		t.Fatalf("close of an empty transport: %v", err)
	}
}
