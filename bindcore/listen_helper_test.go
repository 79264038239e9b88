//go:build linux

package bindcore

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The host tests of Listen run the designation over the real registry,
// steering group and shadow sockets, without RDMA: in helper processes (the
// test binary again) and in private network and mount namespaces, so that
// the ports, the bpffs mount at /sys/fs/bpf and the sysctls are the tests'
// own.

const (
	// listenHelperEnv selects a helper mode of this file (see init).
	listenHelperEnv = "RDMABIND_LISTEN_HELPER"
	// listenNSEnv is set in a copy of the test binary that runs one test in
	// private namespaces.
	listenNSEnv = "RDMABIND_LISTEN_NS"
)

// init runs before TestMain (main_test.go): a helper process of this file
// does its work and exits; a copy of the binary in private namespaces sets
// them up first.
func init() {
	if os.Getenv(listenNSEnv) == "1" {
		if err := setupListenNS(); err != nil {
			fmt.Fprintf(os.Stderr, "listen tests: set up namespaces: %v\n", err)
			os.Exit(1)
		}
	}
	switch mode := os.Getenv(listenHelperEnv); mode {
	case "":
	case "listener":
		os.Exit(listenerMain())
	case "parker":
		os.Exit(parkerMain())
	case "rdma":
		os.Exit(rdmaListenerMain())
	default:
		fmt.Fprintf(os.Stderr, "unknown listen helper mode %q\n", mode)
		os.Exit(2)
	}
}

// setupListenNS makes the mount namespace private, takes any bpffs off
// /sys/fs/bpf (steer.Open mounts a fresh one) and brings loopback up. Only
// the first process in the namespaces does it.
func setupListenNS() error {
	if os.Getenv(listenHelperEnv) != "" {
		return nil // a helper inherits its test's namespaces
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for range 8 {
		var st unix.Statfs_t
		if unix.Statfs("/sys/fs/bpf", &st) != nil || st.Type != unix.BPF_FS_MAGIC {
			break
		}
		if err := unix.Unmount("/sys/fs/bpf", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount /sys/fs/bpf: %w", err)
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// inListenNS reports whether the calling test runs in its private
// namespaces. When it does not, it runs the test (or benchmark) in a copy of
// the test binary in new network and mount namespaces, with its output
// going to this one's, fails if that fails, and returns false: the caller
// returns at once. Without root it skips.
func inListenNS(tb testing.TB) bool {
	tb.Helper()
	if os.Getenv(listenNSEnv) == "1" {
		return true
	}
	testutil.SkipUnlessRoot(tb)
	name := "^" + regexp.QuoteMeta(tb.Name()) + "$"
	args := []string{"-test.run=" + name, "-test.count=1"}
	if _, ok := tb.(*testing.B); ok {
		args = []string{"-test.run=^$", "-test.bench=" + name, "-test.benchmem"}
		if f := flag.Lookup("test.benchtime"); f != nil {
			args = append(args, "-test.benchtime="+f.Value.String())
		}
	}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	if f := flag.Lookup("test.timeout"); f != nil {
		args = append(args, "-test.timeout="+f.Value.String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), listenNSEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s in private namespaces: %v", tb.Name(), err)
	}
	if _, ok := tb.(*testing.B); ok {
		// Not a result of its own: the copy printed the benchmark's.
		tb.Skip("ran in private network and mount namespaces; the results are above")
	}
	return false
}

// listenerMain is one listening socket in a process of its own, over the
// real registry, steering group and shadow socket (no rdma_cm). Environment:
// LISTEN_ADDR, LISTEN_DIR (the registry directory), LISTEN_ID (the byte it
// greets each connection with), LISTEN_STEER_ROOT (a pin root; one that is
// not on bpffs forces the degraded mode through steer.Open). It prints, one
// line per write(2):
//
//	ready <role> <steering 0|1> <pid>
//	designated <mono ns>           once designated
//	pre <client port>              as soon as accept returns
//	acc <conn id> <mono ns>        before greeting the connection
//	accerr ...
//
// and answers commands on stdin: role, state, count, close (graceful:
// leave the designation, release the claim), exit.
func listenerMain() int {
	emit := func(format string, args ...any) {
		unix.Write(1, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	fail := func(err error) int {
		emit("err %v", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	ap := netip.MustParseAddrPort(os.Getenv("LISTEN_ADDR"))
	id := byte(os.Getenv("LISTEN_ID")[0])
	reg, err := registry.Open(registry.Options{Dir: os.Getenv("LISTEN_DIR")})
	if err != nil {
		return fail(err)
	}
	claim, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: ap.Port()})
	if err != nil {
		return fail(err)
	}
	sh, err := shadow.Bind(ap)
	if err != nil {
		return fail(err)
	}
	cfg := listenConfig{reg: reg, claim: claim, shadow: sh, backlog: 4096, anchor: newAnchor(reg)}
	if root := os.Getenv("LISTEN_STEER_ROOT"); root != "" {
		cfg.steer = &steer.Options{Root: root}
	}
	d, err := startDesignation(cfg)
	if err != nil {
		return fail(err)
	}
	st := d.state()
	steering := 0
	if st.Steering {
		steering = 1
	}
	var count atomic.Int64
	accDone := make(chan struct{})
	go func() {
		defer close(accDone)
		for {
			c, err := d.acceptTCP(context.Background())
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					emit("err accept: %v", err)
				}
				return
			}
			emit("pre %d", c.RemoteAddr().(*net.TCPAddr).Port)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var b [8]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				emit("accerr got no id: %v", err)
				c.Close()
				continue
			}
			count.Add(1)
			emit("acc %d %d", binary.LittleEndian.Uint64(b[:]), testutil.Mono())
			c.Write([]byte{id})
			c.Close()
		}
	}()
	emit("ready %s %d %d", st.Role, steering, os.Getpid())
	go func() {
		<-d.designated
		emit("designated %d", testutil.Mono())
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := in.Text(); cmd {
		case "role":
			emit("role %s", d.state().Role)
		case "state":
			b, _ := json.Marshal(struct {
				ListenState
				TCPListening bool `json:"tcp_listening"`
			}{d.state(), shadowListens(sh)})
			emit("state %s", b)
		case "count":
			emit("count %d", count.Load())
		case "close":
			t := testutil.Mono()
			err := d.close()
			<-accDone
			claim.Release()
			if err != nil {
				emit("err close: %v", err)
				continue
			}
			emit("closed %d %d", count.Load(), t)
		case "exit":
			return 0
		default:
			emit("err unknown command %q", cmd)
		}
	}
	return 0
}

// parkerMain stands for a process with bound rdma_cm ids: an anchor with a
// fake parkable entry per address in LISTEN_PARK (comma-separated), with
// the registry in LISTEN_DIR; LISTEN_POLL=1 makes it poll instead of using
// inotify. It prints "ready", then "parked <addr:port> <mono ns>" as each is
// parked, and answers "add <addr:port>" (one more entry: "added") and
// "exit".
func parkerMain() int {
	emit := func(format string, args ...any) {
		unix.Write(1, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	reg, err := registry.Open(registry.Options{Dir: os.Getenv("LISTEN_DIR")})
	if err != nil {
		emit("err %v", err)
		return 1
	}
	a := newAnchor(reg)
	a.noInotify = os.Getenv("LISTEN_POLL") == "1"
	add := func(s string) {
		ap := netip.MustParseAddrPort(s)
		a.add(ap, func() { emit("parked %s %d", ap, testutil.Mono()) }, true)
	}
	for _, s := range strings.Split(os.Getenv("LISTEN_PARK"), ",") {
		add(s)
	}
	emit("ready %d", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := in.Text()
		switch {
		case strings.HasPrefix(cmd, "add "):
			add(strings.TrimPrefix(cmd, "add "))
			emit("added")
		case cmd == "exit":
			a.close()
			return 0
		}
	}
	return 0
}

// proc is a helper process seen from the test: its reply lines, and the
// accept reports of a listener.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	testutil.Dialogue
	pid    int
	exited chan struct{}

	mu         sync.Mutex
	accepts    map[uint64]int64 // connection id -> accept time
	accErrs    []string
	designated int64  // mono ns, 0 until designated
	desLine    string // the whole "designated" line
	parked     map[string]int64
	rdma, tcp  int // rdma_cm requests and TCP connections an RDMA listener reported
	errs       []string
}

func startProc(t testing.TB, name string, uid uint32, env ...string) *proc {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, Dialogue: testutil.Dialogue{T: t, Name: name, Stdin: stdin, Replies: make(chan string, 64)},
		exited: make(chan struct{}), accepts: map[uint64]int64{}, parked: map[string]int64{}}
	go p.read(stdout)
	t.Cleanup(p.kill)
	return p
}

type listenerOpts struct {
	uid       uint32
	steerRoot string
}

// startListenProc starts a listener helper on ap and waits for its role.
func startListenProc(t testing.TB, dir string, ap netip.AddrPort, id byte, o listenerOpts) (*proc, string, bool) {
	t.Helper()
	env := []string{listenHelperEnv + "=listener", "LISTEN_ADDR=" + ap.String(), "LISTEN_DIR=" + dir, "LISTEN_ID=" + string(id)}
	if o.steerRoot != "" {
		env = append(env, "LISTEN_STEER_ROOT="+o.steerRoot)
	}
	p := startProc(t, "listener "+string(id), o.uid, env...)
	var role string
	var steering int
	r := p.Reply("ready")
	if _, err := fmt.Sscanf(r, "ready %s %d %d", &role, &steering, &p.pid); err != nil {
		t.Fatalf("%s: %q", p.name, r)
	}
	return p, role, steering == 1
}

func (p *proc) read(r io.Reader) {
	defer close(p.exited)
	defer close(p.Replies)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		var id uint64
		var ts int64
		p.mu.Lock()
		switch {
		case strings.HasPrefix(line, "acc "):
			fmt.Sscanf(line, "acc %d %d", &id, &ts)
			if _, dup := p.accepts[id]; dup {
				p.errs = append(p.errs, fmt.Sprintf("accepted connection %d twice", id))
			}
			p.accepts[id] = ts
		case strings.HasPrefix(line, "rdma "):
			p.rdma++
		case strings.HasPrefix(line, "tcp "):
			p.tcp++
		case strings.HasPrefix(line, "pre "):
		case strings.HasPrefix(line, "accerr "):
			p.accErrs = append(p.accErrs, line)
		case strings.HasPrefix(line, "designated "):
			fmt.Sscanf(line, "designated %d", &ts)
			p.designated, p.desLine = ts, line
		case strings.HasPrefix(line, "parked "):
			var ap string
			fmt.Sscanf(line, "parked %s %d", &ap, &ts)
			p.parked[ap] = ts
		case strings.HasPrefix(line, "err "):
			p.errs = append(p.errs, line)
			p.mu.Unlock()
			p.Replies <- line
			continue
		default:
			p.mu.Unlock()
			p.Replies <- line
			continue
		}
		p.mu.Unlock()
	}
}

func (p *proc) role() string {
	p.t.Helper()
	return strings.TrimPrefix(p.Do("role", "role "), "role ")
}

func (p *proc) Count() int {
	p.t.Helper()
	var n int
	fmt.Sscanf(p.Do("count", "count"), "count %d", &n)
	return n
}

func (p *proc) designatedAt() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.designated
}

// waitDesignated waits until the helper reported it was designated.
func (p *proc) waitDesignated(d time.Duration) int64 {
	p.t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(200 * time.Microsecond) {
		if ts := p.designatedAt(); ts != 0 {
			return ts
		}
	}
	p.t.Fatalf("%s not designated after %v", p.name, d)
	return 0
}

func (p *proc) Accepted() map[uint64]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[uint64]int64, len(p.accepts))
	for k, v := range p.accepts {
		m[k] = v
	}
	return m
}

// stopAndKill stops the process, notes the client ports of the
// connections it holds accepted (its socket fds, in /proc/net/tcp{,6}),
// and kills it: a process killed inside accept4(2) dies holding a
// connection it never reported, which the clients alone cannot tell from
// one reset in its queue. It returns the time just before the kill.
func (p *proc) stopAndKill() (held map[int]bool, tKill int64) {
	p.t.Helper()
	held = testutil.StopAndHeldPorts(p.t, p.pid)
	t := testutil.Mono()
	unix.Kill(p.pid, unix.SIGKILL)
	return held, t
}

func (p *proc) kill() {
	p.Stdin.Close()
	if p.cmd.ProcessState == nil {
		select {
		case <-p.exited:
		case <-time.After(3 * time.Second):
			p.cmd.Process.Kill()
		}
		p.cmd.Wait()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		p.t.Errorf("%s: %s", p.name, e)
	}
	p.errs = nil
}

// freeLoopPort returns a port of 127.0.0.1 no one holds now.
func freeLoopPort(t testing.TB) netip.AddrPort {
	t.Helper()
	return freePortOn(t, "127.0.0.1:0")
}

// freePortOn returns a port of the address of ap (port 0) no one holds now.
func freePortOn(t testing.TB, ap string) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", ap)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String())
}

// Label names p in failures (testutil.Receiver).
func (p *proc) Label() string { return p.name }
