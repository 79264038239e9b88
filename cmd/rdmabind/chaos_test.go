package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/qp"
)

// opLimit is the deadline of every operation of the storm; an operation
// that has not returned opLimit+opSlack after it began is a hang.
const (
	opLimit = 5 * time.Second
	opSlack = 5 * time.Second
)

// Chaos: rxe0 is deleted and added again at random moments, cycles times
// (RDMABIND_CHAOS_CYCLES; make test runs 10, make chaos 100), during a
// storm of binds, listens, dials and messages against an echo server of
// another process. Every operation returns within its deadline, every
// delete completes (within 10 s each), and afterwards this process holds no
// more fds than after its warm-up, no registry record and no rdma_cm or
// verbs object (rdma res), and the server is alive and serves again. Only in
// the SoftRoCE guest.
func TestDeviceChaos(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("deletes and re-adds rxe0: only in the SoftRoCE guest (RDMABIND_SOFTROCE=1)")
	}
	cycles := testutil.EnvInt("RDMABIND_CHAOS_CYCLES", 10)
	workers := testutil.EnvInt("RDMABIND_CHAOS_WORKERS", 4)
	addr := netip.MustParseAddr("10.77.0.1")
	dir := t.TempDir()
	t.Cleanup(func() {
		if _, err := os.Stat("/sys/class/infiniband/rxe0"); err != nil {
			exec.Command("rdma", "link", "add", "rxe0", "type", "rxe", "netdev", "eth0").Run()
		}
	})
	srvAP, err := listenTCP4(addr)
	if err != nil {
		t.Skip(err)
	}
	srv := startCLI(t, "bind", srvAP.String(), "--listen", "--echo", "--registry", dir)
	srv.next("bound")
	srv.next("listening")
	var srvLog []string
	var srvMu sync.Mutex
	go func() { // the server's lines: kept for the log, not checked
		for m := range srv.lines {
			if m["event"] != "accept" && m["event"] != "closed" {
				srvMu.Lock()
				srvLog = append(srvLog, fmt.Sprint(m))
				srvMu.Unlock()
			}
		}
	}()
	defer func() {
		srvMu.Lock()
		t.Logf("the server's events: %v", srvLog)
		srvMu.Unlock()
	}()

	var b *bindcore.Binder
	open := func() {
		var err error
		if b, err = bindcore.Open(bindcore.Options{RegistryDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	open()
	var inflight sync.Map // op id -> start
	var opSeq atomic.Uint64
	op := func(name string, fn func(ctx context.Context) error) error {
		k := opSeq.Add(1)
		inflight.Store(k, struct {
			name string
			at   time.Time
		}{name, time.Now()})
		defer inflight.Delete(k)
		ctx, cancel := context.WithTimeout(context.Background(), opLimit)
		defer cancel()
		return fn(ctx)
	}
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{}
	note := func(what string, err error) {
		errMu.Lock()
		defer errMu.Unlock()
		k := what + ": " + portRE.ReplaceAllString(err.Error(), ":P")
		if len(k) > 160 {
			k = k[:160]
		}
		errs[k]++
	}
	round := func(i int) {
		s, err := b.Socket(bindcore.AFInet)
		if err != nil {
			failed.Add(1)
			return
		}
		defer op("socket close", func(context.Context) error { return s.Close() })
		if err := op("bind", func(context.Context) error { return s.BindAddrPort(netip.AddrPortFrom(addr, 0)) }); err != nil {
			failed.Add(1)
			note("bind", err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		if i%3 == 0 {
			if err := op("listen", func(ctx context.Context) error { return s.ListenContext(ctx, 4) }); err != nil {
				failed.Add(1)
				note("listen", err)
			}
			return
		}
		mode := qp.ModeCM
		if i%2 == 0 {
			mode = qp.ModeTCP
		}
		switch os.Getenv("RDMABIND_CHAOS_MODE") {
		case "cm":
			mode = qp.ModeCM
		case "tcp":
			mode = qp.ModeTCP
		}
		var c *qp.Conn
		if err := op("dial", func(ctx context.Context) (err error) {
			c, err = qp.Dial(ctx, s, srvAP, &qp.Options{Mode: mode})
			return
		}); err != nil {
			failed.Add(1)
			note("dial "+mode.String(), err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		defer func() {
			if err := op("conn close", func(context.Context) error { return c.Close() }); err != nil {
				note("conn close", err)
			}
		}()
		msg := []byte(fmt.Sprintf("chaos %d", i))
		buf := make([]byte, 64)
		for range 3 {
			err := op("message", func(context.Context) error {
				c.SetDeadline(time.Now().Add(opLimit))
				if err := c.Send(msg); err != nil {
					return err
				}
				_, err := c.Recv(buf)
				return err
			})
			if err != nil {
				failed.Add(1)
				note("message "+mode.String(), err)
				return
			}
		}
		if err := op("close", func(context.Context) error { return c.Close() }); err != nil {
			note("close", err)
		}
		ok.Add(1)
	}
	// Warm-up: both modes once, so that the contexts, the hub and the
	// netpoller hold their fds before the baseline.
	for i := 1; i <= 2; i++ {
		round(i)
	}
	// The baseline: with the warm-up's Binder closed (a Binder keeps a pool
	// of registry descriptors, as many as it had claims at once).
	b.Close()
	base := fdKinds()
	baseLinks := lastLinks
	open()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i += workers {
				select {
				case <-stop:
					return
				default:
				}
				round(i)
			}
		}()
	}
	// The watchdog: no operation may outlive its deadline by opSlack.
	hung := make(chan string, 1)
	wdDone := make(chan struct{})
	go func() {
		defer close(wdDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			inflight.Range(func(_, v any) bool {
				o := v.(struct {
					name string
					at   time.Time
				})
				if d := time.Since(o.at); d > opLimit+opSlack {
					select {
					case hung <- fmt.Sprintf("%s has not returned after %v", o.name, d):
					default:
					}
				}
				return true
			})
		}
	}()
	var dels []time.Duration
	for cycle := range cycles {
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		start := time.Now()
		t.Logf("cycle %d: delete at %s", cycle+1, start.Format("15:04:05.000"))
		done := make(chan error, 1)
		go func() {
			out, err := exec.Command("rdma", "link", "delete", "rxe0").CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out)
			}
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("cycle %d: rdma link delete rxe0: %v", cycle+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Logf("this process before the storm stopped: %s", rdmacm.DeviceState("rxe0"))
			close(stop)
			logHolders(t, os.Getpid())
			logHolders(t, srv.cmd.Process.Pid)
			t.Logf("this process: %s", rdmacm.DeviceState("rxe0"))
			errMu.Lock()
			for k, n := range errs {
				if !strings.HasPrefix(k, "bind:") {
					t.Logf("%6d x %s", n, k)
				}
			}
			errMu.Unlock()
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Fatalf("cycle %d: rdma link delete rxe0 still blocked after 10 s", cycle+1)
		}
		dels = append(dels, time.Since(start))
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		rdmaCmd(t, "link", "add", "rxe0", "type", "rxe", "netdev", "eth0")
		waitServed(t, "rxe0", addr)
		select {
		case h := <-hung:
			close(stop)
			t.Fatalf("cycle %d: hang: %s", cycle+1, h)
		default:
		}
	}
	// Let the storm run on the device that came back, then stop it.
	time.Sleep(time.Second)
	close(stop)
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(opLimit + opSlack + 5*time.Second):
		inflight.Range(func(_, v any) bool {
			t.Logf("in flight: %+v", v)
			return true
		})
		pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		logTasks(t, os.Getpid())
		t.Fatal("the storm's workers did not stop")
	}
	<-wdDone
	select {
	case h := <-hung:
		t.Fatalf("hang: %s", h)
	default:
	}
	slowest := time.Duration(0)
	for _, d := range dels {
		slowest = max(slowest, d)
	}
	t.Logf("%d cycles: deletes took %v (slowest %v); %d rounds completed, %d failed (expected while rxe0 is away)", cycles, dels, slowest, ok.Load(), failed.Load())
	errMu.Lock()
	for k, n := range errs {
		t.Logf("%6d x %s", n, k)
	}
	errMu.Unlock()
	if ok.Load() == 0 {
		t.Error("no round of the storm completed")
	}
	// A round on the device that came back works.
	before := ok.Load()
	round(1)
	if ok.Load() != before+1 {
		t.Error("a dial to the server after the storm failed")
	}
	// Nothing left behind.
	recs, _ := b.Registry().List()
	for _, r := range recs {
		if r.PID == uint32(os.Getpid()) {
			t.Errorf("stale registry record of this process: %+v", r)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("Binder Close: %v", err)
	}
	// The steering keeps the namespace's program and maps loaded for the
	// next group (bindcore/steer, "kept pins"); done steering, close them.
	if err := steer.CloseIdle(); err != nil {
		t.Errorf("steer.CloseIdle: %v", err)
	}
	// librdmacm keeps a context (its command and async descriptors) of
	// every device it has seen for the life of the process: at most one
	// of each per device present. Everything else is as after the warm-up.
	after := fdKinds()
	ents, _ := os.ReadDir("/sys/class/infiniband")
	ndev := len(ents)
	t.Logf("descriptors after the warm-up %v, after the storm %v (%d devices)", base, after, ndev)
	if after["other"] > base["other"] || after["uverbs-deleted"] > 0 || after["uverbs"] > ndev || after["ibevent"] > ndev {
		t.Errorf("fd leak: after the warm-up %v, after the storm %v, with %d devices", base, after, ndev)
		t.Logf("descriptors after the warm-up: %v", baseLinks)
		t.Logf("descriptors after the storm: %v", lastLinks)
	}

	for _, kind := range []string{"cm_id", "qp", "cq", "mr", "pd"} {
		out, _ := exec.Command("rdma", "res", "show", kind).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, fmt.Sprintf("pid %d ", os.Getpid())) {
				t.Errorf("rdma res show %s: left: %s", kind, line)
			}
		}
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	quit := time.AfterFunc(10*time.Second, func() {
		t.Errorf("the echo server did not exit 10 s after SIGTERM: its threads' kernel stacks and goroutines follow (SIGQUIT)")
		logTasks(t, srv.cmd.Process.Pid)
		srv.cmd.Process.Signal(syscall.SIGQUIT)
	})
	defer quit.Stop()
	if err := srv.cmd.Wait(); err != nil {
		t.Errorf("the echo server after SIGTERM: %v (it must have survived the storm)", err)
	}
}

var portRE = regexp.MustCompile(`:[0-9]+\b`)

// fdKinds counts this process's descriptors: of a uverbs node
// ("uverbs"), of a deleted one ("uverbs-deleted"), RDMA event files (a
// context's async descriptor or a completion channel, "ibevent") and the
// others.
func fdKinds() map[string]int {
	n := map[string]int{}
	defer func() { lastLinks = links() }()
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		switch {
		case err != nil:
		case strings.HasPrefix(l, "/dev/infiniband/uverbs") && strings.HasSuffix(l, " (deleted)"):
			n["uverbs-deleted"]++
		case strings.HasPrefix(l, "/dev/infiniband/uverbs"):
			n["uverbs"]++
		case l == "anon_inode:[infinibandevent]":
			n["ibevent"]++
		default:
			n["other"]++
		}
	}
	return n
}

// logHolders logs what process pid holds of the RDMA devices: descriptors
// and mappings of uverbs files.
func logHolders(t *testing.T, pid int) {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var fds []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if strings.Contains(l, "infiniband") {
			var st syscall.Stat_t
			syscall.Stat(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()), &st)
			fds = append(fds, fmt.Sprintf("%s->%s(ino %d)", e.Name(), l, st.Ino))
		}
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	n := 0
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.Contains(l, "uverbs") || strings.Contains(l, "infiniband") {
			n++
		}
	}
	t.Logf("pid %d holds: %v; %d mappings of uverbs files", pid, fds, n)
	for _, kind := range []string{"cm_id", "qp", "cq", "mr", "pd"} {
		out, _ := exec.Command("rdma", "res", "show", kind).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, fmt.Sprintf("pid %d ", pid)) {
				t.Logf("  %s: %s", kind, line)
			}
		}
	}
}

// logTasks logs where each thread of process pid waits in the kernel.
func logTasks(t *testing.T, pid int) {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		dir := fmt.Sprintf("/proc/%d/task/%s/", pid, task.Name())
		wchan, _ := os.ReadFile(dir + "wchan")
		sc, _ := os.ReadFile(dir + "syscall")
		stack, _ := os.ReadFile(dir + "stack")
		t.Logf("task %s: wchan %s syscall %s stack %q", task.Name(), wchan, strings.TrimSpace(string(sc)), stack)
		// A contended glibc mutex (futex value 2): its owner's tid is at
		// offset 8 of the pthread_mutex_t.
		if f := strings.Fields(string(sc)); len(f) > 3 && f[0] == "202" && f[3] == "0x2" {
			var addr uint64
			fmt.Sscanf(f[1], "0x%x", &addr)
			if mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid)); err == nil {
				b := make([]byte, 4)
				if _, err := mem.ReadAt(b, int64(addr+8)); err == nil {
					t.Logf("  mutex %#x owner tid %d", addr, int32(b[0])|int32(b[1])<<8|int32(b[2])<<16|int32(b[3])<<24)
				}
				mem.Close()
			}
		}
	}
	maps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.Contains(l, "librdmacm") || strings.Contains(l, "libibverbs") || strings.Contains(l, "librxe") {
			t.Logf("  map %s", l)
		}
	}
}

// lastLinks are the descriptors fdKinds saw last (for the log).
var lastLinks []string

func links() []string {
	var out []string
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"->"+l)
	}
	return out
}

// listenTCP4 returns a free port of addr.
func listenTCP4(addr netip.Addr) (netip.AddrPort, error) {
	l, err := net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("no %v here: %w", addr, err)
	}
	defer l.Close()
	return netip.MustParseAddrPort(l.Addr().String()), nil
}
