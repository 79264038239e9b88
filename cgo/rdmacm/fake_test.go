//go:build linux

package rdmacm

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeChannel stands in for librdmacm: a pipe whose read end is the channel
// fd, one byte per queued event, so the netpoller path is the real one.
type fakeChannel struct {
	t      testing.TB
	rfd    int
	wfd    int
	mu     sync.Mutex
	queue  []rawEvent
	log    []string // destroy order
	acks   int
	netns  []string // /proc/thread-self/ns/net at each createID
	nextID int
}

func newFakeChannel(t testing.TB) *fakeChannel {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return &fakeChannel{t: t, rfd: p[0], wfd: p[1]}
}

func (f *fakeChannel) fd() int { return f.rfd }

func (f *fakeChannel) destroy() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "channel")
	unix.Close(f.rfd)
	unix.Close(f.wfd)
}

func (f *fakeChannel) createID(key uintptr, ps PortSpace) (idOps, error) {
	ns, _ := os.Readlink("/proc/thread-self/ns/net")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.netns = append(f.netns, ns)
	f.nextID++
	return &fakeID{ch: f, name: fmt.Sprintf("id%d", f.nextID), key: key}, nil
}

func (f *fakeChannel) getEvent() (rawEvent, error) {
	var b [1]byte
	if _, err := unix.Read(f.rfd, b[:]); err != nil {
		return rawEvent{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	raw := f.queue[0]
	f.queue = f.queue[1:]
	raw.ack = func() {
		f.mu.Lock()
		f.acks++
		f.mu.Unlock()
	}
	return raw, nil
}

func (f *fakeChannel) push(raw rawEvent) {
	f.mu.Lock()
	f.queue = append(f.queue, raw)
	f.mu.Unlock()
	if _, err := unix.Write(f.wfd, []byte{1}); err != nil {
		f.t.Error(err)
	}
}

func (f *fakeChannel) destroyed() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeChannel) ackCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.acks
}

type fakeID struct {
	ch    *fakeChannel
	name  string
	key   uintptr
	local netip.AddrPort
	opts  map[idOption]int
	gone  bool
}

func (id *fakeID) setKey(key uintptr) { id.key = key }

func (id *fakeID) setOption(opt idOption, val int) error {
	if id.opts == nil {
		id.opts = make(map[idOption]int)
	}
	id.opts[opt] = val
	return nil
}

func (id *fakeID) bind(ip netip.Addr, port uint16, scope uint32) error {
	if id.local.IsValid() {
		return unix.EINVAL
	}
	if port == 0 {
		port = 40000
	}
	if scope != 0 {
		ip = ip.WithZone(fmt.Sprint(scope))
	}
	id.local = netip.AddrPortFrom(ip, port)
	return nil
}

func (id *fakeID) listen(int) error { return nil }

func (id *fakeID) localAddr() netip.AddrPort { return id.local }

func (id *fakeID) device() (string, int) {
	if !id.local.IsValid() || id.local.Addr().IsUnspecified() {
		return "", 0
	}
	return "fake0", 1
}

func (id *fakeID) contextFDs() (ctxFDs, bool) { return ctxFDs{}, false }

func (id *fakeID) destroy() error {
	id.ch.mu.Lock()
	defer id.ch.mu.Unlock()
	if id.gone {
		id.ch.t.Errorf("%s destroyed twice", id.name)
	}
	id.gone = true
	id.ch.log = append(id.ch.log, id.name)
	return nil
}

func newFake(t testing.TB) (*EventChannel, *fakeChannel) {
	t.Helper()
	f := newFakeChannel(t)
	ec, err := newEventChannel(f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	return ec, f
}

func fakeOf(id *ID) *fakeID {
	id.s.mu.Lock()
	defer id.s.mu.Unlock()
	return id.s.ops.(*fakeID)
}
