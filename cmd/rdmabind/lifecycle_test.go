package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/qp"
)

// waitFor returns the first line that is the event want (and, if match is
// not nil, that match accepts) within d, skipping others.
func (c *cli) waitFor(want string, d time.Duration, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	end := time.After(d)
	for {
		select {
		case m, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("%v exited, waiting for %q", c.cmd.Args, want)
			}
			if m["event"] == want && (match == nil || match(m)) {
				return m
			}
		case <-end:
			c.t.Fatalf("%v: no %q within %v", c.cmd.Args[len(c.cmd.Args)-1], want, d)
		}
	}
}

// rdmaCmd runs rdma(8) and returns how long it took.
func rdmaCmd(t *testing.T, args ...string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "rdma", args...).CombinedOutput()
	d := time.Since(start)
	if err != nil {
		t.Fatalf("rdma %s: %v after %v: %s", strings.Join(args, " "), err, d, out)
	}
	return d
}

// waitServed waits until dev's port 1 is ACTIVE with the GID of addr (an
// IPv4 address).
func waitServed(t *testing.T, dev string, addr netip.Addr) {
	t.Helper()
	a4 := addr.As4()
	gid := fmt.Sprintf("0000:0000:0000:0000:0000:ffff:%02x%02x:%02x%02x", a4[0], a4[1], a4[2], a4[3])
	p := "/sys/class/infiniband/" + dev + "/ports/1"
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		st, _ := os.ReadFile(p + "/state")
		if !strings.Contains(string(st), "ACTIVE") {
			continue
		}
		for i := range 16 {
			if g, _ := os.ReadFile(p + "/gids/" + strconv.Itoa(i)); strings.TrimSpace(string(g)) == gid {
				return
			}
		}
	}
	t.Fatalf("%s: port 1 not ACTIVE with the GID of %v after 20 s", dev, addr)
}

// The device goes under a designated listener (an echo server), its
// standby, a bound holder (three CLI processes) and live connections of
// this process: `rdma link delete rxe0` completes at once (median of the
// runs at most 1 s), the connections fail with ENETDOWN or ECONNRESET
// within 1 s, the listener and the holder report "down"; after `rdma link
// add` the same listener process reports "up" and accepts a new connection
// within 2 s. Only in the SoftRoCE guest (it deletes rxe0).
func TestDeviceRemovalCLI(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("deletes and re-adds rxe0: only in the SoftRoCE guest (RDMABIND_SOFTROCE=1)")
	}
	addr := netip.MustParseAddr("10.77.0.1")
	free := func() netip.AddrPort {
		l, err := net.Listen("tcp4", addr.String()+":0")
		if err != nil {
			t.Skipf("no %v here: %v", addr, err)
		}
		defer l.Close()
		return netip.MustParseAddrPort(l.Addr().String())
	}
	ap, hp := free(), free()
	dir := t.TempDir()
	t.Cleanup(func() {
		// Leave rxe0 as the guest had it, whatever happened.
		if _, err := os.Stat("/sys/class/infiniband/rxe0"); err != nil {
			exec.Command("rdma", "link", "add", "rxe0", "type", "rxe", "netdev", "eth0").Run()
		}
	})
	srv := startCLI(t, "bind", ap.String(), "--listen", "--echo", "--registry", dir)
	srv.next("bound")
	if m := srv.next("listening"); m["role"] != "designated" {
		t.Fatalf("listener: %v", m)
	}
	sb := startCLI(t, "bind", ap.String(), "--listen", "--registry", dir)
	sb.next("bound")
	if m := sb.next("listening"); m["role"] != "standby" {
		t.Fatalf("standby: %v", m)
	}
	hold := startCLI(t, "bind", hp.String(), "--registry", dir)
	hold.next("bound")

	b, err := bindcore.Open(bindcore.Options{RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dial := func(mode qp.Mode) (*bindcore.Socket, *qp.Conn) {
		t.Helper()
		s, err := b.Socket(bindcore.AFInet)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.BindAddrPort(netip.AddrPortFrom(addr, 0)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := qp.Dial(ctx, s, ap, &qp.Options{Mode: mode})
		if err != nil {
			t.Fatalf("%v: Dial: %v", mode, err)
		}
		srv.waitFor("accept", 10*time.Second, nil)
		if err := c.Send([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		if n, err := c.Recv(buf); err != nil || !bytes.Equal(buf[:n], []byte("ping")) {
			t.Fatalf("%v: echo: %q, %v", mode, buf[:n], err)
		}
		return s, c
	}
	runs := testutil.EnvInt("RDMABIND_REMOVAL_RUNS", 5)
	var took []time.Duration
	for run := range runs {
		type conn struct {
			s *bindcore.Socket
			c *qp.Conn
		}
		var conns []conn
		modes := []qp.Mode{qp.ModeCM, qp.ModeTCP}
		if os.Getenv("RDMABIND_REMOVAL_CONNS") == "0" {
			modes = nil // the processes' bindings alone
		}
		for _, mode := range modes {
			s, c := dial(mode)
			conns = append(conns, conn{s, c})
		}
		// Each connection waits in Recv when the device goes.
		type result struct {
			err error
			at  time.Time
		}
		res := make(chan result, len(conns))
		for _, c := range conns {
			go func() {
				_, err := c.c.Recv(make([]byte, 16))
				res <- result{err, time.Now()}
			}()
		}
		start := time.Now()
		d := rdmaCmd(t, "link", "delete", "rxe0")
		took = append(took, d)
		t.Logf("run %d: rdma link delete rxe0 took %v", run+1, d)
		for range conns {
			select {
			case r := <-res:
				if !errors.Is(r.err, unix.ENETDOWN) && !errors.Is(r.err, unix.ECONNRESET) {
					t.Errorf("run %d: Recv after the removal: %v, want ENETDOWN or ECONNRESET", run+1, r.err)
				}
				if l := r.at.Sub(start); l > time.Second {
					t.Errorf("run %d: Recv failed %v after the removal began, want <= 1 s", run+1, l)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("run %d: a Recv still waits 5 s after the removal", run+1)
			}
		}
		for _, c := range conns {
			if err := c.c.Close(); err != nil {
				t.Errorf("run %d: Close of a broken connection: %v", run+1, err)
			}
			c.s.Close()
		}
		isRxe0 := func(m map[string]any) bool { return m["device"] == "rxe0" }
		srv.waitFor("down", 5*time.Second, isRxe0)
		m := hold.waitFor("down", 5*time.Second, isRxe0)
		if m["error"] != "WSAENETDOWN" {
			t.Errorf("holder's down event: %v", m)
		}

		rdmaCmd(t, "link", "add", "rxe0", "type", "rxe", "netdev", "eth0")
		waitServed(t, "rxe0", addr)
		back := time.Now()
		srv.waitFor("up", 2*time.Second, isRxe0)
		hold.waitFor("up", 2*time.Second, isRxe0)
		if modes != nil {
			s, c := dial(qp.ModeCM)
			c.Close()
			s.Close()
		}
		t.Logf("run %d: served again %v after rxe0 was back", run+1, time.Since(back).Round(time.Millisecond))
	}
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	med := sorted[len(sorted)/2]
	t.Logf("rdma link delete rxe0: %v (median %v)", took, med)
	if med > time.Second {
		t.Errorf("median removal %v, want <= 1 s", med)
	}
	for _, c := range []*cli{srv, sb, hold} {
		c.cmd.Process.Signal(syscall.SIGTERM)
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("%v after SIGTERM: %v", c.cmd.Args, err)
		}
	}
}

// ipCmd runs ip(8).
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// The netdev under a device is unregistered (a veth deleted) under a
// designated listener and a bound holder: the deletion completes at once
// (the kernel unregisters the rxe device on the netdev's unregister, and
// waits for it), both processes report "down". Only in the SoftRoCE guest.
func TestDeviceNetdevUnregisterCLI(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("creates and deletes a veth with an rxe device: only in the SoftRoCE guest (RDMABIND_SOFTROCE=1)")
	}
	addr := netip.MustParseAddr("10.99.0.1")
	ipCmd(t, "link", "add", "rbveth0", "type", "veth", "peer", "name", "rbveth1")
	t.Cleanup(func() { exec.Command("ip", "link", "del", "rbveth0").Run() })
	ipCmd(t, "addr", "add", addr.String()+"/24", "dev", "rbveth0")
	ipCmd(t, "link", "set", "rbveth0", "up")
	ipCmd(t, "link", "set", "rbveth1", "up")
	rdmaCmd(t, "link", "add", "rxe9", "type", "rxe", "netdev", "rbveth0")
	waitServed(t, "rxe9", addr)
	dir := t.TempDir()
	srv := startCLI(t, "bind", netip.AddrPortFrom(addr, 7400).String(), "--listen", "--registry", dir)
	srv.next("bound")
	if m := srv.next("listening"); m["role"] != "designated" {
		t.Fatalf("listener: %v", m)
	}
	hold := startCLI(t, "bind", netip.AddrPortFrom(addr, 7401).String(), "--registry", dir)
	hold.next("bound")
	start := time.Now()
	ipCmd(t, "link", "del", "rbveth0")
	t.Logf("ip link del rbveth0 (under rxe9) returned after %v", time.Since(start))
	// The kernel unregisters rxe9 from a work queue: wait for it to be gone.
	for time.Since(start) < 10*time.Second {
		if _, err := os.Stat("/sys/class/infiniband/rxe9"); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	d := time.Since(start)
	t.Logf("rxe9 unregistered %v after its netdev's deletion began", d)
	if d > time.Second {
		t.Errorf("rxe9's unregister took %v, want <= 1 s", d)
	}
	isRxe9 := func(m map[string]any) bool { return m["device"] == "rxe9" }
	srv.waitFor("down", 5*time.Second, isRxe9)
	hold.waitFor("down", 5*time.Second, isRxe9)
	for _, c := range []*cli{srv, hold} {
		c.cmd.Process.Signal(syscall.SIGTERM)
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("%v after SIGTERM: %v", c.cmd.Args, err)
		}
	}
}

// The port of rxe1 goes down and up (ip link set eth1 down/up) under a
// bound socket: the socket stays bound, and not lost (the device is
// there). A Binder that resolved the address before binds it again while
// the port is down (as a kernel socket binds an address of a down
// interface: rdma_cm accepts it); a Binder resolving it afresh answers
// WSAENETDOWN (rdma.ErrPortDown: the port is not ACTIVE). Both bind once
// the port is up. Only in the SoftRoCE guest with two NICs.
func TestDevicePortDownUp(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("sets eth1 down: only in the SoftRoCE guest (RDMABIND_SOFTROCE=1)")
	}
	if _, err := os.Stat("/sys/class/infiniband/rxe1"); err != nil {
		t.Skip("no rxe1 (run the guest with --nics 2)")
	}
	addr := netip.MustParseAddr("10.78.0.1")
	dir := t.TempDir()
	open := func() *bindcore.Binder {
		b, err := bindcore.Open(bindcore.Options{RegistryDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	bind := func(b *bindcore.Binder) (*bindcore.Socket, error) {
		s, err := b.Socket(bindcore.AFInet)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.BindAddrPort(netip.AddrPortFrom(addr, 0)); err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	warm := open()
	held, err := bind(warm)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	t.Cleanup(func() { exec.Command("ip", "link", "set", "eth1", "up").Run() })
	ipCmd(t, "link", "set", "eth1", "down")
	down := false
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !down; time.Sleep(20 * time.Millisecond) {
		st, _ := os.ReadFile("/sys/class/infiniband/rxe1/ports/1/state")
		down = strings.Contains(string(st), "DOWN")
	}
	if !down {
		t.Fatal("rxe1's port not DOWN 5 s after eth1 went down")
	}
	if s, err := bind(warm); err != nil {
		t.Errorf("Bind through a Binder that resolved %v before, port down: %v, want success", addr, err)
	} else {
		s.Close()
	}
	if s, err := bind(open()); err == nil {
		s.Close()
		t.Errorf("Bind through a new Binder, port down: success, want WSAENETDOWN")
	} else if !errors.Is(err, unix.ENETDOWN) {
		t.Errorf("Bind through a new Binder, port down: %v, want WSAENETDOWN", err)
	} else {
		t.Logf("port down, fresh resolution: %v", err)
	}
	if ep, err := held.Endpoint(); err != nil || ep.Lost != "" {
		t.Errorf("the bound socket while the port is down: %+v, %v (want bound, not lost)", ep, err)
	}
	ipCmd(t, "link", "set", "eth1", "up")
	waitServed(t, "rxe1", addr)
	for _, b := range []*bindcore.Binder{warm, open()} {
		s, err := bind(b)
		if err != nil {
			t.Fatalf("Bind once the port is up again: %v", err)
		}
		s.Close()
	}
}
