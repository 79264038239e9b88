//go:build linux

package election

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/internal/ofdlock"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// cmPort models rdma_cm's rule for one port (the kernel's cma_check_port):
// one id at a time listens; another's rdma_listen fails with EADDRINUSE
// until the listener's id is destroyed. It records how long the port had
// no listener between a close and the next listen.
type cmPort struct {
	mu     sync.Mutex
	owner  *cmModel
	closed time.Time
	gaps   []time.Duration
}

// cmModel is one member's RDMAPort on a cmPort; its Listen retries as
// package cmport's does (a growing pause, 50 µs to 1 ms), and counts its
// tries.
type cmModel struct {
	p     *cmPort
	tries int // under p.mu
}

// listenCost is what a try of the model's Listen takes (rdma_create_id,
// rdma_bind_addr, rdma_listen: tens of microseconds on a host, tens of
// milliseconds in a busy one-CPU guest), so that a Close that does not
// wait for its successor returns before it listens.
const listenCost = 2 * time.Millisecond

func (m *cmModel) Listen(ctx context.Context, backlog int) error {
	pause := 50 * time.Microsecond
	for {
		time.Sleep(listenCost)
		m.p.mu.Lock()
		m.tries++
		if m.p.owner == nil {
			m.p.owner = m
			if !m.p.closed.IsZero() {
				m.p.gaps = append(m.p.gaps, time.Since(m.p.closed))
			}
			m.p.mu.Unlock()
			return nil
		}
		m.p.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Millisecond)
	}
}

func (m *cmModel) Standby() {}

func (m *cmModel) Close() error { return m.Unlisten() }

func (m *cmModel) Unlisten() error {
	m.p.mu.Lock()
	defer m.p.mu.Unlock()
	if m.p.owner == m {
		m.p.owner = nil
		m.p.closed = time.Now()
	}
	return nil
}

func (p *cmPort) listener() *cmModel {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owner
}

// A graceful handover in rdma_cm, with steering and without: the
// designated listener's Close returns only once its standby listens in
// rdma_cm (so a client that reconnects after the close, as net/http's
// does after Shutdown, finds a listener), and the port is without a
// listener only from the old id's end to the successor's listen, which the
// rdma_cm lock (woken by the kernel) keeps short: the successor's Listen
// succeeds at its first try, it does not poll for the port.
func TestRDMAHandover(t *testing.T) {
	if !testutil.RunInPrivateNS(t) {
		return
	}
	netpollerUp()
	for _, mode := range []string{"steered", "degraded"} {
		t.Run(mode, func(t *testing.T) {
			testutil.CheckFDs(t)
			reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			var opts *steer.Options
			if mode == "degraded" {
				opts = &steer.Options{Root: t.TempDir()}
			}
			ap := testutil.FreeLoopPort(t)
			port := &cmPort{}
			const rounds = 20
			var worst time.Duration
			prev := startModelled(t, reg, ap, opts, port)
			if prev.d.State().Steering != (mode == "steered") {
				t.Fatalf("steering %v in mode %s", prev.d.State().Steering, mode)
			}
			for i := range rounds {
				next := startModelled(t, reg, ap, opts, port)
				if st := next.d.State(); st.Role != registry.RoleStandby || st.RDMA {
					t.Fatalf("round %d: the new listener is %+v, want a standby without rdma_cm", i, st)
				}
				if port.listener() != prev.rdma {
					t.Fatalf("round %d: the designated listener does not listen in rdma_cm", i)
				}
				t0 := time.Now()
				if err := prev.close(); err != nil {
					t.Fatal(err)
				}
				took := time.Since(t0)
				if l := port.listener(); l != next.rdma {
					t.Fatalf("round %d: Close returned (after %v) while the standby did not listen in rdma_cm yet (listener %p, standby %p)", i, took, l, next.rdma)
				}
				worst = max(worst, took)
				select {
				case <-next.d.Designated():
				case <-time.After(5 * time.Second):
					t.Fatalf("round %d: the standby is not designated", i)
				}
				if !next.d.State().RDMA {
					t.Fatalf("round %d: the new designated listener says it does not listen in rdma_cm", i)
				}
				port.mu.Lock()
				tries := next.rdma.tries
				port.mu.Unlock()
				if tries != 1 {
					t.Fatalf("round %d: the successor's Listen tried %d times, want 1 (woken by the lock once the old id was gone)", i, tries)
				}
				prev = next
			}
			if err := prev.close(); err != nil {
				t.Fatal(err)
			}
			port.mu.Lock()
			gaps := port.gaps
			port.mu.Unlock()
			if len(gaps) != rounds {
				t.Fatalf("%d gaps recorded, want %d", len(gaps), rounds)
			}
			t.Logf("%s, %d handovers: Close took at most %v; no rdma_cm listener for %s", mode, rounds, worst, percentiles(gaps))
		})
	}
}

type modelled struct {
	localListener
	rdma *cmModel
}

func startModelled(t testing.TB, reg *registry.Registry, ap netip.AddrPort, opts *steer.Options, port *cmPort) *modelled {
	t.Helper()
	m := &cmModel{p: port}
	return &modelled{localListener: *startLocalWith(t, reg, ap, opts, m), rdma: m}
}

// The rdma_cm lock's three states as a successor and a closing listener
// see them through their own descriptions: free, write (taking over, not
// listening yet), read (listening).
func TestRDMALockStates(t *testing.T) {
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a, err := openLockFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	b, err := openLockFile(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	off := rdmaOffset(netip.MustParseAddrPort("10.0.0.1:7000"))
	check := func(state string, wantHeld, wantRead bool) {
		t.Helper()
		held, err1 := b.held(off)
		read, err2 := b.readHeld(off)
		if err1 != nil || err2 != nil || held != wantHeld || read != wantRead {
			t.Fatalf("%s: held %v (%v), read-held %v (%v); want %v, %v", state, held, err1, read, err2, wantHeld, wantRead)
		}
	}
	check("free", false, false)
	if ok, err := a.try(ofdlock.Write, off); !ok || err != nil {
		t.Fatalf("write lock: %v %v", ok, err)
	}
	check("write", true, false)
	if ok, err := a.try(ofdlock.Read, off); !ok || err != nil {
		t.Fatalf("downgrade: %v %v", ok, err)
	}
	check("read", true, true)
	// A successor waiting for the write lock is granted it at the unlock.
	got := make(chan error, 1)
	go func() { got <- b.wait(context.Background(), off) }()
	select {
	case err := <-got:
		t.Fatalf("the write lock was granted while a read lock was held: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	t0 := time.Now()
	if err := a.unlock(off); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	t.Logf("the waiter had the lock %v after the unlock", time.Since(t0))
	if held, err := a.held(off); !held || err != nil {
		t.Fatalf("after the grant: held %v %v", held, err)
	}
}
