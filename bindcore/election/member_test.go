//go:build linux

package election

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// skipIfSteerDegraded fails unless steering works here (root in private
// namespaces on a 5.14+ kernel), so that the steering tests cannot pass
// by silently running degraded.
func requireSteering(t testing.TB, on bool) {
	t.Helper()
	if !on {
		t.Fatal("steering is off (no BPF here?): this test is for the steered mode")
	}
}

// localListener is a designation in this process, with its own claim and
// shadow, for the in-process tests.
type localListener struct {
	d      *Member
	claim  *registry.Claim
	shadow *shadow.Socket
}

func startLocal(t testing.TB, reg *registry.Registry, ap netip.AddrPort, opts *steer.Options) *localListener {
	t.Helper()
	return startLocalWith(t, reg, ap, opts, nil)
}

// startLocalWith is startLocal with an rdma_cm part (nil: none).
func startLocalWith(t testing.TB, reg *registry.Registry, ap netip.AddrPort, opts *steer.Options, rdma RDMAPort) *localListener {
	t.Helper()
	claim, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: ap.Port()})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shadow.Bind(ap)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Join(context.Background(), Config{Registry: reg, Claim: claim, Shadow: sh, Backlog: 256, RDMA: rdma, Steer: opts})
	if err != nil {
		t.Fatal(err)
	}
	return &localListener{d: d, claim: claim, shadow: sh}
}

func (l *localListener) close() error {
	err := l.d.Close()
	l.claim.Release()
	return err
}

// acceptOne accepts one connection on l within d and reports whether it did.
func acceptOne(l *localListener, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	c, err := l.d.AcceptTCP(ctx)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Three listeners of one port in this process: designated, standby, in
// line. Connections go to the designated one only; when it closes, the
// standby takes over (and gets the connection that arrived meanwhile), the
// one in line becomes the standby; the registry says so at each step.
// Closing the rest while they are being promoted leaves no goroutine, lock
// or fd behind. Run with -race.
func TestDesignationInProcess(t *testing.T) {
	if !testutil.RunInPrivateNS(t) {
		return
	}
	netpollerUp()
	testutil.CheckFDs(t)
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ap := testutil.FreeLoopPort(t)
	ls := []*localListener{startLocal(t, reg, ap, nil)}
	requireSteering(t, ls[0].d.State().Steering)
	ls = append(ls, startLocal(t, reg, ap, nil), startLocal(t, reg, ap, nil))
	want := []registry.Role{registry.RoleDesignated, registry.RoleStandby, registry.RoleListening}
	for i, l := range ls {
		if st := l.d.State(); st.Role != want[i] {
			t.Fatalf("listener %d: %v, want %v", i, st.Role, want[i])
		}
	}
	if got := roles(t, reg, ap); !slices.Equal(got, []string{"designated", "listening", "standby"}) {
		t.Fatalf("registry roles %v", got)
	}
	// Every accept of the others is waiting while ten connections go to #0.
	var wg sync.WaitGroup
	stray := make(chan int, 2)
	ctx, cancel := context.WithCancel(context.Background())
	for i := 1; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, err := ls[i].d.AcceptTCP(ctx); err == nil {
				c.Close()
				stray <- i
			}
		}()
	}
	for range 10 {
		c, err := net.Dial("tcp4", ap.String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if !acceptOne(ls[0], 5*time.Second) {
			t.Fatal("the designated listener accepted nothing")
		}
	}
	cancel()
	wg.Wait()
	close(stray)
	for i := range stray {
		t.Fatalf("listener %d accepted a connection", i)
	}
	// A connection queued on #0 when it closes migrates to #1.
	c, err := net.Dial("tcp4", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(10 * time.Millisecond)
	t0 := time.Now()
	if err := ls[0].close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ls[1].d.Designated():
		t.Logf("standby designated %v after the close", time.Since(t0))
	case <-time.After(5 * time.Second):
		t.Fatal("standby not designated")
	}
	if !acceptOne(ls[1], 5*time.Second) {
		t.Fatal("the queued connection did not migrate to the standby")
	}
	for deadline := time.Now().Add(5 * time.Second); ls[2].d.State().Role != registry.RoleStandby; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the listener in line is %v, want standby", ls[2].d.State().Role)
		}
	}
	if got := roles(t, reg, ap); !slices.Equal(got, []string{"designated", "standby"}) {
		t.Fatalf("registry roles after the handover %v", got)
	}
	// Close both at once, while #2 is being promoted.
	errs := make(chan error, 2)
	for _, l := range ls[1:] {
		go func() { errs <- l.close() }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := roles(t, reg, ap); len(got) != 0 {
		t.Fatalf("registry roles after every close %v", got)
	}
}

// Four listener processes on one port (IPv4 and IPv6): the first is
// designated, the second the standby, the others in line, as the registry
// lists them; 1000 connections are all accepted by the designated one (as
// the clients and the listeners both report).
func TestListenFourProcesses(t *testing.T) {
	if testutil.InGuest() {
		t.Skip("a host test (make unit); the guest runs the device tests")
	}
	if !testutil.RunInPrivateNS(t) {
		return
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			dir := t.TempDir()
			ap := testutil.FreePortOn(t, addr)
			var ps []*testutil.ListenProc
			wantRole := []string{"designated", "standby", "listening", "listening"}
			for i, id := range []byte("ABCD") {
				p, role, steering := startListenProc(t, dir, ap, id, listenerOpts{})
				requireSteering(t, steering)
				if role != wantRole[i] {
					t.Fatalf("listener %c is %s, want %s", id, role, wantRole[i])
				}
				ps = append(ps, p)
			}
			reg, err := registry.Open(registry.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			if got := roles(t, reg, ap); !slices.Equal(got, []string{"designated", "listening", "listening", "standby"}) {
				t.Fatalf("registry roles %v", got)
			}
			const n = 1000
			res := testutil.Storm(ap, n, 16, nil)
			rs := make([]testutil.Receiver, len(ps))
			for i, p := range ps {
				rs[i] = p
			}
			tl := testutil.CheckOneReceives(t, res, n, 'A', rs...)
			t.Logf("%s: %v", ap, tl)
		})
	}
}

// Graceful close of the designated process's listener under a storm of
// 10,000 connections (64 at a time): the standby takes over, the one in
// line becomes the standby; no connection is refused or reset; every
// connection started after the standby reported its designation is
// accepted by it.
func TestListenGracefulStorm(t *testing.T) {
	if testutil.InGuest() {
		t.Skip("a host test (make unit); the guest runs the device tests")
	}
	if !testutil.RunInPrivateNS(t) {
		return
	}
	dir := t.TempDir()
	ap := testutil.FreeLoopPort(t)
	a, _, steering := startListenProc(t, dir, ap, 'A', listenerOpts{})
	requireSteering(t, steering)
	b, _, _ := startListenProc(t, dir, ap, 'B', listenerOpts{})
	c, _, _ := startListenProc(t, dir, ap, 'C', listenerOpts{})
	const n, conc, at = 10000, 64, 3000
	start := time.Now()
	reached, _, done := testutil.StormAsync(ap, n, conc, at)
	<-reached
	var aCount int
	var tClose int64
	fmt.Sscanf(a.Do("close", "closed"), "closed %d %d", &aCount, &tClose)
	tDes := b.WaitDesignated(5 * time.Second)
	res := <-done
	elapsed := time.Since(start)
	tl := testutil.CountConns(res)
	if tl.Refused+tl.Reset+tl.Other != 0 || tl.By['A']+tl.By['B'] != n {
		a.Mu.Lock()
		aErrs := slices.Clone(a.AccErrs)
		a.Mu.Unlock()
		b.Mu.Lock()
		bErrs := slices.Clone(b.AccErrs)
		b.Mu.Unlock()
		t.Fatalf("clients: %v (A's accept errors %q, B's %q; A closed at %d, B designated at %d)", tl, aErrs, bErrs, tClose, tDes)
	}
	if bc := b.Count(); aCount != tl.By['A'] || bc != tl.By['B'] {
		t.Fatalf("listeners counted A %d B %d, clients %v", aCount, bc, tl)
	}
	after := 0
	for _, cn := range res {
		if cn.Start > tDes {
			after++
			if cn.Server != 'B' {
				t.Fatalf("connection %d started %v after B's designation, accepted by %c", cn.ID, time.Duration(cn.Start-tDes), cn.Server)
			}
		}
	}
	if r := c.Role(); r != "standby" {
		t.Fatalf("C is %s after the handover, want standby", r)
	}
	t.Logf("%d connections in %v (%.0f/s): A %d, B %d, C %d; close -> B designated %v; %d started after that",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), tl.By['A'], tl.By['B'], c.Count(),
		time.Duration(tDes-tClose), after)
}

var listenKillRuns = testutil.EnvInt("RDMABIND_LISTEN_KILLRUNS", 20)

// percentiles returns min, p50, p90 and max of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[int(q*float64(len(s)-1)+0.5)] }
	return fmt.Sprintf("min %v p50 %v p90 %v max %v (n=%d)", s[0], p(0.5), p(0.9), s[len(s)-1], len(s))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// killStats is the outcome of killRuns.
type killStats struct {
	firstAcc, designated                               []time.Duration
	total, ok, refused, lostAccepted, lostQueued, aAcc int
}

// killRuns SIGKILLs a designated listener process under a storm (32
// connections at a time, the kill at the 1,000th, the storm going on until
// the standby has accepted 1,000 and reported its designation), runs
// times. The process is stopped just before the kill to note the
// connections it holds accepted (see stopAndKill).
func killRuns(t *testing.T, runs int, o listenerOpts) killStats {
	var ks killStats
	for run := range runs {
		dir := t.TempDir()
		ap := testutil.FreeLoopPort(t)
		a, _, _ := startListenProc(t, dir, ap, 'A', o)
		b, role, _ := startListenProc(t, dir, ap, 'B', o)
		if role != "standby" {
			t.Fatalf("run %d: B is %s", run, role)
		}
		const n, conc, at, after = 1_000_000, 32, 1000, 1000
		reached, stop, done := testutil.StormAsync(ap, n, conc, at)
		<-reached
		held, tKill := a.StopAndKill()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if len(b.Accepted()) >= after && b.DesignatedAt() != 0 {
				break
			}
		}
		stop()
		res := <-done
		<-a.Exited
		ks.total += len(res)
		aAcc := a.Accepted()
		bAcc := b.Accepted()
		first := int64(0)
		for _, ts := range bAcc {
			if ts < tKill {
				t.Fatalf("run %d: B accepted before the kill", run)
			}
			if first == 0 || ts < first {
				first = ts
			}
		}
		tDes := b.DesignatedAt()
		if first == 0 || tDes == 0 {
			t.Fatalf("run %d: B accepted %d, designated at %d", run, len(bAcc), tDes)
		}
		ks.firstAcc = append(ks.firstAcc, time.Duration(first-tKill))
		ks.designated = append(ks.designated, time.Duration(tDes-tKill))
		for _, c := range res {
			_, byA := aAcc[c.ID]
			switch {
			case c.Err == nil && (c.Server == 'A') == byA:
				ks.ok++
			case c.Err == nil:
				t.Fatalf("run %d: connection %d greeted by %c, A reported %v", run, c.ID, c.Server, byA)
			case c.Dial && errors.Is(c.Err, unix.ECONNREFUSED):
				ks.refused++
			case byA || held[c.Port]:
				ks.lostAccepted++
			case errors.Is(c.Err, unix.ECONNRESET) || errors.Is(c.Err, unix.EPIPE) || strings.Contains(c.Err.Error(), "EOF"):
				ks.lostQueued++
			default:
				t.Fatalf("run %d: connection %d: %v", run, c.ID, c.Err)
			}
		}
		ks.aAcc += len(aAcc)
		a.Kill()
		b.Kill()
	}
	return ks
}

// SIGKILL of the designated listener's process under a storm: the standby
// accepts at once (the kernel's standby slot), designates itself when the
// registry's lock tells it, and nothing is lost but the connections the
// dead process had accepted. Reported: kill -> the standby's first accept,
// kill -> its designation, min/p50/p90/max over the runs
// (RDMABIND_LISTEN_KILLRUNS, default 20).
func TestListenKillTakeover(t *testing.T) {
	if testutil.InGuest() {
		t.Skip("a host test (make unit); the guest runs the device tests")
	}
	if !testutil.RunInPrivateNS(t) {
		return
	}
	ks := killRuns(t, listenKillRuns, listenerOpts{})
	t.Logf("%d runs: kill -> standby's first accept: %s", listenKillRuns, percentiles(ks.firstAcc))
	t.Logf("%d runs: kill -> standby designated:     %s", listenKillRuns, percentiles(ks.designated))
	t.Logf("%d connections: ok %d; lost: accepted by the dead process %d, reset from its queue %d, refused %d",
		ks.total, ks.ok, ks.lostAccepted, ks.lostQueued, ks.refused)
	if ks.refused != 0 || ks.lostQueued != 0 {
		t.Errorf("%d refused, %d lost from the queue: want none with a standby", ks.refused, ks.lostQueued)
	}
	// The target is 5 ms at the median; the bound leaves room for a loaded
	// machine, the log shows the numbers.
	if med := median(ks.designated); med > 25*time.Millisecond {
		t.Errorf("median kill -> designated %v, want <= 5 ms (bound 25 ms)", med)
	}
}

// Without BPF steering, forced through steer.Open's own checks (a pin root
// that is not on bpffs gives ErrNotSupported): Steering reports it; only the
// designated process listens in TCP (the standby's kernel socket does not),
// so every connection still goes to it; a graceful close hands over to the
// standby, which then listens (the old queue is lost, the requests in the
// gap refused: reported); a SIGKILL too (distribution reported).
func TestListenDegraded(t *testing.T) {
	if testutil.InGuest() {
		t.Skip("a host test (make unit); the guest runs the device tests")
	}
	if !testutil.RunInPrivateNS(t) {
		return
	}
	o := listenerOpts{steerRoot: t.TempDir()}
	dir := t.TempDir()
	ap := testutil.FreeLoopPort(t)
	a, role, steering := startListenProc(t, dir, ap, 'A', o)
	if steering || role != "designated" {
		t.Fatalf("A: %s, steering %v", role, steering)
	}
	b, _, _ := startListenProc(t, dir, ap, 'B', o)
	st := b.Do("state", "state ")
	if !strings.Contains(st, `"role":"standby"`) || !strings.Contains(st, `"tcp_listening":false`) || !strings.Contains(st, "not supported") {
		t.Fatalf("B: %s", st)
	}
	res := testutil.Storm(ap, 300, 8, nil)
	if tl := testutil.CountConns(res); tl.By['A'] != 300 {
		t.Fatalf("clients: %v, want all by A", tl)
	}
	// Graceful handover under a storm.
	reached, _, done := testutil.StormAsync(ap, 3000, 16, 1000)
	<-reached
	var tClose int64
	var aCount int
	fmt.Sscanf(a.Do("close", "closed"), "closed %d %d", &aCount, &tClose)
	tDes := b.WaitDesignated(5 * time.Second)
	res = <-done
	tl := testutil.CountConns(res)
	for _, c := range res {
		if c.Start > tDes && c.Err == nil && c.Server != 'B' {
			t.Fatalf("connection started after B's designation accepted by %c", c.Server)
		}
	}
	t.Logf("degraded graceful handover, 3000 connections: %v; close -> B designated %v", tl, time.Duration(tDes-tClose))
	if tl.By['B'] == 0 {
		t.Fatal("B accepted nothing after the handover")
	}
	ks := killRuns(t, max(listenKillRuns/2, 3), o)
	t.Logf("degraded, %d runs: kill -> standby's first accept: %s", len(ks.firstAcc), percentiles(ks.firstAcc))
	t.Logf("degraded, %d runs: kill -> standby designated:     %s", len(ks.designated), percentiles(ks.designated))
	t.Logf("degraded, %d connections: ok %d; lost: accepted by the dead process %d, reset from its queue %d, refused %d",
		ks.total, ks.ok, ks.lostAccepted, ks.lostQueued, ks.refused)
}

// Listeners of another user (uid 65534, no capability) run degraded
// because steer refuses them (ErrNotPermitted), with their own registry in
// a shared directory: one designated listener still gets every connection.
func TestListenDegradedOtherUser(t *testing.T) {
	if testutil.InGuest() {
		t.Skip("a host test (make unit); the guest runs the device tests")
	}
	if !testutil.RunInPrivateNS(t) {
		return
	}
	dir := testutil.SharedDir(t)
	ap := testutil.FreeLoopPort(t)
	o := listenerOpts{uid: 65534}
	_, role, steering := startListenProc(t, dir, ap, 'A', o)
	if steering || role != "designated" {
		t.Fatalf("A (uid 65534): %s, steering %v", role, steering)
	}
	b, _, _ := startListenProc(t, dir, ap, 'B', o)
	st := b.Do("state", "state ")
	if !strings.Contains(st, `"tcp_listening":false`) || !strings.Contains(st, "not permitted") {
		t.Fatalf("B (uid 65534): %s", st)
	}
	res := testutil.Storm(ap, 200, 8, nil)
	if tl := testutil.CountConns(res); tl.By['A'] != 200 {
		t.Fatalf("clients: %v, want all by A", tl)
	}
	t.Logf("uid 65534, steering refused (%s): 200 of 200 by the designated listener", st)
}

// BenchmarkListen: a Listen and its Close over the real registry, steering
// group and shadow socket (no rdma_cm): "designated", the first listener of
// its port (election lock, flag, role, doorbell, steering group created,
// listen, attach, designate; then close and release of the group);
// "standby", with a designated listener of another process... here of this
// one (election lost, standby lock, join, listen, attach, standby slot).
// Each iteration also claims and binds, as a Bind would.
func BenchmarkListen(b *testing.B) {
	if !testutil.RunInPrivateNS(b) {
		return
	}
	reg, err := registry.Open(registry.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	for _, mode := range []string{"designated", "standby"} {
		b.Run(mode, func(b *testing.B) {
			ap := testutil.FreeLoopPort(b)
			if mode == "standby" {
				l := startLocal(b, reg, ap, nil)
				defer l.close()
			}
			b.ResetTimer()
			for range b.N {
				l := startLocal(b, reg, ap, nil)
				if err := l.close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDesignationSwitch: the graceful handover between two listeners
// of one port in this process, over the real registry and steering group:
// the designated listener closes, and the time until the standby reports
// its designation (the kernel grants it the election lock, it sets its
// role, rings the doorbell, takes the designated slot) is the ns/op. A new
// standby is started between iterations, off the clock.
func BenchmarkDesignationSwitch(b *testing.B) {
	if !testutil.RunInPrivateNS(b) {
		return
	}
	reg, err := registry.Open(registry.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer reg.Close()
	ap := testutil.FreeLoopPort(b)
	cur := startLocal(b, reg, ap, nil)
	next := startLocal(b, reg, ap, nil)
	var total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StartTimer()
		t0 := time.Now()
		cur.close()
		<-next.d.Designated()
		total += time.Since(t0)
		b.StopTimer()
		cur, next = next, startLocal(b, reg, ap, nil)
	}
	b.StopTimer()
	cur.close()
	next.close()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/switch")
}

// roles returns the registry's roles of ap, sorted.
func roles(t testing.TB, reg *registry.Registry, ap netip.AddrPort) []string {
	t.Helper()
	out, err := Roles(reg, ap)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
