package steer

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

func runHelper(mode string) int {
	switch mode {
	case "listener":
		return listenerHelper()
	case "probe":
		return probeHelper()
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

// listenerHelper is one listener process of a group. Environment:
// STEER_ADDR (the shadow's address), STEER_ID (a byte it greets each
// accepted connection with), STEER_ROLE ("designate", "standby" or ""),
// STEER_WATCH (a pid: take over when it exits). It prints, one per line:
//
//	ready <cookie> <pid>
//	pre <client port>               as soon as accept returns
//	acc <conn id> <mono ns>         before greeting the connection
//	takeover <mono ns>              after TakeOver designated it
//
// and answers commands read from stdin, one per line: designate, standby,
// pause (stop accepting, keep listening), close (close the listener),
// count, release, exit.
func listenerHelper() int {
	// Whole lines in one write(2) each: atomic on the pipe, so no lock.
	emit := func(format string, args ...any) {
		unix.Write(1, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	fail := func(err error) int {
		emit("err %v", err)
		return 1
	}
	id := byte(os.Getenv("STEER_ID")[0])
	sock, err := shadow.Bind(netip.MustParseAddrPort(os.Getenv("STEER_ADDR")))
	if err != nil {
		return fail(err)
	}
	key, err := KeyOf(sock)
	if err != nil {
		return fail(err)
	}
	g, err := Open(key, nil)
	if err != nil {
		return fail(err)
	}
	if err := g.Listen(sock, 4096); err != nil {
		return fail(err)
	}
	switch os.Getenv("STEER_ROLE") {
	case "designate":
		err = g.Designate(sock)
	case "standby":
		err = g.Standby(sock)
	}
	if err != nil {
		return fail(err)
	}
	// The accept loop works on a duplicate of the (non-blocking) listener
	// with raw system calls, and reports each accept right after accept4(2)
	// returns: a process killed mid-storm leaves at most that instant
	// unreported. An eventfd stops it.
	var lfd int
	if err := sock.Control(func(fd int) (err error) {
		lfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	}); err != nil {
		return fail(err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fail(err)
	}
	var count atomic.Int64
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		runtime.LockOSThread()
		tv := unix.Timeval{Sec: 10}
		for {
			p := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
			if _, err := unix.Poll(p, -1); err != nil && err != unix.EINTR {
				emit("err poll: %v", err)
				return
			}
			if p[1].Revents != 0 {
				return
			}
			nfd, sa, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err == unix.EAGAIN || err == unix.EINTR || err == unix.ECONNABORTED {
				continue
			}
			if err != nil {
				emit("err accept: %v", err)
				return
			}
			emit("pre %d", addrPort(sa).Port())
			// The client sends its connection's id first.
			unix.SetsockoptTimeval(nfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
			var b [8]byte
			n := 0
			for n < len(b) {
				m, err := unix.Read(nfd, b[n:])
				if err == unix.EINTR {
					continue
				}
				if err != nil || m == 0 {
					break
				}
				n += m
			}
			if n < len(b) {
				emit("accerr got %d bytes of the id", n)
				unix.Close(nfd)
				continue
			}
			count.Add(1)
			emit("acc %d %d", binary.LittleEndian.Uint64(b[:]), testutil.Mono())
			unix.Write(nfd, []byte{id})
			unix.Close(nfd)
		}
	}()
	stop := func() {
		unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-stopped
	}
	if w := os.Getenv("STEER_WATCH"); w != "" {
		pid, _ := strconv.Atoi(w)
		watch, err := WatchProcess(pid)
		if err != nil {
			return fail(err)
		}
		go func() {
			defer watch.Close()
			if err := g.TakeOver(context.Background(), watch, sock); err != nil {
				emit("err takeover: %v", err)
				return
			}
			emit("takeover %d", testutil.Mono())
		}()
	}
	cookie, _ := sock.Cookie()
	emit("ready %d %d", cookie, os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := in.Text(); cmd {
		case "designate":
			if err := g.Designate(sock); err != nil {
				emit("err %v", err)
				continue
			}
			emit("designated %d", testutil.Mono())
		case "standby":
			if err := g.Standby(sock); err != nil {
				emit("err %v", err)
				continue
			}
			emit("ok")
		case "pause":
			stop()
			emit("paused %d", testutil.Mono())
		case "close":
			t := testutil.Mono()
			stop()
			unix.Close(lfd)
			sock.Close()
			emit("closed %d %d", count.Load(), t)
		case "count":
			emit("count %d", count.Load())
		case "release":
			removed, err := g.Release()
			if err != nil {
				emit("err %v", err)
				continue
			}
			emit("released %v", removed)
		case "exit":
			return 0
		default:
			emit("err unknown command %q", cmd)
		}
	}
	return 0
}

// probeResult is what probeHelper reports: the errno (0 for success) of
// binding STEER_ADDR, of opening STEER_DIR, and of Open(STEER_KEY), and
// whether Open's error matched ErrNotPermitted and ErrNotSupported.
type probeResult struct {
	Bind, OpenDir, Open        int
	OpenErr                    string
	NotPermitted, NotSupported bool
	Degraded                   bool
	ProgID                     uint32 // the netns program's id, after a successful Open
	Index                      uint32 // the group's index
	PinGet                     int    // errno of BPF_OBJ_GET of STEER_PIN
	MapByID                    int    // errno of BPF_MAP_GET_FD_BY_ID of STEER_MAPID
}

func errnoOf(err error) int {
	var e unix.Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e):
		return int(e)
	}
	return -1
}

func probeHelper() int {
	var r probeResult
	if a := os.Getenv("STEER_ADDR"); a != "" {
		s, err := shadow.Bind(netip.MustParseAddrPort(a))
		r.Bind = errnoOf(err)
		if err == nil {
			s.Close()
		}
	}
	if d := os.Getenv("STEER_DIR"); d != "" {
		f, err := os.Open(d)
		r.OpenDir = errnoOf(err)
		if err == nil {
			f.Close()
		}
	}
	if p := os.Getenv("STEER_PIN"); p != "" {
		m, err := ebpf.LoadPinnedMap(p, nil)
		r.PinGet = errnoOf(err)
		if err == nil {
			m.Close()
		}
	}
	if s := os.Getenv("STEER_MAPID"); s != "" {
		id, _ := strconv.ParseUint(s, 10, 32)
		m, err := ebpf.NewMapFromID(ebpf.MapID(id))
		r.MapByID = errnoOf(err)
		if err == nil {
			m.Close()
		}
	}
	if k := os.Getenv("STEER_KEY"); k != "" {
		var key Key
		ns, ap, _ := strings.Cut(k, " ")
		key.NetNS, _ = strconv.ParseUint(ns, 10, 64)
		key.Addr = netip.MustParseAddrPort(ap)
		var opts *Options
		if root := os.Getenv("STEER_ROOT"); root != "" {
			opts = &Options{Root: root}
		}
		g, err := Open(key, opts)
		r.Open = errnoOf(err)
		if err != nil {
			r.OpenErr = err.Error()
		} else {
			if info, err := g.ns.prog.Info(); err == nil {
				id, _ := info.ID()
				r.ProgID = uint32(id)
			}
			r.Index = g.idx
			g.Close()
		}
		r.NotPermitted = errors.Is(err, ErrNotPermitted)
		r.NotSupported = errors.Is(err, ErrNotSupported)
		r.Degraded = Degraded(err)
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// runProbe runs probeHelper with env through cmd and decodes its result.
func runProbe(t *testing.T, cmd *exec.Cmd) probeResult {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe helper: %v (output %q)", err, out)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("probe helper output %q: %v", out, err)
	}
	return r
}

// listener is a listenerHelper process, seen from the test.
type listener struct {
	t  testing.TB
	id byte
	*testutil.Dialogue
	pid    int
	cookie uint64

	mu       sync.Mutex
	accepts  map[uint64]int64 // connection id -> accept time (mono ns)
	accErrs  []string         // accepted connections that sent no id
	pre      map[int]int      // client port -> "pre" reports (accepted, id not yet read)
	takeover int64
}

type listenerOpts struct {
	role  string // "designate", "standby" or ""
	watch int    // pid to take over from
}

// startListener starts a listener helper on addr and waits until it
// listens.
func startListener(t testing.TB, addr netip.AddrPort, id byte, o listenerOpts) *listener {
	t.Helper()
	env := []string{envHelper + "=listener", "STEER_ADDR=" + addr.String(), "STEER_ID=" + string(id), "STEER_ROLE=" + o.role}
	if o.watch != 0 {
		env = append(env, "STEER_WATCH="+strconv.Itoa(o.watch))
	}
	l := &listener{t: t, id: id, accepts: map[uint64]int64{}, pre: map[int]int{}}
	l.Dialogue = testutil.StartDialogue(t, fmt.Sprintf("listener %c", id), testutil.HelperCommand(t, 0, env...), l.report)
	t.Cleanup(func() { l.kill() })
	r := l.Reply("ready")
	if _, err := fmt.Sscanf(r, "ready %d %d", &l.cookie, &l.pid); err != nil {
		t.Fatalf("listener %c: %q", id, r)
	}
	return l
}

// report takes the helper's asynchronous lines (accepts, takeover); the
// others are replies.
func (l *listener) report(line string) bool {
	var id uint64
	var ts int64
	switch {
	case strings.HasPrefix(line, "acc "):
		fmt.Sscanf(line, "acc %d %d", &id, &ts)
		l.mu.Lock()
		if _, dup := l.accepts[id]; dup {
			l.t.Errorf("listener %c accepted connection %d twice", l.id, id)
		}
		l.accepts[id] = ts
		l.mu.Unlock()
	case strings.HasPrefix(line, "pre "):
		var port int
		fmt.Sscanf(line, "pre %d", &port)
		l.mu.Lock()
		l.pre[port]++
		l.mu.Unlock()
	case strings.HasPrefix(line, "accerr "):
		l.mu.Lock()
		l.accErrs = append(l.accErrs, line)
		l.mu.Unlock()
	case strings.HasPrefix(line, "takeover "):
		fmt.Sscanf(line, "takeover %d", &ts)
		l.mu.Lock()
		l.takeover = ts
		l.mu.Unlock()
	default:
		return false
	}
	return true
}

// doTime sends a command whose reply is "<want> <mono ns>" and returns the time.
func (l *listener) doTime(cmd, want string) int64 {
	l.t.Helper()
	var ts int64
	r := l.Do(cmd, want)
	fmt.Sscanf(r[len(want):], "%d", &ts)
	return ts
}

func (l *listener) Count() int {
	l.t.Helper()
	var n int
	fmt.Sscanf(l.Do("count", "count"), "count %d", &n)
	return n
}

func (l *listener) Accepted() map[uint64]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := make(map[uint64]int64, len(l.accepts))
	for k, v := range l.accepts {
		m[k] = v
	}
	return m
}

// sigkill kills the process and returns the time just before the kill.
func (l *listener) sigkill() int64 {
	t := testutil.Mono()
	unix.Kill(l.pid, unix.SIGKILL)
	return t
}

// stopAndKill stops the process (SIGSTOP), notes the client ports of the
// connections it holds accepted (its socket fds other than the listener,
// looked up in /proc/net/tcp{,6}), and kills it. A process killed while in
// accept4(2) dies on the syscall's return, holding a connection it never
// reported; stopping it first makes what it held known. It returns the
// time just before the kill.
func (l *listener) stopAndKill() (held map[int]bool, tKill int64) {
	l.t.Helper()
	held = testutil.StopAndHeldPorts(l.t, l.pid)
	return held, l.sigkill()
}

func (l *listener) kill() { l.Stop(2 * time.Second) }

// Label names l in failures (testutil.Receiver).
func (l *listener) Label() string { return l.Name }
