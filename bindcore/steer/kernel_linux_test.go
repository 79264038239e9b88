package steer

// Kernel behaviour the steering relies on, checked in one process. Several
// cases are those of the kernel's selftests (test_maps.c's
// test_reuseport_array, prog_tests/select_reuseport.c and
// migrate_reuseport.c), redone here with this package's program and API.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// listenIn binds a shadow on addr and makes it a listener of g.
func listenIn(t testing.TB, g *Group, addr netip.AddrPort) *shadow.Socket {
	t.Helper()
	s := bindShadow(t, addr)
	must(t, g.Listen(s, 128))
	return s
}

// acceptFor accepts on s for d (or until want connections, if want > 0),
// greets each accepted connection with id and closes it; it returns the
// peers' ports.
func acceptFor(t testing.TB, s *shadow.Socket, d time.Duration, want int, id byte) []int {
	t.Helper()
	var ports []int
	deadline := time.Now().Add(d)
	for want <= 0 || len(ports) < want {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		err := s.Control(func(fd int) error {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(p, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
				return err
			}
			for {
				nfd, sa, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
				if err == unix.EAGAIN {
					return nil
				}
				if err != nil {
					return err
				}
				unix.Write(nfd, []byte{id})
				unix.Close(nfd)
				ports = append(ports, int(addrPort(sa).Port()))
			}
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ports
}

// dialHold connects n clients to addr and returns them, connected (the
// handshake done by the kernel) but not read from.
func dialHold(t testing.TB, addr netip.AddrPort, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

// greeting reads what c's listener sent: its id byte, or the error.
func greeting(c net.Conn) (byte, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return b[0], err
}

func cookie(t testing.TB, s *shadow.Socket) uint64 {
	t.Helper()
	c, err := s.Cookie()
	must(t, err)
	return c
}

func status(t testing.TB, g *Group) Status {
	t.Helper()
	st, err := g.Status()
	must(t, err)
	return st
}

func sysctl(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	must(t, err)
	return strings.TrimSpace(string(b))
}

// The map's entry rules (test_reuseport_array): only listening SO_REUSEPORT
// TCP/UDP sockets go in; a lookup gives the socket's cookie; a socket can be
// in one slot of one map at a time; closing a socket clears its slot.
func TestMapEntryRules(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	a := bindShadow(t, addr)
	g := openGroup(t, a)

	// Bound but not listening: the kernel says EINVAL ("must be hashed").
	if err := g.Designate(a); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Designate of a bound, not listening socket: %v, want EINVAL", err)
	}
	if err := g.Attach(a); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Attach of a bound, not listening socket: %v, want EINVAL", err)
	}
	must(t, g.Listen(a, 16))
	must(t, g.Designate(a))
	must(t, g.Designate(a)) // again: nothing to do
	if st := status(t, g); st.Designated != cookie(t, a) || st.Standby != 0 {
		t.Fatalf("status %+v, want designated %d", st, cookie(t, a))
	}
	// The same socket in a second slot: the kernel says EBUSY.
	if err := g.Standby(a); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("Standby of the designated socket: %v, want EBUSY", err)
	}
	st := status(t, g)
	a.Control(func(fd int) error {
		if err := g.ns.socks.Put(g.slotKey(st.Slot^1), uint64(fd)); !errors.Is(err, unix.EBUSY) {
			t.Errorf("raw put of a socket already in the map: %v, want EBUSY", err)
		}
		return nil
	})
	// Not a socket; not TCP; no SO_REUSEPORT; bound elsewhere.
	f, err := os.Open("/dev/null")
	must(t, err)
	defer f.Close()
	if err := g.Designate(FD(f.Fd())); !errors.Is(err, unix.ENOTSOCK) {
		t.Errorf("Designate(/dev/null): %v, want ENOTSOCK", err)
	}
	if err := g.ns.socks.Put(g.slotKey(1), uint64(f.Fd())); !errors.Is(err, unix.ENOTSOCK) {
		t.Errorf("raw put of /dev/null: %v, want ENOTSOCK", err)
	}
	udp, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(udp)
	if err := g.Designate(FD(udp)); !errors.Is(err, unix.EPROTOTYPE) {
		t.Errorf("Designate(UDP): %v, want EPROTOTYPE", err)
	}
	plain, err := net.Listen("tcp4", "127.0.0.1:0") // SO_REUSEADDR only
	must(t, err)
	defer plain.Close()
	pf, err := plain.(*net.TCPListener).File()
	must(t, err)
	defer pf.Close()
	if err := g.ns.socks.Put(g.slotKey(1), uint64(pf.Fd())); err == nil {
		t.Errorf("raw put of a listener without SO_REUSEPORT succeeded")
	}
	if err := g.Designate(FD(pf.Fd())); !errors.Is(err, unix.EINVAL) && !errors.Is(err, ErrMPTCP) {
		t.Errorf("Designate of a socket of another address: %v, want EINVAL", err)
	}

	// A standby, then closing sockets empties their slots.
	b := listenIn(t, g, addr)
	must(t, g.Standby(b))
	must(t, g.Standby(b))
	if st := status(t, g); st.Designated != cookie(t, a) || st.Standby != cookie(t, b) {
		t.Fatalf("status %+v, want designated %d standby %d", st, cookie(t, a), cookie(t, b))
	}
	b.Close()
	if st := status(t, g); st.Designated != cookie(t, a) || st.Standby != 0 {
		t.Fatalf("after closing the standby: %+v", st)
	}
	a.Close()
	if st := status(t, g); st.Designated != 0 || st.Standby != 0 {
		t.Fatalf("after closing the designated: %+v", st)
	}
}

// A group with listeners but none designated refuses connections: the
// program returns SK_DROP, the kernel answers the SYN with a reset, and no
// listener gets one by hash (select_reuseport's "pass on error" case is the
// behaviour SK_DROP avoids). A socket of another group in the map fails the
// selection the same way. Designating one fixes it.
func TestSelectionFailureRefuses(t *testing.T) {
	skipUnlessBPF(t)
	for _, ap := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(ap, func(t *testing.T) {
			addr := reserve(t, ap)
			a := bindShadow(t, addr)
			g := openGroup(t, a)
			must(t, g.Listen(a, 16))
			b := listenIn(t, g, addr)
			for range 20 {
				c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
				if err == nil {
					c.Close()
					t.Fatal("connected to a group with no designated listener")
				}
				if !errors.Is(err, unix.ECONNREFUSED) {
					t.Fatalf("dial: %v, want ECONNREFUSED", err)
				}
			}
			if n := len(acceptFor(t, a, 50*time.Millisecond, 0, 'a')) + len(acceptFor(t, b, 50*time.Millisecond, 0, 'b')); n != 0 {
				t.Fatalf("%d connections accepted with no designated listener", n)
			}

			// A listener of another port's group in the map.
			other := reserve(t, netip.AddrPortFrom(addr.Addr(), 0).String())
			o := bindShadow(t, other)
			must(t, o.Listen(16))
			st := status(t, g)
			o.Control(func(fd int) error { return g.ns.socks.Put(g.slotKey(st.Slot), uint64(fd)) })
			if _, err := net.DialTimeout("tcp", addr.String(), 5*time.Second); !errors.Is(err, unix.ECONNREFUSED) {
				t.Fatalf("dial with another group's socket designated: %v, want ECONNREFUSED", err)
			}
			must(t, g.ns.socks.Delete(g.slotKey(st.Slot)))

			must(t, g.Designate(b))
			cs := dialHold(t, addr, 10)
			if n := len(acceptFor(t, b, 2*time.Second, 10, 'b')); n != 10 {
				t.Fatalf("designated accepted %d of 10", n)
			}
			if n := len(acceptFor(t, a, 50*time.Millisecond, 0, 'a')); n != 0 {
				t.Fatalf("the other listener accepted %d", n)
			}
			for _, c := range cs {
				if id, err := greeting(c); id != 'b' || err != nil {
					t.Fatalf("greeting %q %v", id, err)
				}
			}
		})
	}
}

// The control experiment: with the program detached, the kernel hashes
// connections over both listeners; with it, one gets all. A listener that
// joined with a plain listen(2), never attaching, is steered too: the
// program belongs to the group.
func TestProgramBelongsToGroup(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	a := bindShadow(t, addr)
	g := openGroup(t, a)
	must(t, g.Listen(a, 256))
	b := bindShadow(t, addr)
	must(t, b.Listen(256)) // no Attach
	must(t, g.Designate(b))
	const n = 100
	dialHold(t, addr, n)
	if got := len(acceptFor(t, b, 2*time.Second, n, 'b')); got != n {
		t.Fatalf("designated plain listener accepted %d of %d", got, n)
	}
	if got := len(acceptFor(t, a, 50*time.Millisecond, 0, 'a')); got != 0 {
		t.Fatalf("other listener accepted %d", got)
	}
	must(t, a.Control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DETACH_REUSEPORT_BPF, 0)
	}))
	dialHold(t, addr, n)
	na := len(acceptFor(t, a, 300*time.Millisecond, 0, 'a'))
	nb := len(acceptFor(t, b, 300*time.Millisecond, 0, 'b'))
	if na == 0 || nb == 0 || na+nb != n {
		t.Fatalf("without the program: %d and %d of %d, want both some", na, nb, n)
	}
	t.Logf("detached: hashed %d/%d; attached: %d/0", na, nb, n)
	must(t, g.Attach(a))
	dialHold(t, addr, n)
	if got := len(acceptFor(t, b, 2*time.Second, n, 'b')); got != n {
		t.Fatalf("reattached: designated accepted %d of %d", got, n)
	}
}

// Designate switches new connections at once, with the old listener still
// listening; it becomes the standby, and takes over when the designated
// closes, with no call.
func TestDesignateSwitchAndStandbyFallback(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "[::1]:0")
	a := bindShadow(t, addr)
	g := openGroup(t, a)
	must(t, g.Listen(a, 64))
	b := listenIn(t, g, addr)
	must(t, g.Designate(a))
	dialHold(t, addr, 5)
	if n := len(acceptFor(t, a, 2*time.Second, 5, 'a')); n != 5 {
		t.Fatalf("a accepted %d of 5", n)
	}
	must(t, g.Designate(b))
	if st := status(t, g); st.Designated != cookie(t, b) || st.Standby != cookie(t, a) {
		t.Fatalf("after Designate(b): %+v", st)
	}
	dialHold(t, addr, 5)
	if n := len(acceptFor(t, b, 2*time.Second, 5, 'b')); n != 5 {
		t.Fatalf("b accepted %d of 5", n)
	}
	if n := len(acceptFor(t, a, 50*time.Millisecond, 0, 'a')); n != 0 {
		t.Fatalf("a accepted %d after the switch", n)
	}
	// b closes with 5 connections queued: they move to a, the standby, and
	// new ones go to a as well.
	cs := dialHold(t, addr, 5)
	b.Close()
	cs = append(cs, dialHold(t, addr, 5)...)
	if n := len(acceptFor(t, a, 2*time.Second, 10, 'a')); n != 10 {
		t.Fatalf("standby accepted %d of 10", n)
	}
	for _, c := range cs {
		if id, err := greeting(c); id != 'a' || err != nil {
			t.Fatalf("greeting %q %v", id, err)
		}
	}
	// The designated slot is empty now, a the standby: a new listener
	// designated goes in the empty slot, and a stays the standby.
	c := listenIn(t, g, addr)
	must(t, g.Designate(c))
	if st := status(t, g); st.Designated != cookie(t, c) || st.Standby != cookie(t, a) {
		t.Fatalf("designating into the empty slot: %+v, want designated %d standby %d", st, cookie(t, c), cookie(t, a))
	}
	// TakeOver with any Watch: here one that ends when told.
	w := chanWatch(make(chan struct{}))
	errc := make(chan error, 1)
	go func() { errc <- g.TakeOver(t.Context(), w, a) }()
	time.Sleep(10 * time.Millisecond)
	if st := status(t, g); st.Designated != cookie(t, c) {
		t.Fatalf("TakeOver designated before its Watch ended: %+v", st)
	}
	close(w)
	must(t, <-errc)
	if st := status(t, g); st.Designated != cookie(t, a) || st.Standby != cookie(t, c) {
		t.Fatalf("after TakeOver: %+v", st)
	}
}

// pidfds counts this process's pidfds of pid (fdinfo says "Pid: <pid>").
func pidfds(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fdinfo")
	must(t, err)
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && strings.Contains(string(b), fmt.Sprintf("\nPid:\t%d\n", pid)) {
			n++
		}
	}
	return n
}

// chanWatch is a Watch that ends when the channel closes.
type chanWatch chan struct{}

func (w chanWatch) Wait(ctx context.Context) error {
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w chanWatch) Close() error { return nil }

// WatchProcess ends when the process exits (not before), honours its
// context, and refuses a pid that does not exist.
func TestWatchProcess(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	before := pidfds(t, cmd.Process.Pid)
	w, err := WatchProcess(cmd.Process.Pid)
	if errors.Is(err, unix.ENOSYS) {
		t.Skipf("no pidfd_open: %v", err)
	}
	must(t, err)
	if n := pidfds(t, cmd.Process.Pid); n != before+1 {
		t.Fatalf("%d pidfds of the process with the watch, %d without", n, before)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if err := w.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on a live process: %v, want the context's deadline", err)
	}
	start := time.Now()
	go func() { time.Sleep(20 * time.Millisecond); cmd.Process.Kill() }()
	must(t, w.Wait(t.Context()))
	t.Logf("Wait returned %v after the kill was scheduled (20 ms)", time.Since(start))
	must(t, w.Wait(t.Context())) // still ended
	must(t, w.Close())
	must(t, w.Close())
	if n := pidfds(t, cmd.Process.Pid); n != before {
		t.Fatalf("%d pidfds of the process after Close, %d before the watch", n, before)
	}
	cmd.Wait()
	if _, err := WatchProcess(1 << 30); !errors.Is(err, unix.ESRCH) {
		t.Fatalf("WatchProcess of no process: %v, want ESRCH", err)
	}
}

// Queued connections of a closing listener migrate to the socket the
// program selects (migrate_reuseport's cases), with net.ipv4.tcp_migrate_req
// at 0: the select-or-migrate attach type is enough. Children in the accept
// queue (ESTABLISHED), and requests whose final ACK was held back by
// TCP_DEFER_ACCEPT (NEW_SYN_RECV, migrated when the client's data arrives).
// With no socket to select they are reset; with a program of the plain
// select attach type they are reset too.
func TestMigration(t *testing.T) {
	skipUnlessBPF(t)
	if v := sysctl(t, "net.ipv4.tcp_migrate_req"); v != "0" {
		t.Fatalf("net.ipv4.tcp_migrate_req is %s in the test's netns, want the default 0", v)
	}
	const n = 20
	type setup struct {
		name    string
		defer_  bool // TCP_DEFER_ACCEPT on the closing listener
		succ    string
		attach  ebpf.AttachType
		wantOK  bool
		wantRST bool
		auto    bool // the closing listener bound to port 0: its port reads 0 once closed
	}
	for _, c := range []setup{
		{"accept-queue/auto-port", false, "designate", ebpf.AttachSkReuseportSelectOrMigrate, true, false, true},
		{"syn-recv/auto-port", true, "designate", ebpf.AttachSkReuseportSelectOrMigrate, true, false, true},
		{"accept-queue/designated", false, "designate", ebpf.AttachSkReuseportSelectOrMigrate, true, false, false},
		{"accept-queue/standby", false, "standby", ebpf.AttachSkReuseportSelectOrMigrate, true, false, false},
		{"accept-queue/none", false, "", ebpf.AttachSkReuseportSelectOrMigrate, false, true, false},
		{"accept-queue/select-only", false, "designate", ebpf.AttachSkReuseportSelect, false, true, false},
		{"syn-recv/designated", true, "designate", ebpf.AttachSkReuseportSelectOrMigrate, true, false, false},
		{"syn-recv/none", true, "", ebpf.AttachSkReuseportSelectOrMigrate, false, true, false},
	} {
		for _, ap := range []string{"127.0.0.1:0", "[::1]:0"} {
			t.Run(c.name+"/"+ap, func(t *testing.T) {
				var addr netip.AddrPort
				var a *shadow.Socket
				if c.auto {
					a = bindShadow(t, netip.MustParseAddrPort(ap))
					addr = a.Addr()
				} else {
					addr = reserve(t, ap)
					a = bindShadow(t, addr)
				}
				g := openGroup(t, a)
				if c.attach != ebpf.AttachSkReuseportSelectOrMigrate {
					spec := progSpec(g.ns.socks.FD(), g.ns.groups.FD(), g.ns.state.FD())
					spec.AttachType = c.attach
					p, err := ebpf.NewProgram(spec)
					must(t, err)
					defer p.Close()
					old := g.ns.prog
					g.ns.prog = p
					defer func() { g.ns.prog = old }()
				}
				if c.defer_ {
					must(t, a.Control(func(fd int) error {
						return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 30)
					}))
				}
				must(t, g.Listen(a, 64))
				must(t, g.Designate(a))
				b := listenIn(t, g, addr)
				cs := dialHold(t, addr, n)
				time.Sleep(20 * time.Millisecond) // final ACKs processed
				if c.defer_ {
					// Still requests, not children: nothing to accept.
					if got := len(acceptFor(t, a, 50*time.Millisecond, 0, 'a')); got != 0 {
						t.Fatalf("TCP_DEFER_ACCEPT listener accepted %d bare handshakes", got)
					}
				}
				switch c.succ {
				case "designate":
					must(t, g.Designate(b))
				case "standby":
					must(t, g.Standby(b))
				}
				must(t, a.Close())
				if c.defer_ {
					for _, cl := range cs {
						cl.Write([]byte("x")) // completes the deferred handshake
					}
				}
				got := acceptFor(t, b, time.Second, n, 'b')
				ok, rst := 0, 0
				for _, cl := range cs {
					id, err := greeting(cl)
					switch {
					case err == nil && id == 'b':
						ok++
					case errors.Is(err, unix.ECONNRESET) || errors.Is(err, io.EOF):
						rst++
					default:
						t.Errorf("client: %q %v", id, err)
					}
				}
				t.Logf("%d queued: %d accepted by the successor, %d reset", n, len(got), rst)
				if c.wantOK && (ok != n || len(got) != n) {
					t.Fatalf("migrated %d (accepted %d) of %d", ok, len(got), n)
				}
				if c.wantRST && (rst != n || len(got) != 0) {
					t.Fatalf("reset %d of %d, successor accepted %d: want all reset", rst, n, len(got))
				}
			})
		}
	}
}

// When the last listener closes, the kernel frees the reuseport group and
// the program with it; listeners of the next group attach again (Listen
// does) and the pinned map serves them.
func TestGroupReformed(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	a := bindShadow(t, addr)
	g := openGroup(t, a)
	must(t, g.Listen(a, 16))
	must(t, g.Designate(a))
	a.Close()
	for round := range 3 {
		x := listenIn(t, g, addr)
		y := listenIn(t, g, addr)
		if _, err := net.DialTimeout("tcp", addr.String(), time.Second); !errors.Is(err, unix.ECONNREFUSED) {
			t.Fatalf("round %d: dial before designating: %v, want ECONNREFUSED", round, err)
		}
		must(t, g.Designate(y))
		dialHold(t, addr, 10)
		if n := len(acceptFor(t, y, 2*time.Second, 10, 'y')); n != 10 {
			t.Fatalf("round %d: designated accepted %d of 10", round, n)
		}
		if n := len(acceptFor(t, x, 50*time.Millisecond, 0, 'x')); n != 0 {
			t.Fatalf("round %d: other accepted %d", round, n)
		}
		x.Close()
		y.Close()
	}
}

// MPTCP sockets are refused with ErrMPTCP before the kernel is asked; the
// kernel itself refuses them too.
func TestMPTCPRefused(t *testing.T) {
	skipUnlessBPF(t)
	testutil.CheckFDs(t)
	addr := reserve(t, "127.0.0.1:0")
	a := bindShadow(t, addr)
	g := openGroup(t, a)
	must(t, g.Listen(a, 16))

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("no MPTCP sockets here: %v", err)
	}
	defer unix.Close(fd)
	must(t, unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
	other := reserve(t, "127.0.0.1:0")
	must(t, unix.Bind(fd, &unix.SockaddrInet4{Port: int(other.Port()), Addr: [4]byte{127, 0, 0, 1}}))
	must(t, unix.Listen(fd, 16))
	for name, f := range map[string]func(Socket) error{
		"Attach": g.Attach, "Designate": g.Designate, "Standby": g.Standby,
		"Listen": func(s Socket) error { return g.Listen(s, 1) },
	} {
		err := f(FD(fd))
		if !errors.Is(err, ErrMPTCP) || !errors.Is(err, unix.EOPNOTSUPP) {
			t.Errorf("%s(MPTCP socket): %v, want ErrMPTCP and EOPNOTSUPP", name, err)
		}
	}
	if _, err := KeyOf(FD(fd)); !errors.Is(err, ErrMPTCP) {
		t.Errorf("KeyOf(MPTCP socket): %v, want ErrMPTCP", err)
	}
	// What the kernel answers without the check.
	aerr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, g.ns.prog.FD())
	perr := g.ns.socks.Put(g.slotKey(1), uint64(fd))
	if aerr == nil || perr == nil {
		t.Fatalf("kernel accepted an MPTCP socket: attach %v, map update %v", aerr, perr)
	}
	t.Logf("kernel: SO_ATTACH_REUSEPORT_EBPF: %v (%d); map update: %v", aerr, aerr, perr)

	// Go's own listeners: MPTCP when asked (and by default where Go makes
	// them so); the FD adapter reports it.
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	l, err := lc.Listen(t.Context(), "tcp4", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	rc, err := l.(*net.TCPListener).SyscallConn()
	must(t, err)
	var gerr error
	proto := 0
	rc.Control(func(fd uintptr) {
		proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
		gerr = g.Designate(FD(fd))
	})
	if proto == unix.IPPROTO_MPTCP && !errors.Is(gerr, ErrMPTCP) {
		t.Errorf("Designate(Go MPTCP listener): %v, want ErrMPTCP", gerr)
	}
	t.Logf("Go listener with SetMultipathTCP(true): protocol %d, Designate: %v", proto, gerr)
	dl, err := net.Listen("tcp4", "127.0.0.1:0")
	must(t, err)
	defer dl.Close()
	drc, err := dl.(*net.TCPListener).SyscallConn()
	must(t, err)
	drc.Control(func(fd uintptr) { proto, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL) })
	t.Logf("Go's default net.Listen here: protocol %d (6 TCP, 262 MPTCP)", proto)
}
