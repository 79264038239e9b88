//go:build linux

package rdmacm

// Tests of the Go side (event dispatch, lifetimes, netpoller waits, netns
// threads) against the fake channel of fake_test.go: no device needed.

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

func getEvent(t *testing.T, ec *EventChannel) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ev, err := ec.GetEvent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestEventFindsItsID(t *testing.T) {
	ec, f := newFake(t)
	a, err := ec.CreateID(PortSpaceTCP)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ec.CreateID(PortSpaceUDP)
	if err != nil {
		t.Fatal(err)
	}
	f.push(rawEvent{typ: EventEstablished, key: fakeOf(b).key, priv: []byte("hi")})
	ev := getEvent(t, ec)
	if ev.ID != b || ev.Listener != nil || ev.Type != EventEstablished || string(ev.PrivateData) != "hi" {
		t.Fatalf("event %+v, want Established for b", ev)
	}
	if ev.Err() != nil {
		t.Fatal(ev.Err())
	}
	f.push(rawEvent{typ: EventAddrError, status: -int(unix.ETIMEDOUT), key: fakeOf(a).key})
	ev = getEvent(t, ec)
	if ev.ID != a || !errors.Is(ev.Err(), unix.ETIMEDOUT) {
		t.Fatalf("event %+v (%v), want AddrError ETIMEDOUT for a", ev, ev.Err())
	}
	if n := f.ackCount(); n != 2 {
		t.Fatalf("%d acks, want 2", n)
	}
}

func TestConnectRequestGivesNewID(t *testing.T) {
	ec, f := newFake(t)
	l, err := ec.CreateID(PortSpaceTCP)
	if err != nil {
		t.Fatal(err)
	}
	lkey := fakeOf(l).key
	// librdmacm hands the new id over with the listener's context.
	nid := &fakeID{ch: f, name: "conn", key: lkey}
	f.push(rawEvent{typ: EventConnectRequest, key: lkey, listenKey: lkey, newID: nid, priv: []byte{7}})
	ev := getEvent(t, ec)
	if ev.Type != EventConnectRequest || ev.Listener != l || ev.ID == nil || ev.ID == l {
		t.Fatalf("event %+v, want a connect request on l with a new ID", ev)
	}
	if nid.key == lkey || nid.key == 0 || ev.ID.s.key != nid.key {
		t.Fatalf("new id key %d, listener %d, ID %d", nid.key, lkey, ev.ID.s.key)
	}
	if ev.ID.Channel() != ec || ev.ID.PortSpace() != PortSpaceTCP {
		t.Fatal("new ID not on the listener's channel and port space")
	}
	// The next event of the new id finds the new ID, not the listener.
	f.push(rawEvent{typ: EventDisconnected, key: nid.key})
	if ev2 := getEvent(t, ec); ev2.ID != ev.ID {
		t.Fatalf("disconnect went to %p, want %p", ev2.ID, ev.ID)
	}
	if err := ev.ID.Close(); err != nil {
		t.Fatal(err)
	}
	if !nid.gone {
		t.Fatal("new id not destroyed by Close")
	}
}

func TestEventsOfGoneIDsAreSkipped(t *testing.T) {
	ec, f := newFake(t)
	a, _ := ec.CreateID(PortSpaceTCP)
	gone, _ := ec.CreateID(PortSpaceTCP)
	goneKey := fakeOf(gone).key
	gone.Close()
	orphan := &fakeID{ch: f, name: "orphan", key: goneKey}
	f.push(rawEvent{typ: EventConnectRequest, key: goneKey, listenKey: goneKey, newID: orphan})
	f.push(rawEvent{typ: EventDisconnected, key: goneKey})
	f.push(rawEvent{typ: EventEstablished, key: fakeOf(a).key})
	if ev := getEvent(t, ec); ev.ID != a {
		t.Fatalf("got %+v, want a's event", ev)
	}
	if n := f.ackCount(); n != 3 {
		t.Fatalf("%d acks, want 3", n)
	}
	if !orphan.gone {
		t.Fatal("connect request of a gone listener: new id not destroyed")
	}
}

func TestGetEventDeadline(t *testing.T) {
	ec, f := newFake(t)
	a, _ := ec.CreateID(PortSpaceTCP)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ec.GetEvent(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want DeadlineExceeded", err)
	}
	// It waited for the deadline (the guest's 6.12 kernel wakes the poller
	// up to a millisecond before it: the clocks differ in their last digits).
	if d := time.Since(start); d < 45*time.Millisecond {
		t.Fatalf("returned after %v, before the deadline of 50 ms", d)
	}
	// The deadline does not stick to the channel.
	f.push(rawEvent{typ: EventEstablished, key: fakeOf(a).key})
	if ev := getEvent(t, ec); ev.ID != a {
		t.Fatalf("got %+v", ev)
	}
	// An event already queued is not taken with an expired context.
	f.push(rawEvent{typ: EventEstablished, key: fakeOf(a).key})
	if _, err := ec.GetEvent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired ctx: %v", err)
	}
	if ev := getEvent(t, ec); ev.ID != a {
		t.Fatalf("got %+v", ev)
	}
}

func TestGetEventCancel(t *testing.T) {
	ec, _ := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	if _, err := ec.GetEvent(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want Canceled", err)
	}
	// A cancel of an earlier call does not end a later one.
	ec2, f := newFake(t)
	a, _ := ec2.CreateID(PortSpaceTCP)
	for range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		f.push(rawEvent{typ: EventEstablished, key: fakeOf(a).key})
		if _, err := ec2.GetEvent(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
}

func TestCloseWakesGetEvent(t *testing.T) {
	ec, _ := newFake(t)
	errc := make(chan error)
	go func() {
		_, err := ec.GetEvent(context.Background())
		errc <- err
	}()
	time.Sleep(30 * time.Millisecond)
	if err := ec.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GetEvent still waiting after Close")
	}
}

func TestChannelCloseClosesIDsFirst(t *testing.T) {
	ec, f := newFake(t)
	a, _ := ec.CreateID(PortSpaceTCP)
	b, _ := ec.CreateID(PortSpaceIB)
	c, _ := ec.CreateID(PortSpaceUDP)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ec.Close(); err != nil {
		t.Fatal(err)
	}
	got := f.destroyed()
	if len(got) != 4 || got[0] != "id2" || got[3] != "channel" || !slices.Contains(got, "id1") || !slices.Contains(got, "id3") {
		t.Fatalf("destroy order %v, want id2, then id1 and id3, then channel", got)
	}
	for _, id := range []*ID{a, b, c} {
		if err := id.Close(); err != nil {
			t.Fatal(err)
		}
		if err := id.Bind(netip.MustParseAddrPort("10.0.0.1:1")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Bind after close: %v", err)
		}
		if err := id.Listen(1); !errors.Is(err, ErrClosed) {
			t.Fatalf("Listen after close: %v", err)
		}
		if err := id.SetReuseAddr(true); !errors.Is(err, ErrClosed) {
			t.Fatalf("SetReuseAddr after close: %v", err)
		}
		if id.LocalAddr().IsValid() || id.DeviceName() != "" || id.PortNum() != 0 {
			t.Fatal("closed ID reports an address or device")
		}
	}
	if err := ec.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.CreateID(PortSpaceTCP); !errors.Is(err, ErrClosed) {
		t.Fatalf("CreateID after close: %v", err)
	}
	if _, err := ec.GetEvent(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetEvent after close: %v", err)
	}
	if got := f.destroyed(); len(got) != 4 {
		t.Fatalf("second Close destroyed more: %v", got)
	}
}

func TestZeroValues(t *testing.T) {
	var ec EventChannel
	var nilEC *EventChannel
	for _, c := range []*EventChannel{&ec, nilEC} {
		if _, err := c.CreateID(PortSpaceTCP); !errors.Is(err, ErrClosed) {
			t.Fatalf("CreateID: %v", err)
		}
		if _, err := c.GetEvent(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("GetEvent: %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var id ID
	var nilID *ID
	for _, i := range []*ID{&id, nilID} {
		if err := i.Bind(netip.MustParseAddrPort("10.0.0.1:1")); !errors.Is(err, ErrClosed) {
			t.Fatalf("Bind: %v", err)
		}
		if err := i.Close(); err != nil {
			t.Fatal(err)
		}
		if i.LocalAddr().IsValid() || i.DeviceName() != "" || i.PortNum() != 0 || i.Channel() != nil {
			t.Fatal("zero ID reports something")
		}
	}
}

func TestIDMethodsReachOps(t *testing.T) {
	ec, _ := newFake(t)
	id, _ := ec.CreateID(PortSpaceTCP)
	if err := id.SetReuseAddr(true); err != nil {
		t.Fatal(err)
	}
	if err := id.SetAFOnly(true); err != nil {
		t.Fatal(err)
	}
	if err := id.Bind(netip.AddrPort{}); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("invalid addr: %v", err)
	}
	if err := id.Bind(netip.MustParseAddrPort("[fe80::1%no-such-if0]:1")); !errors.Is(err, unix.ENXIO) {
		t.Fatalf("unknown zone: %v", err)
	}
	if err := id.Bind(netip.MustParseAddrPort("[fe80::1%7]:0")); err != nil {
		t.Fatal(err)
	}
	f := fakeOf(id)
	if f.opts[optReuseAddr] != 1 || f.opts[optAFOnly] != 1 {
		t.Fatalf("options %v", f.opts)
	}
	if got, want := id.LocalAddr(), netip.MustParseAddrPort("[fe80::1%7]:40000"); got != want {
		t.Fatalf("LocalAddr %v, want %v", got, want)
	}
	if id.DeviceName() != "fake0" || id.PortNum() != 1 {
		t.Fatal("device")
	}
	err := id.Bind(netip.MustParseAddrPort("10.0.0.1:5"))
	if !errors.Is(err, unix.EINVAL) || err.Error() != "rdma_bind_addr 10.0.0.1:5: invalid argument" {
		t.Fatalf("second bind: %q", err)
	}
	if _, err := ec.CreateID(PortSpace(9)); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("bad port space: %v", err)
	}
}

// newNetns makes a network namespace (testutil.NewNetNS) and returns an fd
// of it. With setup, setup runs on a thread inside it first (a command it
// starts is in it too).
func newNetns(t *testing.T, setup func()) int {
	t.Helper()
	ns := testutil.NewNetNS(t)
	if setup != nil {
		if err := ns.Do(func() error { setup(); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return ns.FD()
}

// threadNetns is the network namespace of the calling goroutine's thread.
func threadNetns(t *testing.T) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestCreateIDInNetns(t *testing.T) {
	own := threadNetns(t)
	nsfd := newNetns(t, nil)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		t.Fatal(err)
	}
	ec, f := newFake(t)
	for range 5 {
		if _, err := ec.CreateIDInNetns(PortSpaceTCP, nsfd); err != nil {
			t.Fatal(err)
		}
		if _, err := ec.CreateID(PortSpaceTCP); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	seen := append([]string(nil), f.netns...)
	f.mu.Unlock()
	for i, ns := range seen {
		want := own
		if i%2 == 0 {
			want = "net:[" + itoa(st.Ino) + "]"
		}
		if ns != want {
			t.Fatalf("id %d created in %s, want %s", i, ns, want)
		}
	}
	// No thread of the process was left in the other namespace.
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		if ns, err := os.Readlink(p); err == nil && ns != own {
			t.Errorf("%s is %s", p, ns)
		}
	}

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := ec.CreateIDInNetns(PortSpaceTCP, p[0]); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("setns on a pipe: %v", err)
	}
	if _, err := ec.CreateIDInNetns(PortSpaceTCP, -1); !errors.Is(err, unix.EBADF) {
		t.Fatalf("netns -1: %v", err)
	}
}

func itoa(n uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}

func TestGarbageCollectorCloses(t *testing.T) {
	f := newFakeChannel(t)
	ec, err := newEventChannel(f)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		id, _ := ec.CreateID(PortSpaceTCP)
		_ = id
	}()
	waitFor(t, func() bool { return slices.Equal(f.destroyed(), []string{"id1"}) })
	kept, _ := ec.CreateID(PortSpaceTCP)
	ec = nil
	// kept keeps the channel alive.
	for range 3 {
		runtime.GC()
	}
	if got := f.destroyed(); len(got) != 1 {
		t.Fatalf("destroyed %v while an ID is alive", got)
	}
	runtime.KeepAlive(kept)
	kept = nil
	waitFor(t, func() bool {
		got := f.destroyed()
		return len(got) == 3 && got[2] == "channel"
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 100 {
		runtime.GC()
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

func TestConcurrentUseAndClose(t *testing.T) {
	ec, f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loopDone := make(chan int)
	go func() {
		n := 0
		for {
			ev, err := ec.GetEvent(ctx)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					t.Errorf("loop: %v", err)
				}
				loopDone <- n
				return
			}
			n++
			ev.ID.LocalAddr()
		}
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				id, err := ec.CreateID(PortSpaceTCP)
				if err != nil {
					t.Error(err)
					return
				}
				id.Bind(netip.MustParseAddrPort("10.0.0.1:0"))
				f.push(rawEvent{typ: EventEstablished, key: fakeOf(id).key})
				id.Close()
			}
		}()
	}
	wg.Wait()
	for range 5 {
		id, _ := ec.CreateID(PortSpaceTCP)
		f.push(rawEvent{typ: EventEstablished, key: fakeOf(id).key})
	}
	time.Sleep(50 * time.Millisecond)
	var cwg sync.WaitGroup
	for range 3 {
		cwg.Add(1)
		go func() { defer cwg.Done(); ec.Close() }()
	}
	cwg.Wait()
	n := <-loopDone
	if n < 5 {
		t.Fatalf("loop saw %d events, want at least the 5 of live IDs", n)
	}
	got := f.destroyed()
	if len(got) != 8*50+5+1 || got[len(got)-1] != "channel" {
		t.Fatalf("%d destroys, last %q", len(got), got[len(got)-1])
	}
}

func countFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestFakeChannelNoFDLeak(t *testing.T) {
	once := func() {
		f := newFakeChannel(t)
		ec, err := newEventChannel(f)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := ec.CreateID(PortSpaceTCP)
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		ec.GetEvent(ctx)
		cancel()
		id.Close()
		ec.Close()
		ec.Close()
	}
	once()
	before := countFDs(t)
	for range 20 {
		once()
	}
	if after := countFDs(t); after != before {
		t.Fatalf("%d fds before, %d after", before, after)
	}
}

func TestEventStrings(t *testing.T) {
	if s := EventConnectRequest.String(); s != "RDMA_CM_EVENT_CONNECT_REQUEST" {
		t.Fatal(s)
	}
	if s := EventTimewaitExit.String(); s != "RDMA_CM_EVENT_TIMEWAIT_EXIT" {
		t.Fatal(s)
	}
	if s := EventType(99).String(); s != "EventType(99)" {
		t.Fatal(s)
	}
	if s := PortSpaceTCP.String(); s != "RDMA_PS_TCP" {
		t.Fatal(s)
	}
	var zero PortSpace
	if zero != PortSpaceTCP {
		t.Fatal("zero PortSpace is not TCP")
	}
	rej := Event{Type: EventRejected, Status: 28}
	if err := rej.Err(); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatal(err)
	}
}
