package qp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The TCP rendezvous on the host: real kernel TCP over loopback (the
// hello, the ready byte, the liveness channel), fake QPs (fake_test.go)
// opened through the qpOpener seam.

// loopbackListener listens on 127.0.0.1; it is closed at the end of the
// test.
func loopbackListener(t *testing.T) (net.Listener, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).AddrPort()
}

// freePort is a loopback port nothing uses now.
func freePort(t *testing.T) netip.AddrPort {
	ln, ap := loopbackListener(t)
	ln.Close()
	return ap
}

type connResult struct {
	c   *Conn
	err error
}

// acceptOne accepts one TCP connection on ln and runs the rendezvous on it
// with QPs of n.
func acceptOne(ctx context.Context, ln net.Listener, srv netip.AddrPort, n *fakeNet, open qpOpener) <-chan connResult {
	ch := make(chan connResult, 1)
	go func() {
		tc, err := ln.Accept()
		if err != nil {
			ch <- connResult{nil, err}
			return
		}
		c, err := acceptRendezvous(ctx, bindcore.Endpoint{Local: srv}, tc, small().withDefaults(), open)
		ch <- connResult{c, err}
	}()
	return ch
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRendezvousConnectsAndCarriesMessages: Dial's rendezvous from the
// socket's own address and port, and the listener's, over kernel TCP: each
// learns the other's QP from the hello, the peer's socket port becomes
// RemoteAddr, messages go both ways, Close gives the peer io.EOF, and no
// fd is left.
func TestRendezvousConnectsAndCarriesMessages(t *testing.T) {
	testutil.CheckFDs(t)
	n := newFakeNet(t)
	ln, srv := loopbackListener(t)
	local := freePort(t)
	ctx := timeout(t, 10*time.Second)
	acc := acceptOne(ctx, ln, srv, n, n.opener("listener", nil))
	c, err := dialRendezvous(ctx, bindcore.Endpoint{Local: local}, srv, small().withDefaults(), n.opener("dialer", nil))
	if err != nil {
		t.Fatal(err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := r.c
	if c.Mode() != ModeTCP || c.RemoteAddr() != srv || s.RemoteAddr() != local || c.LocalAddr() != local {
		t.Fatalf("dialer %v->%v (%v), listener %v->%v; want %v->%v", c.LocalAddr(), c.RemoteAddr(), c.Mode(), s.LocalAddr(), s.RemoteAddr(), local, srv)
	}
	for i, size := range []int{0, 1, 64, 300} {
		m := msg(i, size)
		mustSend(t, c, m)
		recvCheck(t, s, m)
		mustSend(t, s, m)
		recvCheck(t, c, m)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(nil); !errors.Is(err, io.EOF) {
		t.Fatalf("listener's Recv after the dialer's Close: %v, want io.EOF", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	noRNR(t, n)
}

// TestRendezvousPeerDeathEndsTCPAndGivesECONNRESET: the rendezvous TCP
// connection is the liveness channel: when the peer's end of it goes (its
// process died, the kernel closed its socket), a waiting Recv fails with
// unix.ECONNRESET.
func TestRendezvousPeerDeathEndsTCPAndGivesECONNRESET(t *testing.T) {
	n := newFakeNet(t)
	ln, srv := loopbackListener(t)
	ctx := timeout(t, 10*time.Second)
	acc := acceptOne(ctx, ln, srv, n, n.opener("listener", nil))
	c, err := dialRendezvous(ctx, bindcore.Endpoint{Local: freePort(t)}, srv, small().withDefaults(), n.opener("dialer", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := <-acc
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	got := recvAsync(c, 10)
	blocked(t, got, 20*time.Millisecond, "Recv")
	r.c.link.(*tcpLink).tc.Close() // what the kernel does when the process dies
	if res := within(t, got, 5*time.Second, "Recv after the peer's TCP end"); !errors.Is(res.err, unix.ECONNRESET) || !strings.Contains(res.err.Error(), "rendezvous connection ended") {
		t.Fatalf("Recv after the peer's TCP connection ended: %v, want ECONNRESET", res.err)
	}
}

// rawHello is a hello a test peer sends, for the QP of e.
func rawHello(e *fakeEnd, port uint16) []byte {
	a := e.self()
	rkey, _ := e.register(0, ctrlPage, true)
	h := hello{mode: ModeTCP, port: port, qpn: a.qpn, gid: a.gid, mtu: a.mtu, recvDepth: 8, chunk: 64, ctrlAddr: e.m.addr, ctrlKey: rkey}
	return h.marshal()
}

// TestRendezvousRefusesBadPeers: a peer that is not an rdmabind qp peer
// (its hello), or breaks the handshake (its ready byte), fails the setup
// with ErrProtocol and the TCP connection is closed; a bad hello before any
// QP was opened (the listener reads it first), a bad ready byte after, and
// the setup frees that QP.
func TestRendezvousRefusesBadPeers(t *testing.T) {
	for _, bad := range []string{"hello", "ready"} {
		n := newFakeNet(t)
		other := n.newEnd("other", newLayout(small().withDefaults()))
		ln, srv := loopbackListener(t)
		ctx := timeout(t, 10*time.Second)
		acc := acceptOne(ctx, ln, srv, n, n.opener("listener", nil))
		tc, err := net.Dial("tcp4", srv.String())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		if bad == "hello" {
			tc.Write([]byte(strings.Repeat("GET / HTTP/1.1\r\n", 4)))
		} else {
			tc.Write(rawHello(other, 9))
			io.ReadFull(tc, make([]byte, helloLen))
			tc.Write([]byte{'X'})
		}
		r := <-acc
		if !errors.Is(r.err, ErrProtocol) {
			t.Fatalf("bad %s: %v, want ErrProtocol", bad, r.err)
		}
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadAll(tc); err != nil && !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("bad %s: the TCP connection was not closed: %v", bad, err)
		}
		freed := slices.ContainsFunc(n.events("listener"), func(s string) bool { return strings.Contains(s, "transport closed") })
		if bad == "hello" && (freed || n.opened("listener") != 0) {
			t.Fatalf("bad hello: the listener opened a QP: %q", n.events(""))
		}
		if bad == "ready" && !freed {
			t.Fatalf("bad %s: the setup's QP was not freed: %q", bad, n.events(""))
		}
	}
}

// TestRendezvousSetupFailures: a QP that cannot be opened (no device,
// once the peer's hello is in), a peer that sends nothing until the
// context's deadline, or a context cancelled, fail the setup with that
// error and close the connection.
func TestRendezvousSetupFailures(t *testing.T) {
	n := newFakeNet(t)
	ln, srv := loopbackListener(t)

	acc := acceptOne(timeout(t, 10*time.Second), ln, srv, n, n.opener("listener", unix.ENODEV))
	tc, err := net.Dial("tcp4", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write((&hello{mode: ModeTCP, port: 9, recvDepth: 8, chunk: 64}).marshal())
	if r := <-acc; !errors.Is(r.err, unix.ENODEV) {
		t.Fatalf("open failing: %v, want ENODEV", r.err)
	}

	acc = acceptOne(timeout(t, 100*time.Millisecond), ln, srv, n, n.opener("listener", nil))
	tc2, err := net.Dial("tcp4", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc2.Close()
	if r := <-acc; !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("silent peer past the deadline: %v, want os.ErrDeadlineExceeded", r.err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	acc = acceptOne(ctx, ln, srv, n, n.opener("listener", nil))
	tc3, err := net.Dial("tcp4", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc3.Close()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if r := within(t, acc, 5*time.Second, "setup after cancel"); r.err == nil {
		t.Fatal("setup went on after its context was cancelled")
	}
}

// TestDialTCPFromBindsTheSocketsPort: the rendezvous' TCP connection comes
// from the socket's own address and port; a second one between the same
// two ports fails with EADDRNOTAVAIL (as Dial's doc says), a closed port
// with ECONNREFUSED, a cancelled context with its error.
func TestDialTCPFromBindsTheSocketsPort(t *testing.T) {
	ln, srv := loopbackListener(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	local := freePort(t)
	ctx := timeout(t, 5*time.Second)
	c, err := dialTCPFrom(ctx, local, srv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).AddrPort(); got != local {
		t.Fatalf("connection from %v, want the socket's %v", got, local)
	}
	if _, err := dialTCPFrom(ctx, local, srv); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("second connection between %v and %v: %v, want EADDRNOTAVAIL", local, srv, err)
	}
	if _, err := dialTCPFrom(ctx, freePort(t), freePort(t)); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("to a closed port: %v, want ECONNREFUSED", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dialTCPFrom(cctx, freePort(t), srv); err == nil {
		// A loopback connect may complete at once; then the context
		// was not needed. Nothing to check.
		t.Log("loopback connect completed before the context mattered")
	}
	if ln6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		defer ln6.Close()
		go func() {
			if c, err := ln6.Accept(); err == nil {
				defer c.Close()
				c.Read(make([]byte, 1))
			}
		}()
		c6, err := dialTCPFrom(ctx, netip.MustParseAddrPort("[::1]:0"), ln6.Addr().(*net.TCPAddr).AddrPort())
		if err != nil {
			t.Fatalf("IPv6: %v", err)
		}
		c6.Close()
	}
}

// TestListenerAcceptsRendezvousConnections: a Listener's accept loop over
// kernel TCP with fake QPs: it hands out the connections that completed
// their handshake, reports the one that did not on SetupErrors, and its
// Close closes a connection nobody accepted (whose peer then sees EOF).
func TestListenerAcceptsRendezvousConnections(t *testing.T) {
	n := newFakeNet(t)
	ln, srv := loopbackListener(t)
	l := newListener(bindcore.Endpoint{Local: srv}, small().withDefaults())
	defer l.Close()
	next := func(ctx context.Context) (net.Conn, error) {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		return ln.Accept()
	}
	l.wg.Add(1)
	go acceptLoop(l, "tcp", next, func(ctx context.Context, tc net.Conn) (*Conn, error) {
		return acceptRendezvous(ctx, l.ep, tc, l.opts, n.opener("listener", nil))
	})
	ctx := timeout(t, 10*time.Second)
	var dialed []*Conn
	for range 3 {
		c, err := dialRendezvous(ctx, bindcore.Endpoint{Local: freePort(t)}, srv, small().withDefaults(), n.opener("dialer", nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		dialed = append(dialed, c)
	}
	for i := range 2 {
		s, err := l.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m := msg(i, 100)
		mustSend(t, s, m)
		var from *Conn
		for _, c := range dialed {
			if c.LocalAddr() == s.RemoteAddr() {
				from = c
			}
		}
		if from == nil {
			t.Fatalf("accepted a connection from %v, which nobody dialled", s.RemoteAddr())
		}
		recvCheck(t, from, m)
	}
	bad, err := net.Dial("tcp4", srv.String())
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	bad.Write(make([]byte, helloLen))
	select {
	case err := <-l.SetupErrors():
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("setup error %v, want ErrProtocol", err)
		}
	case <-ctx.Done():
		t.Fatal("no setup error for a bad hello")
	}
	// The third connection's setup is done on the listener's side too (a
	// Close during it would abort it, and its dialer would see the TCP
	// connection end instead of a goodbye).
	eventually(t, 5*time.Second, "the third connection waiting in Accept's queue", func() bool { return len(l.conns) == 1 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The third connection was never accepted: Close closed it.
	eofs := 0
	for _, c := range dialed {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Recv(nil); errors.Is(err, io.EOF) {
			eofs++
		}
	}
	if eofs != 1 {
		t.Fatalf("%d dialled connections saw EOF after the Listener's Close, want 1 (the one nobody accepted)", eofs)
	}
	if _, err := l.Accept(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestDialAndListenCheckTheSocket: Dial and NewListener on what is not a
// socket of a Binder fail with its WSAENOTSOCK.
func TestDialAndListenCheckTheSocket(t *testing.T) {
	if _, err := Dial(context.Background(), nil, netip.MustParseAddrPort("10.77.0.2:7470"), nil); !errors.Is(err, wsa.ErrNotSock) {
		t.Fatalf("Dial on a nil socket: %v", err)
	}
	if _, err := NewListener(nil, nil); !errors.Is(err, wsa.ErrNotSock) {
		t.Fatalf("NewListener on a nil socket: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if d := timeoutOf(ctx, Options{}); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("timeoutOf a context with an hour left: %v", d)
	}
	if d := timeoutOf(context.Background(), Options{SetupTimeout: 3 * time.Second}); d != 3*time.Second {
		t.Fatalf("timeoutOf a context without a deadline: %v, want Options.SetupTimeout", d)
	}
}
