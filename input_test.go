package rdmabind

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/qp"
)

// testBinder is a Binder of the test's own registry directory.
func testBinder(t *testing.T) *bindcore.Binder {
	t.Helper()
	b, err := bindcore.Open(bindcore.Options{RegistryDir: t.TempDir()})
	if err != nil {
		t.Skipf("no Binder here: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// opErr checks that err is a *net.OpError of op and returns its Err.
func opErr(t *testing.T, err error, op string) error {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || err != error(oe) {
		t.Fatalf("error %T %v, want a *net.OpError", err, err)
	}
	if oe.Op != op {
		t.Fatalf("Op %q, want %q (%v)", oe.Op, op, err)
	}
	return oe.Err
}

// Bad input gives package net's errors, wrapped in *net.OpError, and
// leaves no descriptor behind.
func TestBadInput(t *testing.T) {
	testutil.CheckFDs(t)
	b := testBinder(t)
	ctx := context.Background()
	lc := &ListenConfig{Binder: b}
	d := &Dialer{Binder: b, Timeout: 5 * time.Second}

	for _, nw := range []string{"udp", "tcp", "unix", ""} {
		_, err := lc.Listen(ctx, nw, "127.0.0.1:0")
		var une net.UnknownNetworkError
		if !errors.As(opErr(t, err, "listen"), &une) {
			t.Errorf("Listen(%q): %v, want net.UnknownNetworkError", nw, err)
		}
	}
	_, err := d.DialContext(ctx, "udp", "127.0.0.1:7000")
	var une net.UnknownNetworkError
	if !errors.As(opErr(t, err, "dial"), &une) {
		t.Errorf("Dial(udp): %v, want net.UnknownNetworkError", err)
	}

	for _, tc := range []struct{ network, addr string }{
		{"rdma", "nonsense"},
		{"rdma", "10.0.0.1"},
		{"rdma", "10.0.0.1:99999"},
		{"rdma", "10.0.0.1:-1"},
		{"rdma4", "[::1]:7000"},
		{"rdma6", "127.0.0.1:7000"},
	} {
		_, err := lc.Listen(ctx, tc.network, tc.addr)
		var ae *net.AddrError
		if !errors.As(opErr(t, err, "listen"), &ae) {
			t.Errorf("Listen(%q, %q): %v, want a *net.AddrError", tc.network, tc.addr, err)
		}
		_, err = d.DialContext(ctx, tc.network, tc.addr)
		if !errors.As(opErr(t, err, "dial"), &ae) {
			t.Errorf("Dial(%q, %q): %v, want a *net.AddrError", tc.network, tc.addr, err)
		}
	}
	// A dial needs a host.
	_, err = d.DialContext(ctx, "rdma", ":7000")
	var ae *net.AddrError
	if !errors.As(opErr(t, err, "dial"), &ae) {
		t.Errorf("Dial(:7000): %v, want a *net.AddrError", err)
	}

}

func TestAddr(t *testing.T) {
	a := newAddr(netipMust("[::ffff:10.0.0.1]:80"))
	if a.Network() != "rdma" || a.String() != "10.0.0.1:80" {
		t.Fatalf("Addr %s/%s, want rdma/10.0.0.1:80", a.Network(), a)
	}
	var nilAddr *Addr
	if nilAddr.String() != "<nil>" {
		t.Fatal("nil Addr")
	}
}

func netipMust(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// With RDMA: an address that is not the host's is the spec's
// WSAEADDRNOTAVAIL; a dial to a port where nothing listens is refused
// (ECONNREFUSED); nothing is left behind.
func TestBadAddressesWithRDMA(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	ctx := context.Background()
	local := net.JoinHostPort(testutil.LocalAddr(t), "0")
	// Warm-up: librdmacm's context of the device (its uverbs and async
	// event descriptors) lives as long as the process.
	warm := testBinder(t)
	ln, err := (&ListenConfig{Binder: warm}).Listen(ctx, "rdma", local)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	warm.Close()
	testutil.CheckFDs(t)
	b := testBinder(t)
	lc := &ListenConfig{Binder: b}
	d := &Dialer{Binder: b, Timeout: 5 * time.Second}
	var ae *net.AddrError
	// Addresses that are not the host's (TEST-NET-1, never assigned):
	// the spec's WSAEADDRNOTAVAIL.
	_, err = lc.Listen(ctx, "rdma", "192.0.2.1:7000")
	if e := opErr(t, err, "listen"); !errors.Is(e, wsa.ErrAddrNotAvail) {
		t.Errorf("Listen on 192.0.2.1: %v, want WSAEADDRNOTAVAIL", err)
	}
	d2 := *d
	d2.LocalAddr = &net.TCPAddr{IP: net.ParseIP("192.0.2.1")}
	_, err = d2.DialContext(ctx, "rdma", "192.0.2.2:7000")
	if e := opErr(t, err, "dial"); !errors.Is(e, wsa.ErrAddrNotAvail) {
		t.Errorf("Dial from 192.0.2.1: %v, want WSAEADDRNOTAVAIL", err)
	}
	d2.LocalAddr = &net.TCPAddr{IP: net.ParseIP("::1")}
	_, err = d2.DialContext(ctx, "rdma", "192.0.2.2:7000")
	if !errors.As(opErr(t, err, "dial"), &ae) {
		t.Errorf("Dial from ::1 to an IPv4 address: %v, want a *net.AddrError", err)
	}

	// Nothing listens on the port: refused, over rdma_cm and over the
	// rendezvous.
	ln, err = lc.Listen(ctx, "rdma", local)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, mode := range []qp.Mode{qp.ModeCM, qp.ModeTCP} {
		d3 := *d
		d3.Options = &qp.Options{Mode: mode}
		t0 := time.Now()
		_, err = d3.DialContext(ctx, "rdma", addr)
		took := time.Since(t0)
		if e := opErr(t, err, "dial"); !errors.Is(e, unix.ECONNREFUSED) {
			t.Errorf("Dial %v to %s where nothing listens: %v, want ECONNREFUSED", mode, addr, err)
		}
		// Over rdma_cm a refusal for want of a listener is retried for
		// RefusedRetry (a listener's handover), and no longer.
		if mode == qp.ModeCM && took < qp.DefaultRefusedRetry {
			t.Errorf("Dial %v refused after %v, before RefusedRetry (%v) ended", mode, took, qp.DefaultRefusedRetry)
		}
		t.Logf("Dial %v where nothing listens: refused after %v", mode, took)
	}
}
