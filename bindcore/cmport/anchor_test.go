//go:build linux

package cmport

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/election"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The rdma_cm anchor across processes: a process with parkable ids (fake
// ones: no RDMA here) on 127.0.0.1:P, 0.0.0.0:P, 127.0.0.2:P and
// 127.0.0.1:Q parks the first two, and only those, when a listener of
// 127.0.0.1:P is designated in this process, through the doorbell (inotify)
// or by polling; an id added afterwards is parked at once (the flag).
func TestAnchorParking(t *testing.T) {
	if !testutil.RunInPrivateNS(t) {
		return
	}
	for _, mode := range []string{"inotify", "poll"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			ap := testutil.FreeLoopPort(t)
			q := testutil.FreeLoopPort(t)
			wild := netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
			other := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), ap.Port())
			env := []string{listenHelperEnv + "=parker", "LISTEN_DIR=" + dir,
				"LISTEN_PARK=" + strings.Join([]string{ap.String(), wild.String(), other.String(), q.String()}, ",")}
			if mode == "poll" {
				env = append(env, "LISTEN_POLL=1")
			}
			p := testutil.StartListenProc(t, "parker", 0, env...)
			p.Reply("ready")
			reg, err := registry.Open(registry.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Close()
			t0 := testutil.Mono()
			l := startLocal(t, reg, ap)
			defer l.close()
			var lat []string
			for _, want := range []netip.AddrPort{ap, wild} {
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
					p.Mu.Lock()
					ts, ok := p.Parked[want.String()]
					p.Mu.Unlock()
					if ok {
						lat = append(lat, fmt.Sprintf("%s %v", want, time.Duration(ts-t0)))
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s not parked", want)
					}
				}
			}
			time.Sleep(3 * anchorPoll)
			p.Mu.Lock()
			for _, no := range []netip.AddrPort{other, q} {
				if _, ok := p.Parked[no.String()]; ok {
					t.Errorf("%s parked by a listener of %s", no, ap)
				}
			}
			p.Mu.Unlock()
			p.Do("add "+ap.String(), "added")
			p.Mu.Lock()
			_, again := p.Parked[ap.String()]
			p.Mu.Unlock()
			if !again {
				t.Error("an id bound after the listener appeared was not parked at once")
			}
			t.Logf("%s: listen start -> parked: %s", mode, strings.Join(lat, ", "))
		})
	}
}

// In this process the anchor parks at once, and never the listener's own
// port's ids of another port or address.
func TestAnchorParkLocal(t *testing.T) {
	reg, err := registry.Open(registry.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	a := NewAnchor(reg, nil)
	defer a.Close()
	var mu sync.Mutex
	parked := map[string]bool{}
	for _, s := range []string{"10.0.0.1:5000", "0.0.0.0:5000", "10.0.0.2:5000", "10.0.0.1:5001", "[::]:5000"} {
		a.add(netip.MustParseAddrPort(s), func() { mu.Lock(); parked[s] = true; mu.Unlock() }, true)
	}
	a.ParkLocal(netip.MustParseAddrPort("10.0.0.1:5000"))
	mu.Lock()
	defer mu.Unlock()
	want := map[string]bool{"10.0.0.1:5000": true, "0.0.0.0:5000": true}
	if len(parked) != len(want) || !parked["10.0.0.1:5000"] || !parked["0.0.0.0:5000"] {
		t.Fatalf("parked %v, want %v", parked, want)
	}
	if a.pending() != 3 {
		t.Fatalf("%d entries left, want 3", a.pending())
	}
}

// localListener is a designated listener of the election in this process,
// with its own claim and shadow (no rdma_cm).
type localListener struct {
	m     *election.Member
	claim *registry.Claim
}

func startLocal(t testing.TB, reg *registry.Registry, ap netip.AddrPort) *localListener {
	t.Helper()
	claim, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: ap.Port()})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := shadow.Bind(ap)
	if err != nil {
		t.Fatal(err)
	}
	m, err := election.Join(context.Background(), election.Config{Registry: reg, Claim: claim, Shadow: sh})
	if err != nil {
		t.Fatal(err)
	}
	return &localListener{m: m, claim: claim}
}

func (l *localListener) close() error {
	err := l.m.Close()
	l.claim.Release()
	return err
}
