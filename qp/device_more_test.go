package qp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// TestDeviceSharedPort: eight sockets bound to one address and port (and a
// ninth listening there, so that the eight are parked in rdma_cm) each dial
// the peer and exchange data at the same time, each on its own connection.
func TestDeviceSharedPort(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	testutil.SkipUnlessPeer(t)
	const n = 8
	count := testutil.EnvInt("RDMABIND_QP_SHARED_MSGS", 100)
	_, srv := peerEcho(t, 7471, "shared")
	b := openBinder(t)
	const local = "10.77.0.1:7490"
	lis := bindSocket(t, b, local)
	if err := lis.Listen(16); err != nil {
		t.Fatal(err)
	}
	conns := make([]*Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		s := bindSocket(t, b, local)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			conns[i], errs[i] = Dial(ctx, s, srv, testOptions(ModeCM))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("socket %d: %v", i, err)
		}
		defer conns[i].Close()
		if got := conns[i].LocalAddr().String(); got != local {
			t.Errorf("socket %d: local %s, want %s", i, got, local)
		}
	}
	// All eight are connected now; they exchange at once.
	start := time.Now()
	var moved [n]int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			moved[i], errs[i] = echoRun(conns[i], count, 256<<10, uint64(100+i))
		}()
	}
	wg.Wait()
	el := time.Since(start)
	var total int64
	for i, err := range errs {
		if err != nil {
			t.Errorf("socket %d: %v", i, err)
		}
		total += moved[i]
	}
	t.Logf("%d sockets on %s, each its own connection to %v: %d messages each (1 B-256 KiB), checked, in %v (%.1f MB/s together)",
		n, local, srv, count, el.Round(time.Millisecond), float64(total)/el.Seconds()/1e6)
}

// resources is what the process holds: its fd count and `rdma res show`.
func resourceSnapshot(t *testing.T) (int, string) {
	out, err := exec.Command("rdma", "res", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("rdma res show: %v: %s", err, out)
	}
	return testutil.FDCount(t), strings.TrimSpace(string(out))
}

// TestDevicePeerDeath: the peer process dies (SIGKILL) in the middle of a
// stream of messages; the other side's Send or Recv fails within a bounded
// time with ECONNRESET, nothing hangs, and Close frees everything: the fd
// count and `rdma res show` are as before the connection.
func TestDevicePeerDeath(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	testutil.SkipUnlessPeer(t)
	b := openBinder(t)
	for i, mode := range []Mode{ModeCM, ModeTCP} {
		t.Run(mode.String(), func(t *testing.T) {
			_, srv := peerEcho(t, 7474+i, "victim-"+mode.String())
			s := bindSocket(t, b, fmt.Sprintf("10.77.0.1:%d", 7494+i))
			fds0, res0 := resourceSnapshot(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := Dial(ctx, s, srv, testOptions(mode))
			if err != nil {
				t.Fatal(err)
			}
			echoCheck(t, c, 20, 64<<10, 5)
			// A stream of 256 KiB messages, and the peer dies inside it.
			sendErr := make(chan error, 1)
			go func() {
				msg := make([]byte, 256<<10)
				for k := 0; ; k++ {
					if k == 3 {
						if err := c.Send(msgDie); err != nil {
							sendErr <- err
							return
						}
					}
					if err := c.Send(msg); err != nil {
						sendErr <- err
						return
					}
				}
			}()
			died := time.Now()
			buf := make([]byte, 1<<20)
			var rerr error
			for rerr == nil {
				_, rerr = c.Recv(buf)
			}
			recvAfter := time.Since(died)
			var serr error
			select {
			case serr = <-sendErr:
			case <-time.After(20 * time.Second):
				t.Fatal("Send still running 20 s after the peer died")
			}
			sendAfter := time.Since(died)
			for _, err := range []error{rerr, serr} {
				if !errors.Is(err, unix.ECONNRESET) || errors.Is(err, io.EOF) {
					t.Errorf("error %v: want one matching ECONNRESET", err)
				}
			}
			if recvAfter > 15*time.Second {
				t.Errorf("Recv failed %v after the die message", recvAfter)
			}
			t0 := time.Now()
			if err := c.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			t.Logf("%s: Close of the broken connection took %v", mode, time.Since(t0).Round(time.Millisecond))
			c.Close()
			var fds1 int
			var res1 string
			for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if fds1, res1 = resourceSnapshot(t); (fds1 == fds0 && res1 == res0) || time.Now().After(end) {
					break
				}
			}
			if fds1 != fds0 || res1 != res0 {
				t.Errorf("resources after Close differ: fds %d -> %d, rdma res:\n%s\n->\n%s", fds0, fds1, res0, res1)
			}
			t.Logf("%s: peer killed mid-stream; Recv failed after %v, Send after %v: %v; fds %d -> %d, rdma res %q both before and after",
				mode, recvAfter.Round(time.Millisecond), sendAfter.Round(time.Millisecond), rerr, fds0, fds1, res1)
		})
	}
}

// TestDeviceTakeover: in guest 2, A listens (designated) and B (standby)
// on one port, and C, bound to that port too, has dialled out to a listener
// here. A dies with connections over both transports; they fail, new ones
// reach B, and C's connection goes on.
func TestDeviceTakeover(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	testutil.SkipUnlessPeer(t)
	_, srv := peerEcho(t, 7472, "A", "RDMABIND_QP_WANT=designated")
	_, _ = peerEcho(t, 7472, "B")

	b := openBinder(t)
	ls := bindSocket(t, b, "10.77.0.1:7473")
	if err := ls.Listen(16); err != nil {
		t.Fatal(err)
	}
	l, err := NewListener(ls, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ready := filepath.Join(testutil.PeerShared(t), fmt.Sprintf("qp-C-%d.ready", time.Now().UnixNano()))
	testutil.StartPeer(t, helperEnv+"=dialer", "RDMABIND_QP_ADDR="+srv.String(), "RDMABIND_QP_NAME=C",
		"RDMABIND_QP_DIAL=10.77.0.1:7473", "RDMABIND_QP_READY="+ready)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cC, err := l.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cC.Close()
	if cC.RemoteAddr() != srv {
		t.Errorf("C's connection comes from %v, want the shared port %v", cC.RemoteAddr(), srv)
	}
	echoCheck(t, cC, 20, 64<<10, 11)

	s := bindSocket(t, b, "10.77.0.1:7475")
	dial := func(mode Mode) *Conn {
		t.Helper()
		c, err := Dial(ctx, s, srv, testOptions(mode))
		if err != nil {
			t.Fatalf("dial %s: %v", mode, err)
		}
		return c
	}
	c1, c2 := dial(ModeCM), dial(ModeTCP)
	defer c1.Close()
	defer c2.Close()
	for _, c := range []*Conn{c1, c2} {
		if got := who(t, c); got != "A" {
			t.Fatalf("%s connection reached %q, want A", c.Mode(), got)
		}
	}
	if err := c1.Send(msgDie); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	buf := make([]byte, 64)
	for _, c := range []*Conn{c1, c2} {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Recv(buf); !errors.Is(err, unix.ECONNRESET) {
			t.Errorf("%s connection to A after its death: %v, want ECONNRESET", c.Mode(), err)
		}
	}
	t.Logf("A's connections failed %v after its death", time.Since(killed).Round(time.Millisecond))
	// Close them: the TCP one holds the 4-tuple (this socket's port to the
	// listener's) that the new rendezvous needs; its Close resets it on
	// both ends.
	c1.Close()
	c2.Close()
	for _, mode := range []Mode{ModeCM, ModeTCP} {
		var c *Conn
		for try := 1; ; try++ {
			dctx, dcancel := context.WithTimeout(ctx, time.Second)
			t0 := time.Now()
			c, err = Dial(dctx, s, srv, testOptions(mode))
			dcancel()
			if err == nil {
				break
			}
			t.Logf("%s: dial %d after A's death failed after %v: %v", mode, try, time.Since(t0).Round(time.Millisecond), err)
			if ctx.Err() != nil {
				t.Fatalf("dial %s after A's death: %v", mode, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := who(t, c); got != "B" {
			t.Errorf("%s connection after the takeover reached %q, want B", mode, got)
		}
		echoCheck(t, c, 20, 64<<10, 13)
		t.Logf("%s: new connection accepted by B %v after A's death", mode, time.Since(killed).Round(time.Millisecond))
		c.Close()
	}
	echoCheck(t, cC, 20, 64<<10, 17)
}
