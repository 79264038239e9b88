package qp

import (
	"errors"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// A connection whose device goes away frees itself (Conn.lose): the
// device cannot finish going while the process holds anything of it, and
// the app may be blocked elsewhere. These tests drive the loss through the
// fake link (rdma_cm's DEVICE_REMOVAL on the connection's id), through a
// fake device hub (cgo/rdmacm's WatchDevices), and through the
// rendezvous' device link (openVerbsQP's id).

// lossBound is how soon a blocked Send or Recv must fail after the loss.
const lossBound = time.Second

// goroutinesBack waits until no more goroutines run than before.
func goroutinesBack(t *testing.T, before int) {
	t.Helper()
	end := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(end) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// isLoss checks err is the loss of dev: it matches unix.ENETDOWN and
// names the device.
func isLoss(err error, dev string) bool {
	return errors.Is(err, unix.ENETDOWN) && strings.Contains(err.Error(), "device "+dev+" removed")
}

// blockedSendAndRecv starts a Send that waits for credit (the peer
// receives nothing) and a Recv that waits for a message on a, and checks
// both are blocked.
func blockedSendAndRecv(t *testing.T, a *Conn) (<-chan error, <-chan recvResult) {
	t.Helper()
	send := sendAsync(a, msg(1, 20*64)) // 20 chunks, the peer has 8 buffers
	recv := recvAsync(a, 64)
	blocked(t, send, 30*time.Millisecond, "Send out of credit")
	blocked(t, recv, 0, "Recv")
	return send, recv
}

// checkTornDown checks a freed itself after losing dev: its blocked Send
// and Recv failed with the loss within lossBound, the transport and the
// link are closed and its watcher ended, with no goodbye and nothing used
// after close (the fake fails the test on that); later calls fail with
// the loss, not ErrClosed; the app's Close then returns nil at once, twice,
// and after it calls fail with ErrClosed.
func checkTornDown(t *testing.T, a *Conn, n *fakeNet, dev string, lost time.Time, send <-chan error, recv <-chan recvResult) {
	t.Helper()
	if err := within(t, send, lossBound, "Send after the loss"); !isLoss(err, dev) {
		t.Fatalf("blocked Send after the loss of %s: %v, want ENETDOWN naming it", dev, err)
	}
	if r := within(t, recv, lossBound, "Recv after the loss"); !isLoss(r.err, dev) {
		t.Fatalf("blocked Recv after the loss of %s: %v, want ENETDOWN naming it", dev, r.err)
	}
	t.Logf("blocked Send and Recv failed %v after the loss", time.Since(lost).Round(time.Microsecond))
	// Nobody called Close: the connection freed itself.
	eventually(t, lossBound, "the transport, link and watcher of a closed", func() bool {
		ev := n.events("a: ")
		return slices.Contains(ev, "a: link closed") && slices.Contains(ev, "a: watch returned")
	})
	ev := n.events("a: ")
	it := slices.IndexFunc(ev, func(s string) bool { return strings.HasPrefix(s, "a: transport closed") })
	il := slices.Index(ev, "a: link closed")
	if it < 0 || il < it {
		t.Fatalf("a's log %q: want the transport closed, then the link", ev)
	}
	if slices.Contains(ev, "a: post goodbye") {
		t.Fatalf("a said goodbye on a lost device: %q", ev)
	}
	t.Logf("a freed itself %v after the loss", time.Since(lost).Round(time.Microsecond))
	if err := a.Send(msg(2, 10)); !isLoss(err, dev) || errors.Is(err, ErrClosed) {
		t.Fatalf("Send after the teardown: %v, want the loss, not ErrClosed", err)
	}
	if _, err := a.Recv(make([]byte, 10)); !isLoss(err, dev) || errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after the teardown: %v, want the loss, not ErrClosed", err)
	}
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatalf("Close after the loss: %v, want nil", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close after the loss: %v, want nil", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Close after the teardown took %v", d)
	}
	if err := a.Send(msg(3, 10)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after the app's Close: %v, want ErrClosed", err)
	}
	if n := len(n.events("a: transport closed")); n != 1 {
		t.Fatalf("a's transport closed %d times", n)
	}
}

// TestDeviceRemovalOnLinkTearsConnectionDown: rdma_cm's DEVICE_REMOVAL on
// the connection's id (the link) fails a blocked Send and Recv with
// ENETDOWN naming the device within a second, frees the transport and the
// link without the app's Close and without a goodbye, leaves no
// goroutine; the app's Close returns nil; the peer's Recv fails with
// ECONNRESET (its link hears of the end).
func TestDeviceRemovalOnLinkTearsConnectionDown(t *testing.T) {
	useFakeHub(t)
	before := runtime.NumGoroutine()
	func() {
		a, b, ea, _, n := fakePair(t, small(), small())
		ea.link.dev = "rxe9" // fakePair started a before: watch reports it by its link
		send, recv := blockedSendAndRecv(t, a)
		lost := time.Now()
		ea.removeDevice()
		checkTornDown(t, a, n, "rxe9", lost, send, recv)
		// b holds 8 chunks of a message that never ends: its Recv fails
		// once it has consumed them.
		peer := recvAsync(b, 64*20)
		for {
			r := within(t, peer, lossBound, "peer's Recv")
			if r.err != nil {
				if !errors.Is(r.err, unix.ECONNRESET) {
					t.Fatalf("peer's Recv after the loss: %v, want ECONNRESET", r.err)
				}
				break
			}
			peer = recvAsync(b, 64)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("peer's Close: %v", err)
		}
	}()
	goroutinesBack(t, before)
}

// TestDeviceHubLossTearsConnectionDown: the process's device hub reporting
// the connection's device lost (WatchDevices; no event on the link, as
// when uverbs goes first or the id was never attached) tears it down just
// the same; a loss of another device, or a device appearing, does nothing;
// the subscription ends with the connection.
func TestDeviceHubLossTearsConnectionDown(t *testing.T) {
	hub := useFakeHub(t)
	before := runtime.NumGoroutine()
	func() {
		n := newFakeNet(t)
		a, b, ea, eb := fakeStarted(t, n, "rxe0", "rxe1")
		if s := hub.subscribers(); s != 2 {
			t.Fatalf("%d subscribers to the device hub, want one per connection", s)
		}
		send, recv := blockedSendAndRecv(t, a)
		hub.publish(rdmacm.DeviceEvent{Device: "rxe7", Lost: true})
		hub.publish(rdmacm.DeviceEvent{Device: "rxe0"})
		blocked(t, recv, 30*time.Millisecond, "Recv after another device's loss")
		lost := time.Now()
		hub.publish(rdmacm.DeviceEvent{Device: "rxe0", Lost: true})
		checkTornDown(t, a, n, "rxe0", lost, send, recv)
		if s := hub.subscribers(); s != 1 {
			t.Fatalf("%d subscribers after a's teardown, want 1 (b's)", s)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("peer's Close: %v", err)
		}
		if s := hub.subscribers(); s != 0 {
			t.Fatalf("%d subscribers after both closed", s)
		}
		_, _ = ea, eb
	}()
	goroutinesBack(t, before)
}

// fakeStarted is fakePair with a on device devA and b on devB, known
// before the connections start (so that they subscribe to the hub).
func fakeStarted(t *testing.T, n *fakeNet, devA, devB string) (a, b *Conn, ea, eb *fakeEnd) {
	t.Helper()
	la := netip.MustParseAddrPort("10.77.0.1:7001")
	lb := netip.MustParseAddrPort("10.77.0.2:7002")
	a, ea = n.fakeConn("a", small(), la)
	b, eb = n.fakeConn("b", small(), lb)
	ea.link.dev, eb.link.dev = devA, devB
	a.remote, b.remote = lb, la
	ea.peer, eb.peer = eb, ea
	ha, hb := a.hello(la.Port()), b.hello(lb.Port())
	pa, _ := parseHello(ha.marshal())
	pb, _ := parseHello(hb.marshal())
	a.start(pb)
	b.start(pa)
	t.Cleanup(func() {
		n.release()
		a.Close()
		b.Close()
	})
	return a, b, ea, eb
}

// TestDeviceLostBeforeStartTearsDownAtOnce: a device the hub already
// reports lost when the connection starts (lost during the setup) tears
// the connection down at once.
func TestDeviceLostBeforeStartTearsDownAtOnce(t *testing.T) {
	hub := useFakeHub(t)
	hub.publish(rdmacm.DeviceEvent{Device: "rxe0", Lost: true})
	n := newFakeNet(t)
	a, _, _, _ := fakeStarted(t, n, "rxe0", "rxe1")
	if _, err := a.Recv(make([]byte, 10)); !isLoss(err, "rxe0") {
		t.Fatalf("Recv on a connection whose device was lost at its start: %v", err)
	}
	eventually(t, lossBound, "a's link closed", func() bool { return len(n.events("a: link closed")) == 1 })
}

// TestDeviceLossDuringCloseAndCloseDuringLoss: the loss and the app's
// Close at the same time free everything once, and Close returns without
// error or waiting on itself.
func TestDeviceLossDuringCloseAndCloseDuringLoss(t *testing.T) {
	useFakeHub(t)
	for i := range 50 {
		a, _, ea, _, n := fakePair(t, small(), small())
		ea.link.dev = "rxe0"
		recv := recvAsync(a, 64)
		closed := make(chan error, 1)
		if i%2 == 0 {
			ea.removeDevice()
			go func() { closed <- a.Close() }()
		} else {
			go func() { closed <- a.Close() }()
			ea.removeDevice()
		}
		if err := within(t, closed, 5*time.Second, "Close"); err != nil && i%2 == 0 {
			t.Fatalf("Close racing the loss: %v", err)
		}
		r := within(t, recv, lossBound, "Recv")
		if !errors.Is(r.err, ErrClosed) && !isLoss(r.err, "rxe0") {
			t.Fatalf("Recv: %v, want ErrClosed or the loss", r.err)
		}
		eventually(t, lossBound, "a's link closed", func() bool { return len(n.events("a: link closed")) == 1 })
		if k := len(n.events("a: transport closed")); k != 1 {
			t.Fatalf("transport closed %d times", k)
		}
	}
}

// TestRendezvousDeviceRemovalTearsConnectionDown: the rendezvous' QP hangs
// off a device link of its own (openVerbsQP's rdma_cm id); its
// DEVICE_REMOVAL tears the connection down (transport, TCP connection,
// then the device link), and the peer, over real kernel TCP, fails with
// ECONNRESET at once.
func TestRendezvousDeviceRemovalTearsConnectionDown(t *testing.T) {
	testutil.CheckFDs(t)
	useFakeHub(t)
	before := runtime.NumGoroutine()
	func() {
		n := newFakeNet(t)
		ln, srv := loopbackListener(t)
		links := make(chan *fakeDevLink, 2)
		ctx := timeout(t, 10*time.Second)
		acc := acceptOne(ctx, ln, srv, n, n.devOpener("listener", "rxe1", links))
		c, err := dialRendezvous(ctx, bindcore.Endpoint{Local: freePort(t)}, srv, small().withDefaults(), n.devOpener("dialer", "rxe0", links))
		if err != nil {
			t.Fatal(err)
		}
		r := <-acc
		if r.err != nil {
			t.Fatal(r.err)
		}
		l1, l2 := <-links, <-links
		dl := l1
		if dl.dev != "rxe0" {
			dl = l2
		}
		recv := recvAsync(c, 64)
		peer := recvAsync(r.c, 64)
		blocked(t, recv, 30*time.Millisecond, "Recv")
		lost := time.Now()
		dl.remove()
		if res := within(t, recv, lossBound, "Recv after the loss"); !isLoss(res.err, "rxe0") {
			t.Fatalf("Recv after the loss: %v, want ENETDOWN naming rxe0", res.err)
		}
		if res := within(t, peer, lossBound, "peer's Recv after the loss"); !errors.Is(res.err, unix.ECONNRESET) {
			t.Fatalf("peer's Recv: %v, want ECONNRESET", res.err)
		}
		t.Logf("Recv and the peer's Recv failed %v after the loss", time.Since(lost).Round(time.Microsecond))
		eventually(t, lossBound, "the dialer's device link closed", func() bool {
			return len(n.events("dialer device link: closed")) == 1
		})
		ev := n.events("dialer")
		if it, il := slices.IndexFunc(ev, func(s string) bool { return strings.HasPrefix(s, "dialer: transport closed") }), slices.Index(ev, "dialer device link: closed"); it < 0 || il < it {
			t.Fatalf("dialer's log %q: want the transport closed before the device link", ev)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("Close after the loss: %v", err)
		}
		if err := r.c.Close(); err != nil {
			t.Fatalf("peer's Close: %v", err)
		}
		if k := len(n.events("listener device link: closed")); k != 1 {
			t.Fatalf("the listener's device link closed %d times", k)
		}
	}()
	goroutinesBack(t, before)
}
