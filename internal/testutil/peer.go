package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Peer is the test binary running again in guest 2 of a two-guest
// SoftRoCE run (ci/softroce/run --hosts 2), started through
// $RDMABIND_SOFTROCE_PEER_EXEC: the peer variant of HelperCommand.
type Peer struct {
	exec  string
	id    string
	ended bool
}

// SkipUnlessPeer skips the test unless it runs in guest 1 of a two-guest
// run. Inside the guest it skips too (a one-guest run of the package is
// legitimate), naming the option to use.
func SkipUnlessPeer(t testing.TB) {
	t.Helper()
	if os.Getenv("RDMABIND_SOFTROCE_PEER_EXEC") == "" {
		t.Skip("needs a second host: run in a two-guest SoftRoCE run (ci/softroce/run --hosts 2)")
	}
}

// PeerAddr is guest 2's address on the first link (10.77.0.2).
func PeerAddr() string { return os.Getenv("RDMABIND_SOFTROCE_PEER") }

// PeerShared returns the directory both guests see, uncached.
func PeerShared(t testing.TB) string {
	t.Helper()
	d := os.Getenv("RDMABIND_SOFTROCE_SHARED")
	if d == "" {
		t.Fatal("RDMABIND_SOFTROCE_SHARED is not set")
	}
	return d
}

// StartPeer starts the test binary in guest 2 with env (NAME=VALUE, the
// helper's role among them) and no tests, detached (LaunchPeer). The test's
// cleanup stops it (SIGKILL) if it still runs.
func StartPeer(t testing.TB, env ...string) *Peer {
	t.Helper()
	p, err := LaunchPeer(env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !p.ended {
			p.Signal("KILL")
			p.Wait()
		}
	})
	return p
}

// LaunchPeer is StartPeer for a peer that outlives one test (one helper
// for all benchmarks): the caller stops it, with Signal and Wait.
func LaunchPeer(env ...string) (*Peer, error) {
	ex := os.Getenv("RDMABIND_SOFTROCE_PEER_EXEC")
	if ex == "" {
		return nil, fmt.Errorf("peer start: RDMABIND_SOFTROCE_PEER_EXEC is not set (not a two-guest run)")
	}
	bin, err := filepath.Abs(os.Args[0])
	if err != nil {
		return nil, err
	}
	args := append([]string{"--detach", "env"}, env...)
	args = append(args, bin, "-test.run=^$")
	out, err := exec.Command(ex, args...).Output()
	if err != nil {
		return nil, fmt.Errorf("peer start: %w", err)
	}
	return &Peer{exec: ex, id: strings.TrimSpace(string(out))}, nil
}

// StartPeerCommand starts argv (a program both guests see, with its
// arguments) in guest 2, detached; the test's cleanup stops it (SIGKILL)
// if it still runs.
func StartPeerCommand(t testing.TB, argv ...string) *Peer {
	t.Helper()
	ex := os.Getenv("RDMABIND_SOFTROCE_PEER_EXEC")
	if ex == "" {
		t.Fatal("peer start: RDMABIND_SOFTROCE_PEER_EXEC is not set (not a two-guest run)")
	}
	out, err := exec.Command(ex, append([]string{"--detach"}, argv...)...).Output()
	if err != nil {
		t.Fatalf("peer start %v: %v", argv, err)
	}
	p := &Peer{exec: ex, id: strings.TrimSpace(string(out))}
	t.Cleanup(func() {
		if !p.ended {
			p.Signal("KILL")
			p.Wait()
		}
	})
	return p
}

// Signal sends sig (a name: TERM, KILL) to the peer's process group.
func (p *Peer) Signal(sig string) {
	exec.Command(p.exec, "--signal", p.id, sig).Run()
}

// Wait waits for the peer to end and returns its output and exit error.
func (p *Peer) Wait() (string, error) {
	p.ended = true
	out, err := exec.Command(p.exec, "--wait", p.id).CombinedOutput()
	return string(out), err
}

// WaitFile waits until path exists, failing the test after timeout.
func WaitFile(t testing.TB, path string, timeout time.Duration) {
	t.Helper()
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s did not appear within %v", path, timeout)
		}
	}
}

// LocalAddr is an address of this host that an RDMA device serves: the
// first of the SoftRoCE guest's (RDMABIND_SOFTROCE_ADDRS, 10.77.0.x), or
// RDMABIND_TEST_ADDR on a real host; the test skips without one.
func LocalAddr(t testing.TB) string {
	t.Helper()
	if f := strings.Fields(os.Getenv("RDMABIND_SOFTROCE_ADDRS")); len(f) > 0 {
		return f[0]
	}
	if a := os.Getenv("RDMABIND_TEST_ADDR"); a != "" {
		return a
	}
	t.Skip("no RDMA-served address known: set RDMABIND_TEST_ADDR (the SoftRoCE guest sets RDMABIND_SOFTROCE_ADDRS)")
	return ""
}
