//go:build linux

package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/testutil"
	"golang.org/x/sys/unix"
)

// holdHelper starts a helper that claims addr:port and holds it; it returns
// when the claim is made.
func holdHelper(t testing.TB, dir, addr string, port int, env ...string) (*helper, Record) {
	t.Helper()
	h := startHelper(t, 0, "hold", dir, append([]string{"REG_ADDR=" + addr, "REG_PORT=" + strconv.Itoa(port)}, env...)...)
	f := strings.Fields(h.line(t))
	if len(f) != 4 || f[0] != "ready" {
		t.Fatalf("helper: %q", f)
	}
	slot, _ := strconv.Atoi(f[1])
	gen, _ := strconv.ParseUint(f[2], 10, 64)
	sid, _ := strconv.ParseUint(f[3], 10, 64)
	return h, Record{Slot: slot, State: StateUsed, Generation: gen, SocketID: sid, PID: uint32(h.Cmd.Process.Pid)}
}

// TestMultiProcess: N processes of one user claim one port and hold it;
// List shows N live records with their pids; when they are SIGKILLed their
// records are stale, and reclaimed.
func TestMultiProcess(t *testing.T) {
	const N = 4
	dir := t.TempDir()
	r := openTest(t, dir)
	var pids []uint32
	var hs []*helper
	for i := 0; i < N; i++ {
		h, rec := holdHelper(t, dir, "10.0.0.1", 6000)
		hs = append(hs, h)
		pids = append(pids, rec.PID)
	}
	recs, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for _, rec := range recs {
		if rec.Port != 6000 || rec.UID != uint32(os.Geteuid()) {
			t.Errorf("record %v", rec)
		}
		st, err := StartTime(int(rec.PID))
		if err != nil || st != rec.StartTime {
			t.Errorf("record %v: start time %d %v", rec, st, err)
		}
		got = append(got, rec.PID)
	}
	slices.Sort(got)
	slices.Sort(pids)
	if !slices.Equal(got, pids) {
		t.Fatalf("List pids %v, helpers %v", got, pids)
	}
	// This process shares the port too; an exclusive claim is refused, naming a holder.
	c, err := r.Claim(ClaimRequest{Addr: any4, Port: 6000})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 6000, Share: Exclusive})
	mustConflict(t, err)
	if !strings.Contains(err.Error(), fmt.Sprintf("pid %d ", pids[0])) && !strings.Contains(err.Error(), "pid ") {
		t.Errorf("message: %v", err)
	}
	c.Release()
	for _, h := range hs {
		h.Cmd.Process.Signal(syscall.SIGKILL)
		h.Cmd.Wait()
	}
	if recs, err := r.List(); err != nil || len(recs) != 0 {
		t.Fatalf("after SIGKILL: %v %v", recs, err)
	}
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 6000, Share: Exclusive}); err != nil {
		t.Fatal(err)
	}
}

// TestCrashSafety SIGKILLs helpers at random points while they claim, set
// roles, list and release in a loop (and, one time in ten, while they
// create the file): no live claim is left behind, and the next exclusive
// claim of the port succeeds at once. -registry.crashiters sets the count.
func TestCrashSafety(t *testing.T) {
	iters := *crashIters
	if testing.Short() {
		iters = min(iters, 20)
	}
	var stale, torn, clean, inInit int
	initState := map[string]int{}
	dir := testDir(t)
	for i := 0; i < iters; i++ {
		create := i%10 == 9
		if create {
			dir = testDir(t) // the helper creates the file
			inInit++
		}
		h := startHelper(t, 0, "churn", dir, "REG_ADDR=0.0.0.0", "REG_PORT=7777")
		if create {
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
		} else {
			if s := h.line(t); s != "ready" {
				t.Fatalf("helper: %q", s)
			}
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
		h.Cmd.Process.Signal(syscall.SIGKILL)
		h.Cmd.Wait()
		if create { // how far the helper got with the file
			b, err := os.ReadFile(filepath.Join(dir, FileName(testNetns, uint32(os.Geteuid()))))
			switch {
			case err != nil:
				initState["no file"]++
			case len(b) == 0:
				initState["empty"]++
			case string(b[:8]) != string(Magic[:]):
				initState["no magic"]++
			default:
				initState["initialized"]++
			}
		}

		r, err := Open(Options{Dir: dir, Netns: testNetns})
		if err != nil {
			t.Fatalf("iteration %d: Open after SIGKILL: %v", i, err)
		}
		// What the kill left (for the log): a stale used record, a torn one, or nothing.
		st := "clean"
		for s := 0; s < r.scanLimit(); s++ {
			rec, _, err := r.read(s)
			if err != nil {
				st = "torn"
				break
			}
			if rec.State == StateUsed {
				st = "stale"
			}
		}
		switch st {
		case "stale":
			stale++
		case "torn":
			torn++
		default:
			clean++
		}
		c, err := r.Claim(ClaimRequest{Addr: any6, Port: 7777, DualStack: true, Share: Exclusive})
		if err != nil {
			t.Fatalf("iteration %d (left %s): claim after SIGKILL: %v", i, st, err)
		}
		if recs, err := r.List(); err != nil || len(recs) != 1 || recs[0].PID != uint32(os.Getpid()) {
			t.Fatalf("iteration %d: List %v %v", i, recs, err)
		}
		c.Release()
		r.Close()
	}
	t.Logf("%d SIGKILLs: left %d stale used records, %d torn records, %d nothing; %d of them during Open/create, leaving %v",
		iters, stale, torn, clean, inInit, initState)
}

// TestOtherUserProcess runs a helper as uid 65534 beside root's registry.
// Each user has its own file in a shared directory; a user's file is refused
// by everyone else unless they are privileged, and a privileged reader of
// root's file sees root's claims as conflicts naming the holder.
func TestOtherUserProcess(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	dir, err := os.MkdirTemp("", "rdmabind-registry-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil { // like /dev/shm
		t.Fatal(err)
	}
	r := openTest(t, dir)
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 6100, Role: RoleListening}); err != nil {
		t.Fatal(err)
	}
	run := func(capDAC bool, mode, path, port string) string {
		cmd := testutil.HelperCommand(t, 65534, helperEnv+"="+mode, "REG_DIR="+dir, "REG_PATH="+path, "REG_ADDR=10.0.0.1", "REG_PORT="+port)
		if capDAC {
			cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_DAC_OVERRIDE}
		}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	// In the shared directory the other user gets a file of its own, and
	// its registry knows nothing of root's claims (the kernel's TCP
	// reservation keeps the users apart, see bindcore).
	if out := run(false, "claim", "", "6100"); !strings.HasPrefix(out, "ok ") {
		t.Errorf("uid 65534 claim in its own registry: %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName(testNetns, 65534))); err != nil {
		t.Errorf("uid 65534's registry file: %v", err)
	}
	// Without privilege the other user cannot open root's 0600 file.
	if out := run(false, "open", r.Path(), "6100"); !strings.HasPrefix(out, "err ") || !strings.Contains(out, ErrPermission.Error()) {
		t.Errorf("uid 65534 open of root's file: %q, want an ErrPermission", out)
	}
	// With CAP_DAC_OVERRIDE it can (root's file is trusted), and its claim of
	// root's port is refused, naming the holder.
	out := run(true, "claim", r.Path(), "6100")
	want := fmt.Sprintf("held by pid %d (uid 0)", os.Getpid())
	if !strings.HasPrefix(out, "err registry: claim ") || !strings.Contains(out, ": "+ErrConflict.Error()+": ") || !strings.Contains(out, want) {
		t.Errorf("uid 65534 claim of root's port: %q, want ErrConflict saying %q", out, want)
	}
	t.Logf("uid 65534: %s", strings.TrimPrefix(out, "err "))
	if out = run(true, "claim", r.Path(), "6101"); !strings.HasPrefix(out, "ok ") {
		t.Errorf("uid 65534 claim of a free port: %q", out)
	}
	// And root does not trust a file uid 65534 made under root's name (a
	// squatter in a shared directory): refused, never used.
	squat := filepath.Join(dir, "squat.reg")
	if out := run(false, "open", squat, "1"); out != "ok" {
		t.Fatalf("uid 65534 creating %s: %q", squat, out)
	}
	_, err = Open(Options{Path: squat, Netns: testNetns})
	mustErr(t, err, ErrPermission)
}

// TestWaitKilled measures how fast Wait returns after the holder of the
// awaited claim is SIGKILLed.
func TestWaitKilled(t *testing.T) {
	testutil.CheckFDs(t)
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const M = 20
	var ds []time.Duration
	for i := 0; i < M; i++ {
		h, rec := holdHelper(t, dir, "10.0.0.1", 6200, "REG_ROLE=listening")
		done := make(chan error, 1)
		var woke time.Time
		go func() {
			err := r.Wait(context.Background(), rec)
			woke = time.Now()
			done <- err
		}()
		time.Sleep(20 * time.Millisecond) // let it block in F_OFD_SETLKW
		select {
		case err := <-done:
			t.Fatalf("Wait returned while the holder lives: %v", err)
		default:
		}
		t0 := time.Now()
		h.Cmd.Process.Signal(syscall.SIGKILL)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not return after SIGKILL")
		}
		ds = append(ds, woke.Sub(t0))
		h.Cmd.Wait()
		// Wait reclaimed the stale record; the port is free at once.
		if recs, _ := r.List(); len(recs) != 0 {
			t.Fatalf("after Wait: %v", recs)
		}
		c, err := r.Claim(ClaimRequest{Addr: a4, Port: 6200, Share: Exclusive})
		if err != nil {
			t.Fatal(err)
		}
		c.Release()
	}
	slices.Sort(ds)
	t.Logf("Wait wake-up after SIGKILL of the holder (kill(2) to Wait's return, %d runs): min %v, median %v, p90 %v, max %v",
		M, ds[0], ds[M/2], ds[M*9/10], ds[M-1])
}

func TestWaitRelease(t *testing.T) {
	testutil.CheckFDs(t)
	r := openTest(t, t.TempDir())
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 1, Role: RoleDesignated})
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Record()
	done := make(chan error, 1)
	var woke time.Time
	go func() { err := r.Wait(context.Background(), rec); woke = time.Now(); done <- err }()
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	c.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("Wait wake-up after Release in this process: %v", woke.Sub(t0))
	// An ended claim: at once.
	if err := r.Wait(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// TestWaitSlotReused: the awaited claim ended and a new claim took its
// slot (and lock) before the waiter's lock request was granted. Wait still
// returns, from rereading the record, not when the new claim ends. The test
// stages it: the lock stays held while the record becomes another claim's.
func TestWaitSlotReused(t *testing.T) {
	r := openTest(t, t.TempDir())
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Record()
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), rec) }()
	time.Sleep(20 * time.Millisecond)
	next := rec
	next.Generation, next.SocketID, next.Port = rec.Generation+1, rec.SocketID+1, 2
	var b [RecordSize]byte
	next.encodeTo(&b)
	t0 := time.Now()
	r.res.mem.write(rec.Slot, &b)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Wait saw its slot reused in %v (poll interval %v)", time.Since(t0), waitPoll)
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not return although its claim ended")
	}
	if held, _ := r.held(rec.Slot); !held {
		t.Error("the new claim's lock was disturbed")
	}
}

func TestWaitCancel(t *testing.T) {
	testutil.CheckFDs(t)
	dir := t.TempDir()
	r, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	h, rec := holdHelper(t, dir, "10.0.0.1", 1)
	for i := 0; i < 50; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(3000))*time.Microsecond)
		err := r.Wait(ctx, rec)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with a deadline: %v", err)
		}
	}
	// Close cancels a pending Wait.
	done := make(chan error, 1)
	go func() { done <- r.Wait(context.Background(), rec) }()
	time.Sleep(20 * time.Millisecond)
	t0 := time.Now()
	r.Close()
	select {
	case err := <-done:
		mustErr(t, err, ErrClosed)
		t.Logf("Close cancelled a pending Wait in %v", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cancel Wait")
	}
	h.Kill()
	if err := r.Wait(context.Background(), rec); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait after Close: %v", err)
	}
}

// TestNoFDLeak: everything a Registry opens, Close closes.
func TestNoFDLeak(t *testing.T) {
	dir := t.TempDir()
	warm := openTest(t, dir) // the runtime's own lazily opened fds, first
	warm.Close()
	before := testutil.FDCount(t)
	r, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	var cs []*Claim
	for i := 0; i < 40; i++ { // more than the pool keeps
		c, err := r.Claim(ClaimRequest{Addr: a4, Port: uint16(1 + i%3)})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs[:30] {
		c.Release()
	}
	r.List()
	r.FindFreePort(a4, 1, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	r.Wait(ctx, cs[35].Record())
	cancel()
	go r.Wait(context.Background(), cs[36].Record()) // pending at Close
	time.Sleep(10 * time.Millisecond)
	if during := testutil.FDCount(t); during <= before {
		t.Fatalf("fds: %d before, %d with 10 claims", before, during)
	}
	r.Close()
	time.Sleep(10 * time.Millisecond)
	if after := testutil.FDCount(t); after != before {
		t.Fatalf("fds: %d before Open, %d after Close", before, after)
	}
}
