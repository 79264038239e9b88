//go:build linux

package qp

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// TestDeviceRemovalReleasesConnections deletes guest 1's rxe0 (rdma link
// delete) under two connections to the echo helper in guest 2, one per
// transport, and restores it afterwards (rdma link add rxe0 type rxe
// netdev eth0). It destroys the device the other tests use, so it runs
// only when named: go test -p 1 -run TestDeviceRemovalReleasesConnections
// -exec "$PWD/ci/softroce/run --hosts 2 --nics 1 --peer-ready none --timeout 600 --" ./qp/
//
// Both connections fail within a second with ENETDOWN naming rxe0 and
// free themselves without Close (the Binder and its sockets are closed
// before the delete, so that only the connections hold the device), the
// delete completes, Close returns nil; the helper's ends fail with
// ECONNRESET (asked over a new connection once rxe0 is back).
func TestDeviceRemovalReleasesConnections(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	testutil.SkipUnlessPeer(t)
	if !testutil.InGuest() || !strings.Contains(flag.Lookup("test.run").Value.String(), t.Name()) {
		t.Skip("deletes rxe0: runs only in the SoftRoCE guests (RDMABIND_SOFTROCE=1) and when -run names it")
	}
	_, srv := peerEcho(t, 7476, "removal")
	b := openBinder(t)
	var conns []*Conn
	for i, mode := range []Mode{ModeCM, ModeTCP} {
		s := bindSocket(t, b, fmt.Sprintf("10.77.0.1:%d", 7496+i))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c, err := Dial(ctx, s, srv, testOptions(mode))
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		defer c.Close()
		echoCheck(t, c, 5, 64<<10, uint64(i))
		conns = append(conns, c)
		s.Close() // the connection goes on without its socket
	}
	b.Close()
	// One more echo each, so that the helper's last message on each is
	// just before the delete.
	for i, c := range conns {
		echoCheck(t, c, 1, 64, uint64(10+i))
	}

	type result struct {
		mode Mode
		err  error
		at   time.Duration
	}
	recvs := make(chan result, len(conns))
	for _, c := range conns {
		go func() {
			_, err := c.Recv(make([]byte, 64))
			recvs <- result{c.Mode(), err, 0}
		}()
	}
	logDeviceFDs(t, "before the delete")
	start := time.Now()
	del := exec.Command("rdma", "link", "delete", "rxe0")
	delDone := make(chan error, 1)
	var delOut strings.Builder
	del.Stdout, del.Stderr = &delOut, &delOut
	if err := del.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { delDone <- del.Wait() }()
	restore := func() {
		out, err := exec.Command("rdma", "link", "add", "rxe0", "type", "rxe", "netdev", "eth0").CombinedOutput()
		if err != nil {
			t.Errorf("rdma link add rxe0: %v: %s", err, out)
		}
	}
	for range conns {
		select {
		case r := <-recvs:
			at := time.Since(start)
			if !errors.Is(r.err, unix.ENETDOWN) || !strings.Contains(r.err.Error(), "device rxe0 removed") {
				t.Errorf("%v: Recv after rdma link delete: %v, want ENETDOWN naming rxe0", r.mode, r.err)
			}
			if at > time.Second {
				t.Errorf("%v: Recv failed %v after rdma link delete, want < 1 s", r.mode, at)
			}
			t.Logf("%v: Recv failed %v after rdma link delete started: %v", r.mode, at.Round(time.Millisecond), r.err)
		case <-time.After(10 * time.Second):
			t.Fatalf("Recv still blocked 10 s after rdma link delete")
		}
	}
	for _, c := range conns {
		if err := c.Send([]byte("x")); !errors.Is(err, unix.ENETDOWN) {
			t.Errorf("%v: Send after the loss: %v, want ENETDOWN", c.Mode(), err)
		}
	}
	select {
	case err := <-delDone:
		if err != nil {
			t.Fatalf("rdma link delete rxe0: %v: %s", err, delOut.String())
		}
		t.Logf("rdma link delete rxe0 completed after %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(30 * time.Second):
		removalDiagnostics(t, del.Process.Pid, conns)
		t.Fatalf("rdma link delete rxe0 still blocked 30 s after the loss")
	}
	for _, c := range conns {
		t0 := time.Now()
		if err := c.Close(); err != nil {
			t.Errorf("%v: Close after the loss: %v", c.Mode(), err)
		}
		if d := time.Since(t0); d > 100*time.Millisecond {
			t.Errorf("%v: Close after the loss took %v", c.Mode(), d)
		}
	}
	restore()

	// rxe0 is back: ask the helper how its ends of the two connections ended.
	var c *Conn
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		b2 := openBinder(t)
		s := bindSocket(t, b2, "10.77.0.1:7498")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var err error
		c, err = Dial(ctx, s, srv, testOptions(ModeCM))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("Dial once rxe0 is back: %v", err)
		}
	}
	defer c.Close()
	if err := c.Send(msgEnds); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Recv(buf)
	if err != nil {
		t.Fatal(err)
	}
	ends := strings.Split(string(buf[:n]), "\n")
	t.Logf("the helper's ends: %q", ends)
	if len(ends) != 2 {
		t.Fatalf("the helper saw %d connections end, want 2: %q", len(ends), ends)
	}
	for _, e := range ends {
		var ms int
		fmt.Sscanf(e, "%d ms", &ms)
		if !strings.Contains(e, unix.ECONNRESET.Error()) || ms > 2000 {
			t.Errorf("helper's end %q: want ECONNRESET within 2 s of its last message", e)
		}
	}
}

// logDeviceFDs logs the process's descriptors of RDMA files.
func logDeviceFDs(t *testing.T, when string) {
	ents, _ := os.ReadDir("/proc/self/fd")
	var l []string
	for _, e := range ents {
		if p, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (strings.Contains(p, "infiniband") || strings.Contains(p, "rdma")) {
			l = append(l, e.Name()+" -> "+p)
		}
	}
	t.Logf("RDMA descriptors %s: %q", when, l)
}

// removalDiagnostics logs what the process still holds of the uverbs
// nodes (descriptors, mappings), its goroutines, the kernel stack of the
// blocked delete, and the connections' teardown errors.
func removalDiagnostics(t *testing.T, delPid int, conns []*Conn) {
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (strings.Contains(l, "infiniband") || strings.Contains(l, "anon_inode")) {
			t.Logf("fd %s -> %s", e.Name(), l)
		}
	}
	if maps, err := os.ReadFile("/proc/self/maps"); err == nil {
		for _, l := range strings.Split(string(maps), "\n") {
			if strings.Contains(l, "uverbs") {
				t.Logf("map %s", l)
			}
		}
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stack", delPid)); err == nil {
		t.Logf("rdma link delete's kernel stack:\n%s", st)
	}
	for _, c := range conns {
		done := make(chan error, 1)
		go func() { done <- c.Close() }()
		select {
		case <-done:
			t.Logf("%v: teardown error: %v", c.Mode(), c.closeErr)
		case <-time.After(time.Second):
			t.Logf("%v: Close blocked: the teardown is stuck", c.Mode())
		}
	}
	var buf strings.Builder
	pprof.Lookup("goroutine").WriteTo(&buf, 2)
	t.Logf("goroutines:\n%s", buf.String())
}
