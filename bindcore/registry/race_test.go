//go:build linux

package registry

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/rdmabind/rdmabind/internal/testutil"
	"golang.org/x/sys/unix"
)

// The claim protocol without a registry-wide lock (docs/registry.md):
// publish pending, take a ticket, check, commit. These tests drive two
// claims through chosen interleavings of its steps (claimHook), then race
// many claims of goroutines and processes, with and without SIGKILLs.

// setHook installs h as claimHook for the test.
func setHook(t testing.TB, h func(*Registry, claimStep)) {
	t.Helper()
	claimHook = h
	t.Cleanup(func() { claimHook = nil })
}

// stepped is a claim run in its own goroutine that stops at every step of
// the protocol until the test lets it go on.
type stepped struct {
	name    string
	arrive  chan claimStep
	proceed chan struct{} // closed: the claimant dies
	freed   chan struct{} // closed: no more stops
	paused  bool
	at      claimStep // where it is paused
	done    chan error
	claim   *Claim
	free    sync.Once
}

// stepper makes the claims of some Registries stepped.
type stepper struct {
	mu sync.Mutex
	by map[*Registry]*stepped
}

func newStepper(t *testing.T) *stepper {
	s := &stepper{by: map[*Registry]*stepped{}}
	setHook(t, func(r *Registry, step claimStep) {
		s.mu.Lock()
		c := s.by[r]
		s.mu.Unlock()
		if c == nil {
			return
		}
		select {
		case c.arrive <- step:
			if _, ok := <-c.proceed; !ok {
				panic("claimant dies")
			}
		case <-c.freed:
		}
	})
	return s
}

// start begins a claim of req through r; with die, the claimant "dies" on
// arriving at that step: it panics inside Claim, whose cleanup closes the
// claim's fd, so the kernel drops the lock as at a SIGKILL.
func (s *stepper) start(t *testing.T, name string, r *Registry, req ClaimRequest) *stepped {
	c := &stepped{name: name, arrive: make(chan claimStep), proceed: make(chan struct{}), freed: make(chan struct{}), done: make(chan error, 1)}
	// Before the Registries' Close (cleanups run last first): a claim
	// left paused by a failed test would keep Close waiting.
	t.Cleanup(func() {
		if c.paused {
			c.die(t)
		}
		c.run()
	})
	s.mu.Lock()
	s.by[r] = c
	s.mu.Unlock()
	go func() {
		defer func() {
			if v := recover(); v != nil {
				c.done <- fmt.Errorf("died: %v", v)
			}
		}()
		cl, err := r.Claim(req)
		c.claim = cl
		c.done <- err
	}()
	return c
}

// to lets c run until it arrives at step.
func (c *stepped) to(t *testing.T, step claimStep) {
	t.Helper()
	if c.paused && c.at == step {
		return
	}
	for {
		if c.paused {
			c.paused = false
			c.proceed <- struct{}{}
		}
		select {
		case got := <-c.arrive:
			c.paused, c.at = true, got
			if got == step {
				return
			}
			if got > step {
				t.Fatalf("%s: at step %d, past %d", c.name, got, step)
			}
		case err := <-c.done:
			t.Fatalf("%s: claim returned (%v) before step %d", c.name, err, step)
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: step %d not reached", c.name, step)
		}
	}
}

// die makes the claimant, paused at a step, die there: the hook panics
// inside Claim, whose cleanup closes the claim's fd (the kernel drops its
// lock, as at a SIGKILL), and nothing else is written.
func (c *stepped) die(t *testing.T) {
	t.Helper()
	if !c.paused {
		t.Fatalf("%s: not paused", c.name)
	}
	c.paused = false
	close(c.proceed)
}

// run lets c go on without stops.
func (c *stepped) run() {
	c.free.Do(func() { close(c.freed) })
	if c.paused {
		c.paused = false
		c.proceed <- struct{}{}
	}
}

// result waits for the claim's outcome.
func (c *stepped) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: claim did not return", c.name)
		return nil
	}
}

// pending reports that the claim has not returned within d.
func (c *stepped) pending(d time.Duration) bool {
	select {
	case err := <-c.done:
		c.done <- err
		return false
	case <-time.After(d):
		return true
	}
}

func wantWin(t *testing.T, c *stepped, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v, want it to win", c.name, err)
	}
}

func wantLose(t *testing.T, c *stepped, err error, msg string) {
	t.Helper()
	if !errors.Is(err, ErrConflict) || !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("%s: %v, want ErrConflict (EADDRINUSE)", c.name, err)
	}
	if msg != "" && !strings.Contains(err.Error(), msg) {
		t.Errorf("%s: %q does not say %q", c.name, err, msg)
	}
}

// liveOf lists the live claims of port.
func liveOf(t *testing.T, r *Registry, port uint16) []Record {
	t.Helper()
	recs, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	for _, rec := range recs {
		if rec.Port == port {
			out = append(out, rec)
		}
	}
	return out
}

// TestClaimOrder drives two conflicting claims, through two Registries (two
// sets of open file descriptions, as two processes), through the
// interleavings that matter, and checks that exactly one wins, and which.
func TestClaimOrder(t *testing.T) {
	excl := ClaimRequest{Addr: a4, Port: 4000, Share: Exclusive}
	setup := func(t *testing.T) (*stepper, *Registry, *Registry, *Registry) {
		dir := testDir(t)
		return newStepper(t), openTest(t, dir), openTest(t, dir), openTest(t, dir)
	}
	t.Run("one after the other", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		a := s.start(t, "A", ra, excl)
		a.run()
		wantWin(t, a, a.result(t))
		b := s.start(t, "B", rb, excl)
		b.run()
		wantLose(t, b, b.result(t), "an exclusive claim")
		if n := len(liveOf(t, obs, 4000)); n != 1 {
			t.Fatalf("%d live claims", n)
		}
	})
	t.Run("both published, the earlier ticket checks first", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepPublished)
		b.to(t, stepPublished)
		a.to(t, stepTicketed)
		b.to(t, stepTicketed)
		a.run() // sees B pending with a later ticket: goes on
		wantWin(t, a, a.result(t))
		b.run() // sees A committed
		wantLose(t, b, b.result(t), "")
		if recs := liveOf(t, obs, 4000); len(recs) != 1 || recs[0].SocketID != a.claim.Record().SocketID {
			t.Fatalf("live %v", recs)
		}
	})
	t.Run("both published, the later ticket checks first", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepPublished)
		b.to(t, stepPublished)
		a.to(t, stepTicketed)
		b.to(t, stepTicketed)
		b.run() // sees A pending with an earlier ticket: waits for it
		if !b.pending(30 * time.Millisecond) {
			t.Fatalf("B returned while A was still checking: %v", b.result(t))
		}
		a.run()
		wantWin(t, a, a.result(t))
		wantLose(t, b, b.result(t), "")
		if n := len(liveOf(t, obs, 4000)); n != 1 {
			t.Fatalf("%d live claims", n)
		}
	})
	t.Run("a published claim without its ticket yet", func(t *testing.T) {
		// A publishes, then stops before its fetch-add; B goes all the way:
		// B cannot order itself against A, so it waits; A then gets the later
		// ticket, and backs out when B commits.
		s, ra, rb, obs := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepPublished)
		b.run()
		if !b.pending(30 * time.Millisecond) {
			t.Fatalf("B returned while A had no ticket: %v", b.result(t))
		}
		a.run()
		wantWin(t, b, b.result(t))
		wantLose(t, a, a.result(t), "")
		if recs := liveOf(t, obs, 4000); len(recs) != 1 || recs[0].SocketID != b.claim.Record().SocketID {
			t.Fatalf("live %v", recs)
		}
	})
	t.Run("a claim between its fetch-add and storing its ticket", func(t *testing.T) {
		// A holds the earlier ticket, but its record does not show it yet
		// when B checks: B must wait, not take A for a later claim.
		s, ra, rb, obs := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepTicketTaken)
		b.run()
		if !b.pending(30 * time.Millisecond) {
			t.Fatalf("B returned while A's ticket was not in its record: %v", b.result(t))
		}
		a.run()
		wantWin(t, a, a.result(t))
		wantLose(t, b, b.result(t), "")
		if recs := liveOf(t, obs, 4000); len(recs) != 1 || recs[0].SocketID != a.claim.Record().SocketID {
			t.Fatalf("live %v", recs)
		}
	})
	t.Run("the first scan leaves a pending claim to the check", func(t *testing.T) {
		// A is published with its ticket when B scans: B must not fail on a
		// claim that may still back out; it publishes and checks. A wins.
		s, ra, rb, _ := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepTicketed)
		b.to(t, stepTicketed) // B passed its first scan
		a.run()
		wantWin(t, a, a.result(t))
		b.run()
		wantLose(t, b, b.result(t), "")
	})
	t.Run("other users", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		rb.uid = 4242 // a process of another user (with CAP_DAC_OVERRIDE)
		shared := ClaimRequest{Addr: any4, Port: 4000}
		a, b := s.start(t, "A", ra, shared), s.start(t, "B", rb, ClaimRequest{Addr: a4, Port: 4000})
		a.to(t, stepPublished)
		b.to(t, stepPublished)
		b.to(t, stepTicketed)
		a.to(t, stepTicketed)
		a.run() // later ticket: waits for B
		if !a.pending(30 * time.Millisecond) {
			t.Fatal("A returned while B was still checking")
		}
		b.run()
		wantWin(t, b, b.result(t))
		wantLose(t, a, a.result(t), "a claim of another user")
		if recs := liveOf(t, obs, 4000); len(recs) != 1 || recs[0].UID != 4242 {
			t.Fatalf("live %v", recs)
		}
	})
	t.Run("same user shares", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		req := ClaimRequest{Addr: a4, Port: 4000}
		a, b := s.start(t, "A", ra, req), s.start(t, "B", rb, req)
		a.to(t, stepTicketed)
		b.to(t, stepTicketed)
		b.run()
		a.run()
		wantWin(t, a, a.result(t))
		wantWin(t, b, b.result(t))
		if n := len(liveOf(t, obs, 4000)); n != 2 {
			t.Fatalf("%d live claims, want 2", n)
		}
	})
	t.Run("fresh claims", func(t *testing.T) {
		s, ra, rb, _ := setup(t)
		fresh := ClaimRequest{Addr: any4, Port: 4000, Fresh: true}
		a, b := s.start(t, "A", ra, fresh), s.start(t, "B", rb, ClaimRequest{Addr: a4, Port: 4000, Fresh: true})
		a.to(t, stepTicketed)
		b.to(t, stepTicketed)
		b.run()
		a.run()
		wantWin(t, a, a.result(t))
		wantLose(t, b, b.result(t), "port of its own")
	})
	// A Fresh claim refuses a claim of the same user that would share with
	// it, but not the other way round: the outcome follows the tickets.
	t.Run("fresh with the earlier ticket, a sharing claim commits first", func(t *testing.T) {
		// The tickets order the claims, not their commits: F comes first,
		// and S, which shares with F, after it.
		s, ra, rb, obs := setup(t)
		f, sh := s.start(t, "F", ra, ClaimRequest{Addr: any4, Port: 4000, Fresh: true}), s.start(t, "S", rb, ClaimRequest{Addr: a4, Port: 4000})
		f.to(t, stepTicketed)
		sh.to(t, stepTicketed)
		sh.run() // later ticket, and it shares with F: commits
		wantWin(t, sh, sh.result(t))
		f.run() // S came after it
		wantWin(t, f, f.result(t))
		if n := len(liveOf(t, obs, 4000)); n != 2 {
			t.Fatalf("%d live claims, want 2", n)
		}
	})
	t.Run("a sharing claim committed before a fresh one scans", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		sh, f := s.start(t, "S", ra, ClaimRequest{Addr: a4, Port: 4000}), s.start(t, "F", rb, ClaimRequest{Addr: any4, Port: 4000, Fresh: true})
		sh.run()
		wantWin(t, sh, sh.result(t))
		f.run() // its first scan finds S
		wantLose(t, f, f.result(t), "port of its own")
		if n := len(liveOf(t, obs, 4000)); n != 1 {
			t.Fatalf("%d live claims", n)
		}
	})
	t.Run("fresh first, a sharing claim after it", func(t *testing.T) {
		s, ra, rb, obs := setup(t)
		f, sh := s.start(t, "F", ra, ClaimRequest{Addr: any4, Port: 4000, Fresh: true}), s.start(t, "S", rb, ClaimRequest{Addr: a4, Port: 4000})
		f.to(t, stepTicketed)
		sh.to(t, stepTicketed)
		f.run() // S has the later ticket: F commits, as if S came after it
		wantWin(t, f, f.result(t))
		sh.run() // and S shares with F, as it would after F
		wantWin(t, sh, sh.result(t))
		if n := len(liveOf(t, obs, 4000)); n != 2 {
			t.Fatalf("%d live claims", n)
		}
	})
	t.Run("a sharing claim first, fresh after it", func(t *testing.T) {
		s, ra, rb, _ := setup(t)
		sh, f := s.start(t, "S", ra, ClaimRequest{Addr: a4, Port: 4000}), s.start(t, "F", rb, ClaimRequest{Addr: any4, Port: 4000, Fresh: true})
		sh.to(t, stepTicketed)
		f.to(t, stepTicketed)
		f.run() // S is earlier and pending: F waits for it
		if !f.pending(30 * time.Millisecond) {
			t.Fatal("F returned while S was still checking")
		}
		sh.run()
		wantWin(t, sh, sh.result(t))
		wantLose(t, f, f.result(t), "port of its own")
	})
	// A claimant that dies at any step leaves no live claim: the other one
	// goes on (waiting for it only while it lives) and wins, and a third
	// claim afterwards sees only the winner.
	for _, step := range []claimStep{stepLocked, stepPublished, stepTicketTaken, stepTicketed, stepChecked, stepCommitted} {
		t.Run(fmt.Sprintf("the earlier claimant dies at step %d", step), func(t *testing.T) {
			s, ra, rb, obs := setup(t)
			a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
			if step >= stepTicketed {
				a.to(t, stepTicketed)
				b.to(t, stepTicketed) // B's ticket is the later one
			}
			a.to(t, step)
			dead := func() {
				a.die(t)
				if err := a.result(t); err == nil || !strings.Contains(err.Error(), "died") {
					t.Fatalf("A: %v", err)
				}
			}
			if step == stepCommitted { // B would see A's live claim: A dies first
				dead()
				b.run()
			} else {
				b.run()
				if step >= stepTicketed && !b.pending(30*time.Millisecond) {
					t.Fatalf("B returned while A lived: %v", b.result(t))
				}
				dead()
			}
			wantWin(t, b, b.result(t))
			if recs := liveOf(t, obs, 4000); len(recs) != 1 || recs[0].SocketID != b.claim.Record().SocketID {
				t.Fatalf("live %v", recs)
			}
			_, err := obs.Claim(excl)
			wantLose(t, &stepped{name: "C"}, err, "")
			b.claim.Release()
			c, err := obs.Claim(excl)
			if err != nil {
				t.Fatalf("after both: %v", err)
			}
			c.Release()
		})
	}
	t.Run("an earlier claim stuck in its check", func(t *testing.T) {
		old := pendingTimeout
		pendingTimeout = 50 * time.Millisecond
		t.Cleanup(func() { pendingTimeout = old })
		s, ra, rb, _ := setup(t)
		a, b := s.start(t, "A", ra, excl), s.start(t, "B", rb, excl)
		a.to(t, stepTicketed)
		b.run()
		wantLose(t, b, b.result(t), "still being made")
		a.run()
		wantWin(t, a, a.result(t))
	})
}

// raceRound runs one round: every request claims at once (goroutines
// released together), with the hook yielding or sleeping at random steps.
// It returns the claims made and the errors.
func raceRound(regs []*Registry, reqs []ClaimRequest) ([]*Claim, []error) {
	n := len(reqs)
	claims := make([]*Claim, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			claims[i], errs[i] = regs[i%len(regs)].Claim(reqs[i])
		}()
	}
	close(start)
	wg.Wait()
	return claims, errs
}

// jitter is a hook that widens the protocol's windows at random.
func jitter(counts *[stepCommitted + 1]atomic.Int64) func(*Registry, claimStep) {
	return func(_ *Registry, s claimStep) {
		counts[s].Add(1)
		switch rand.IntN(6) {
		case 0:
			runtime.Gosched()
		case 1:
			time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
		}
	}
}

// TestClaimRace: in every round, goroutines claim one port at once through
// several Registries (as several processes), and exactly one wins when the
// claims conflict pairwise (exclusive, fresh, one per user), or the winners
// are all of one user (shared claims of two users).
func TestClaimRace(t *testing.T) {
	rounds := 400
	if testing.Short() {
		rounds = 50
	}
	dir := testDir(t)
	var regs []*Registry
	for i := 0; i < 4; i++ {
		regs = append(regs, openTest(t, dir))
	}
	// Two users: registries 0 and 2 are uid 1001's, 1 and 3 uid 1002's.
	for i, r := range regs {
		r.uid = uint32(1001 + i%2)
	}
	obs := openTest(t, dir)
	var counts [stepCommitted + 1]atomic.Int64
	setHook(t, jitter(&counts))
	raced := 0
	for round := 0; round < rounds; round++ {
		port := uint16(20000 + round%50)
		kind := []string{"exclusive", "fresh", "users", "two users"}[round%4]
		var reqs []ClaimRequest
		for i := 0; i < 6; i++ {
			req := ClaimRequest{Addr: a4, Port: port}
			switch kind {
			case "exclusive":
				req.Share = Exclusive
			case "fresh":
				req.Fresh = true
				if i%2 == 0 {
					req.Addr = any4
				}
			}
			reqs = append(reqs, req)
		}
		if kind == "users" { // one claim per user
			reqs = reqs[:2] // through registries 0 and 1: uids 1001, 1002
		}
		published := counts[stepPublished].Load()
		claims, errs := raceRound(regs, reqs)
		if counts[stepPublished].Load()-published > 1 {
			raced++ // two or more claims were published at once: the check decided
		}
		var winners []Record
		for i, err := range errs {
			switch {
			case err == nil:
				winners = append(winners, claims[i].Record())
			case !errors.Is(err, ErrConflict):
				t.Fatalf("round %d (%s): claim %d: %v", round, kind, i, err)
			}
		}
		switch kind {
		case "two users":
			if len(winners) == 0 {
				t.Fatalf("round %d (%s): nobody won", round, kind)
			}
			for _, w := range winners {
				if w.UID != winners[0].UID {
					t.Fatalf("round %d (%s): winners of two users: %v", round, kind, winners)
				}
			}
		default:
			if len(winners) != 1 {
				t.Fatalf("round %d (%s): %d winners: %v; errors %v", round, kind, len(winners), winners, errs)
			}
		}
		if live := liveOf(t, obs, port); len(live) != len(winners) {
			t.Fatalf("round %d (%s): %d winners, %d live records: %v", round, kind, len(winners), len(live), live)
		}
		for _, c := range claims {
			if c != nil {
				c.Release()
			}
		}
	}
	if recs, err := obs.List(); err != nil || len(recs) != 0 {
		t.Fatalf("left: %v %v", recs, err)
	}
	t.Logf("%d rounds; %d with two or more claims published at once; steps reached: locked %d, published %d, ticketed %d, checked %d, committed %d",
		rounds, raced, counts[stepLocked].Load(), counts[stepPublished].Load(), counts[stepTicketed].Load(),
		counts[stepChecked].Load(), counts[stepCommitted].Load())
	if raced == 0 {
		t.Error("no round raced in the check: the test did not test it")
	}
}

// stepReturned is a helper's step word once its Claim returned.
const stepReturned = 99

// stepName names a helper's step word.
func stepName(w uint64) string {
	switch {
	case w == 0:
		return "idle"
	case w == 1:
		return "first scan"
	case w == stepReturned:
		return "returned"
	case w >= 2 && w-2 <= uint64(stepCommitted):
		return []string{"start", "locked", "published", "ticket taken", "ticketed", "checked", "committed"}[w-2]
	}
	return fmt.Sprintf("step word %d", w)
}

// goWords maps the small file through which the race tests start helper
// processes at once: word 0 is the round to start, word 1+i helper i's
// protocol step (see stepName).
func goWords(path string) ([]uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const size = 4096
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&m[0])), size/8), nil
}

// raceHelper is helper mode "race": it opens the registry (REG_PATH), prints
// "ready", then serves lines from stdin:
//
//	claim <round> <port> <kind>  print "armed", spin until word 0 reaches
//	                             round, claim, print "ok <slot> <uid>" or
//	                             "err <published> <message>" (published:
//	                             whether it lost after publishing)
//	release                      release the claim made, print "done"
//
// kind is exclusive, fresh (on 0.0.0.0 for even REG_IDX) or shared. With
// REG_HOOK=sleep the protocol sleeps up to 300µs at random steps (SIGKILLs
// land inside it); otherwise it yields at random.
func raceHelper(r *Registry) int {
	idx, _ := strconv.Atoi(os.Getenv("REG_IDX"))
	words, err := goWords(os.Getenv("REG_GO"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	step := &words[1+idx]
	sleep := os.Getenv("REG_HOOK") == "sleep"
	published := false // the current claim reached stepPublished
	claimHook = func(_ *Registry, s claimStep) {
		atomic.StoreUint64(step, uint64(s)+2)
		if s == stepPublished {
			published = true
		}
		switch rand.IntN(4) {
		case 0:
			runtime.Gosched()
		case 1:
			if sleep {
				time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
			}
		}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	var held *Claim
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 4 && f[0] == "claim":
			round, _ := strconv.ParseUint(f[1], 10, 64)
			port, _ := strconv.Atoi(f[2])
			req := ClaimRequest{Addr: a4, Port: uint16(port)}
			switch f[3] {
			case "exclusive":
				req.Share = Exclusive
			case "fresh":
				req.Fresh = true
				if idx%2 == 0 {
					req.Addr = any4
				}
			}
			fmt.Println("armed")
			for n := 0; atomic.LoadUint64(&words[0]) < round; n++ {
				if n%64 == 63 {
					runtime.Gosched()
				}
			}
			atomic.StoreUint64(step, 1)
			published = false
			c, err := r.Claim(req)
			atomic.StoreUint64(step, stepReturned)
			if err != nil {
				fmt.Printf("err %v %s\n", published, oneLine(err))
				continue
			}
			held = c
			fmt.Printf("ok %d %d\n", c.Record().Slot, c.Record().UID)
		case len(f) == 1 && f[0] == "release":
			if held != nil {
				held.Release()
				held = nil
			}
			atomic.StoreUint64(step, 0)
			fmt.Println("done")
		default:
			fmt.Fprintf(os.Stderr, "race helper: bad line %q\n", in.Text())
			return 2
		}
	}
	return 0
}

// raceProc is a running race helper.
type raceProc struct {
	*helper
	idx int
	uid uint32
}

func startRaceProc(t *testing.T, idx int, uid uint32, path, gopath, hook string) *raceProc {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, helperEnv+"=race", "REG_PATH="+path, "REG_GO="+gopath,
		"REG_IDX="+strconv.Itoa(idx), "REG_HOOK="+hook, "REG_ADDR=10.0.0.1")
	if uid != 0 {
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_DAC_OVERRIDE}
	}
	p := &raceProc{helper: startCmd(t, cmd), idx: idx, uid: uid}
	if s := p.line(t); s != "ready" {
		t.Fatalf("race helper %d: %q", idx, s)
	}
	return p
}

func (p *raceProc) send(t *testing.T, format string, args ...any) {
	t.Helper()
	if _, err := fmt.Fprintf(p.Stdin, format+"\n", args...); err != nil {
		t.Fatalf("race helper %d: %v", p.idx, err)
	}
}

// raceFiles makes the registry file and the start file for process races.
// As root, the directory is world-accessible and helpers of another uid get
// CAP_DAC_OVERRIDE (root's registry is trusted by everyone).
func raceFiles(t *testing.T) (reg *Registry, gopath string, words []uint64) {
	dir := testDir(t)
	reg = openTest(t, dir)
	gopath = filepath.Join(dir, "go")
	words, err := goWords(gopath)
	if err != nil {
		t.Fatal(err)
	}
	return reg, gopath, words
}

// TestClaimRaceProcesses: processes (of two users, as root) claim one port
// at once, many rounds: exactly one wins each round of exclusive or fresh
// claims, or of one claim per user; shared claims of two users have winners
// of one user only.
func TestClaimRaceProcesses(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 40
	}
	reg, gopath, words := raceFiles(t)
	uids := []uint32{0, 0, 0, 0}
	if os.Geteuid() == 0 {
		uids = []uint32{0, 65534, 0, 65534}
	}
	var procs []*raceProc
	for i, uid := range uids {
		procs = append(procs, startRaceProc(t, i, uid, reg.Path(), gopath, "sleep"))
	}
	kinds := []string{"exclusive", "fresh", "shared"}
	stats := map[string]int{}
	raced := 0 // rounds in which a claim lost after publishing
	for round := 1; round <= rounds; round++ {
		kind := kinds[round%len(kinds)]
		port := 30000 + round%100
		players := procs
		if kind == "shared" && round%2 == 0 && uids[1] != 0 {
			players = procs[:2] // one of each user: exactly one wins
		}
		for _, p := range players {
			p.send(t, "claim %d %d %s", round, port, kind)
		}
		for _, p := range players {
			if s := p.line(t); s != "armed" {
				t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
			}
		}
		atomic.StoreUint64(&words[0], uint64(round))
		var wins []string
		backedOut := 0
		for _, p := range players {
			s := p.line(t)
			switch {
			case strings.HasPrefix(s, "ok "):
				wins = append(wins, fmt.Sprintf("helper %d (uid %d)", p.idx, p.uid))
			case conflictLine(s, "true"):
				backedOut++
			case conflictLine(s, "false"):
			default:
				t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
			}
		}
		if backedOut > 0 {
			raced++
		}
		live := liveOf(t, reg, uint16(port))
		switch {
		case kind != "shared" || len(players) == 2: // pairwise conflicts
			if len(wins) != 1 {
				t.Fatalf("round %d (%s, %d players): winners %v", round, kind, len(players), wins)
			}
		case uids[1] == 0: // shared claims of one user: all share
			if len(wins) != len(players) {
				t.Fatalf("round %d (%s, one user): winners %v", round, kind, wins)
			}
		default: // shared claims of two users: one user's
			if len(wins) == 0 {
				t.Fatalf("round %d (%s): nobody won", round, kind)
			}
			for _, rec := range live {
				if rec.UID != live[0].UID {
					t.Fatalf("round %d (%s): live claims of two users: %v", round, kind, live)
				}
			}
		}
		if len(live) != len(wins) {
			t.Fatalf("round %d (%s): winners %v, live records %v", round, kind, wins, live)
		}
		stats[fmt.Sprintf("%s/%d", kind, len(wins))]++
		for _, p := range players {
			p.send(t, "release")
		}
		for _, p := range players {
			if s := p.line(t); s != "done" {
				t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
			}
		}
	}
	if recs, err := reg.List(); err != nil || len(recs) != 0 {
		t.Fatalf("left: %v %v", recs, err)
	}
	t.Logf("%d rounds, helpers of uids %v; rounds by kind/winners: %v; %d rounds decided after two or more claims were published", rounds, uids, stats, raced)
}

// TestClaimRaceKill: processes claim one port exclusively at once, with
// the protocol slowed at random steps, and in every round one of them is
// SIGKILLed at a random moment, mostly inside the protocol. Survivors never
// hold two claims; after the round the port is free at once (the dead
// process's record, whatever step it was at, is stale or reclaimable), and
// the killed helper is replaced.
func TestClaimRaceKill(t *testing.T) {
	rounds := 150
	if testing.Short() {
		rounds = 20
	}
	reg, gopath, words := raceFiles(t)
	const N = 4
	procs := make([]*raceProc, N)
	for i := range procs {
		procs[i] = startRaceProc(t, i, 0, reg.Path(), gopath, "sleep")
	}
	killedAt := map[string]int{}
	for round := 1; round <= rounds; round++ {
		port := 31000 + round%50
		for _, p := range procs {
			p.send(t, "claim %d %d exclusive", round, port)
		}
		for _, p := range procs {
			if s := p.line(t); s != "armed" {
				t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
			}
		}
		atomic.StoreUint64(&words[0], uint64(round))
		time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
		victim := rand.IntN(N)
		st := atomic.LoadUint64(&words[1+victim])
		procs[victim].Cmd.Process.Signal(syscall.SIGKILL)
		killedAt[stepName(st)]++
		wins := 0
		for i, p := range procs {
			if i == victim {
				continue
			}
			s := p.line(t)
			switch {
			case strings.HasPrefix(s, "ok "):
				wins++
			case conflictLine(s, "true"), conflictLine(s, "false"):
			default:
				t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
			}
		}
		if wins > 1 {
			t.Fatalf("round %d: %d survivors hold the exclusive port", round, wins)
		}
		procs[victim].Cmd.Wait()
		if live := liveOf(t, reg, uint16(port)); len(live) != wins {
			t.Fatalf("round %d: %d winners, live %v", round, wins, live)
		}
		for i, p := range procs {
			if i != victim {
				p.send(t, "release")
				if s := p.line(t); s != "done" {
					t.Fatalf("round %d: helper %d: %q", round, p.idx, s)
				}
			}
		}
		// Whatever the victim left, the port is free now.
		c, err := reg.Claim(ClaimRequest{Addr: any4, Port: uint16(port), Share: Exclusive})
		if err != nil {
			t.Fatalf("round %d (victim killed at %s): claim after the round: %v", round, stepName(st), err)
		}
		if live := liveOf(t, reg, uint16(port)); len(live) != 1 {
			t.Fatalf("round %d: live %v", round, live)
		}
		c.Release()
		procs[victim] = startRaceProc(t, victim, 0, reg.Path(), gopath, "sleep")
	}
	if recs, err := reg.List(); err != nil || len(recs) != 0 {
		t.Fatalf("left: %v %v", recs, err)
	}
	t.Logf("%d rounds, one SIGKILL each; the victim was at: %v", rounds, killedAt)
}
