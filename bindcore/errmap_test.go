package bindcore

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/rdma"
)

// The mapping, sentinel by sentinel: every sentinel of the packages below
// bindcore that stands for a spec condition, the errno it matches itself
// (0: none, it is Linux's ErrNotSupported) and the WSA code Bind gives for
// it. This list is written out independently of sentinelCodes, and the test
// checks that the two agree in both directions.
var wantSentinelCodes = []struct {
	name     string
	sentinel error
	errno    unix.Errno
	code     wsa.Code
}{
	{"rdma.ErrNoRDMA", rdma.ErrNoRDMA, unix.ENETDOWN, wsa.WSAENETDOWN},
	{"rdma.ErrNoDevice", rdma.ErrNoDevice, unix.ENETDOWN, wsa.WSAENETDOWN},
	{"rdma.ErrPortDown", rdma.ErrPortDown, unix.ENETDOWN, wsa.WSAENETDOWN},
	{"rdma.ErrTopology", rdma.ErrTopology, unix.ENETDOWN, wsa.WSAENETDOWN},
	{"rdma.ErrAddrNotLocal", rdma.ErrAddrNotLocal, unix.EADDRNOTAVAIL, wsa.WSAEADDRNOTAVAIL},
	{"rdma.ErrAddrNotServed", rdma.ErrAddrNotServed, unix.EADDRNOTAVAIL, wsa.WSAEADDRNOTAVAIL},
	{"registry.ErrConflict", registry.ErrConflict, unix.EADDRINUSE, wsa.WSAEADDRINUSE},
	{"registry.ErrFull", registry.ErrFull, unix.ENOBUFS, wsa.WSAENOBUFS},
	{"registry.ErrNotSupported", registry.ErrNotSupported, 0, wsa.WSAENETDOWN},
	{"shadow.ErrNotSupported", shadow.ErrNotSupported, 0, wsa.WSAENETDOWN},
	{"rdmacm.ErrNotSupported", rdmacm.ErrNotSupported, 0, wsa.WSAENETDOWN},
}

func TestSpecErrorSentinels(t *testing.T) {
	if len(wantSentinelCodes) != len(sentinelCodes) {
		t.Errorf("sentinelCodes has %d rows, the test %d", len(sentinelCodes), len(wantSentinelCodes))
	}
	for _, row := range sentinelCodes {
		found := false
		for _, w := range wantSentinelCodes {
			found = found || w.sentinel == row.sentinel
		}
		if !found {
			t.Errorf("sentinelCodes maps %q, which the test does not list", row.sentinel)
		}
	}
	ap := netip.MustParseAddrPort("10.0.0.9:5000")
	for _, w := range wantSentinelCodes {
		t.Run(w.name, func(t *testing.T) {
			if w.errno != 0 && !errors.Is(w.sentinel, w.errno) {
				t.Errorf("%s does not match %v", w.name, w.errno)
			}
			// As the package returns it: operation, input, sentinel,
			// what was expected, and a cause.
			in := fmt.Errorf("pkg: op 10.0.0.9: %w: detail naming the input (expected something): %w", w.sentinel, unix.ENOENT)
			for _, err := range []error{SpecError("bind", ap.String(), in), specError("bind", ap, "step", in)} {
				var we *wsa.Error
				if !errors.As(err, &we) || we.Code != w.code || we.Op != "bind" || we.Input != ap.String() {
					t.Fatalf("%v: want a *wsa.Error %s of bind %s", err, w.code, ap)
				}
				if !errors.Is(err, &wsa.Error{Code: w.code}) || !errors.Is(err, w.code.Errno()) {
					t.Errorf("%v: does not match %s and %v", err, w.code, w.code.Errno())
				}
				if !errors.Is(err, w.sentinel) || !errors.Is(err, unix.ENOENT) {
					t.Errorf("%v: the package's sentinel or the cause is lost", err)
				}
				want := fmt.Sprintf("%s (%d): bind 10.0.0.9:5000: ", w.code, int(w.code))
				if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "pkg: op 10.0.0.9: ") || !strings.Contains(err.Error(), "(expected something)") {
					t.Errorf("%q: want the code, the operation and input, and the package's message", err)
				}
				for _, other := range wsa.Codes() {
					if other != w.code && errors.Is(err, &wsa.Error{Code: other}) {
						t.Errorf("%v matches %s too", err, other)
					}
				}
			}
		})
	}
}

// The errnos of the steps that return no sentinel (the shadow's bind(2),
// rdma_cm) are mapped by specError only, with a message naming the step.
func TestSpecErrorErrnos(t *testing.T) {
	ap := netip.MustParseAddrPort("10.0.0.9:5000")
	for _, tc := range []struct {
		errno unix.Errno
		code  wsa.Code
		msg   string
	}{
		{unix.EADDRINUSE, wsa.WSAEADDRINUSE, "port 5000 is held in the kernel TCP port space by a socket that does not share it"},
		{unix.EADDRNOTAVAIL, wsa.WSAEADDRNOTAVAIL, "10.0.0.9 is not an address of this host (kernel TCP)"},
		{unix.ENODEV, wsa.WSAEADDRNOTAVAIL, "no RDMA device serves 10.0.0.9 (kernel TCP)"},
		{unix.ENETDOWN, wsa.WSAENETDOWN, "the RDMA device went away (kernel TCP)"},
		{unix.ENXIO, wsa.WSAENETDOWN, "the RDMA device went away (kernel TCP)"},
		{unix.ENOBUFS, wsa.WSAENOBUFS, "out of kernel TCP resources"},
		{unix.ENOMEM, wsa.WSAENOBUFS, "out of kernel TCP resources"},
		{unix.EMFILE, wsa.WSAENOBUFS, "out of kernel TCP resources"},
		{unix.ENFILE, wsa.WSAENOBUFS, "out of kernel TCP resources"},
	} {
		in := fmt.Errorf("shadow bind %s: %w", ap, tc.errno)
		err := specError("bind", ap, "kernel TCP", in)
		if code, ok := wsa.CodeOf(err); !ok || code != tc.code || !errors.Is(err, tc.errno) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: got %v, want %s saying %q", tc.errno, err, tc.code, tc.msg)
		}
		if got := SpecError("bind", ap.String(), in); got != in {
			t.Errorf("SpecError(%v) = %v, want it unchanged", tc.errno, got)
		}
	}
}

// Sentinels that stand for no spec condition pass through unchanged, and so
// does an error that already has a code.
func TestSpecErrorPassesOthers(t *testing.T) {
	ap := netip.MustParseAddrPort("10.0.0.9:5000")
	for _, s := range []error{
		registry.ErrCorrupt, registry.ErrVersion, registry.ErrPermission, registry.ErrClosed, registry.ErrInvalid,
		shadow.ErrClosed, rdmacm.ErrClosed, steer.ErrNotPermitted, steer.ErrIncompatible, steer.ErrClosed,
		errors.New("plain"),
	} {
		in := fmt.Errorf("pkg: %w", s)
		if got := specError("bind", ap, "step", in); got != in {
			t.Errorf("%v: mapped to %v, want it unchanged", s, got)
		}
	}
	we := wsa.New(wsa.WSAEINVAL, "bind", "x", "already bound")
	if got := specError("bind", ap, "step", fmt.Errorf("outer: %w", we)); !errors.Is(got, wsa.ErrInvalid) {
		t.Errorf("a wrapped *wsa.Error became %v", got)
	}
	if SpecError("bind", "x", nil) != nil || specError("bind", ap, "step", nil) != nil {
		t.Error("nil mapped to an error")
	}
}

// The real errors of rdma's resolution, on its fixtures, map to the codes
// the spec gives, with rdma's message (the address, the netdev, what was
// expected) in the text.
func TestSpecErrorResolve(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		addr    string
		code    wsa.Code
		msg     string
	}{
		{"softroce", "10.77.0.9", wsa.WSAEADDRNOTAVAIL, "10.77.0.9 is not an address of this host"},
		{"softroce", "127.0.0.1", wsa.WSAEADDRNOTAVAIL, "127.0.0.1 is a loopback address"},
		{"connectx", "192.0.2.9", wsa.WSAEADDRNOTAVAIL, "192.0.2.9 is on netdev eth9, which no RDMA device serves"},
		{"connectx", "192.168.11.5", wsa.WSAENETDOWN, "which is DOWN"},
		{"nordma", "192.0.2.2", wsa.WSAENETDOWN, "no RDMA subsystem: /dev/infiniband/rdma_cm not present"},
	} {
		root := testutil.RDMAFixture(tc.fixture)
		topo, err := rdma.ReadTopology(root)
		if err != nil {
			t.Fatal(err)
		}
		addrs, err := rdma.ReadAddrTable(root + "/addrs.txt")
		if err != nil {
			t.Fatal(err)
		}
		_, err = rdma.NewResolver(topo, addrs).Resolve(netip.MustParseAddr(tc.addr))
		ap := tc.addr + ":5000"
		err = SpecError("bind", ap, err)
		want := fmt.Sprintf("%s (%d): bind %s: rdma: resolve %s: ", tc.code, int(tc.code), ap, tc.addr)
		if code, _ := wsa.CodeOf(err); code != tc.code || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %s: %v, want %q... saying %q", tc.fixture, tc.addr, err, want, tc.msg)
		}
	}
}

// bindcore.Resolve, the CLI's resolve: on a host without RDMA, WSAENETDOWN
// from rdma.ErrNoRDMA.
func TestResolveNoRDMA(t *testing.T) {
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err == nil {
		t.Skip("this host has RDMA")
	}
	_, err := Resolve(netip.MustParseAddr("10.0.0.9"))
	wantCode(t, err, wsa.WSAENETDOWN)
	if !errors.Is(err, rdma.ErrNoRDMA) || !strings.Contains(err.Error(), "resolve 10.0.0.9") {
		t.Fatalf("%v: want rdma.ErrNoRDMA as the cause, naming the address", err)
	}
}
