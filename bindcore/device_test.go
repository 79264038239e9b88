//go:build linux

package bindcore

import (
	"bufio"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/rdma"
)

// rdmaAddrs returns the host's addresses that an RDMA device serves (not
// link-local), with what the pure-Go resolution says of each.
func rdmaAddrs(t *testing.T) map[netip.Addr]rdma.Endpoint {
	t.Helper()
	testutil.SkipUnlessRDMA(t)
	addrs, err := rdma.LiveAddrs()
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]rdma.Endpoint{}
	for _, na := range addrs.All() {
		if na.Addr.IsLinkLocalUnicast() || na.Addr.IsLoopback() {
			continue
		}
		if eps, err := rdma.Resolve(na.Addr); err == nil && len(eps) == 1 {
			out[na.Addr] = eps[0]
		}
	}
	if len(out) == 0 {
		if testutil.InGuest() {
			t.Fatal("inside the SoftRoCE guest, but no address resolves to an RDMA device")
		}
		t.Skip("no address of this host is served by an RDMA device")
	}
	return out
}

func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return AFInet
	}
	return AFInet6
}

// For every local address served by RDMA, a Bind puts the rdma_cm id on
// the device and port the pure-Go resolution named, and the GID index names
// the address's own GID (IPv4-mapped for IPv4).
func TestDeviceBindEveryAddress(t *testing.T) {
	eps := rdmaAddrs(t)
	warmUp(t, eps)
	testutil.CheckFDs(t)
	b := openBinder(t)
	for addr, want := range eps {
		s, err := b.Socket(familyOf(addr))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.BindAddrPort(netip.AddrPortFrom(addr, 0)); err != nil {
			t.Fatalf("bind %s: %v", addr, err)
		}
		ep, err := s.Endpoint()
		if err != nil {
			t.Fatal(err)
		}
		gid := netip.AddrFrom16(addr.As16())
		t.Logf("%s -> %s port %d gid %d %s (rdma_cm chose %s port %d)", ep.Local, want.Device, want.Port, ep.GIDIndex, ep.GID, ep.Device, ep.Port)
		switch {
		case ep.Local.Port() == 0 || ep.Local.Addr() != addr:
			t.Errorf("%s: bound to %s", addr, ep.Local)
		case ep.Device != want.Device || ep.Port != want.Port:
			t.Errorf("%s: rdma_cm bound %s port %d, resolution said %s port %d", addr, ep.Device, ep.Port, want.Device, want.Port)
		case ep.GID != gid || ep.GIDIndex < 0:
			t.Errorf("%s: GID index %d holds %s, want %s", addr, ep.GIDIndex, ep.GID, gid)
		}
		wantCode(t, s.BindAddrPort(netip.AddrPortFrom(addr, 0)), wsa.WSAEINVAL)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if testutil.InGuest() {
		if _, ok := eps[netip.MustParseAddr("10.77.0.1")]; !ok {
			t.Errorf("10.77.0.1 (rxe0 on eth0 in the guest) did not resolve: %v", eps)
		}
	}
}

// warmUp binds and closes a socket on every address once. librdmacm opens
// each RDMA device's verbs context on first use and keeps it for the life
// of the process (its own cache, not per bind): fd counts start after that.
func warmUp(t *testing.T, eps map[netip.Addr]rdma.Endpoint) {
	t.Helper()
	b := openBinder(t)
	for addr := range eps {
		s, _ := b.Socket(familyOf(addr))
		if err := s.BindAddrPort(netip.AddrPortFrom(addr, 0)); err != nil {
			t.Fatalf("warm-up bind %s: %v", addr, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// guestAddr is an RDMA address of this host for the tests that need one.
func guestAddr(t *testing.T) netip.Addr {
	eps := rdmaAddrs(t)
	if a := netip.MustParseAddr("10.77.0.1"); eps[a].Device != "" {
		return a
	}
	for a := range eps {
		if a.Is4() {
			return a
		}
	}
	t.Skip("no IPv4 address served by RDMA")
	return netip.Addr{}
}

// A plain TCP program cannot take a bound port; it can once the socket is
// closed. Nothing stays open after Close.
func TestDevicePlainTCPBlocked(t *testing.T) {
	addr := guestAddr(t)
	warmUp(t, rdmaAddrs(t))
	testutil.CheckFDs(t)
	b := openBinder(t)
	s, _ := b.Socket(AFInet)
	if err := s.BindAddrPort(netip.AddrPortFrom(addr, 0)); err != nil {
		t.Fatal(err)
	}
	ep, _ := s.Endpoint()
	if l, err := net.Listen("tcp4", ep.Local.String()); err == nil {
		l.Close()
		t.Fatalf("net.Listen(%s) succeeded while bound", ep.Local)
	}
	s.Close()
	l, err := net.Listen("tcp4", ep.Local.String())
	if err != nil {
		t.Fatalf("net.Listen(%s) after Close: %v", ep.Local, err)
	}
	l.Close()
	b.Close()
}

// A port held by a plain TCP program gives WSAEADDRINUSE, and nothing of
// the failed bind stays held.
func TestDevicePortHeldByTCP(t *testing.T) {
	addr := guestAddr(t)
	l, err := net.Listen("tcp4", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ap := netip.MustParseAddrPort(l.Addr().String())
	b := openBinder(t)
	s, _ := b.Socket(AFInet)
	wantCode(t, s.BindAddrPort(ap), wsa.WSAEADDRINUSE)
	if recs, _ := b.Registry().List(); len(recs) != 0 {
		t.Fatalf("records left by a failed bind: %v", recs)
	}
}

// helper starts a helper process binding ap with the registry in dir.
type helper struct {
	*testutil.Proc
	out *bufio.Reader
}

func startHelper(t *testing.T, mode, dir string, ap netip.AddrPort, uid uint32, netns bool) *helper {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, helperEnv+"="+mode, "RDMABIND_BINDCORE_DIR="+dir, "RDMABIND_BINDCORE_ADDR="+ap.String())
	if netns {
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	p := testutil.StartProc(t, cmd)
	h := &helper{Proc: p, out: bufio.NewReader(p.Stdout)}
	t.Cleanup(h.stop)
	return h
}

// stop ends the helper as a user would: stdin closed, SIGTERM.
func (h *helper) stop() {
	h.Stdin.Close()
	if h.Cmd.ProcessState == nil {
		h.Cmd.Process.Signal(syscall.SIGTERM)
		h.Cmd.Wait()
	}
}

// N processes bind one address and port; each keeps its own binding, on
// the right device; the registry lists one record per process; another uid
// is refused with WSAEADDRINUSE; after they leave the port is free.
func TestDeviceShareAcrossProcesses(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	addr := guestAddr(t)
	dir := testutil.SharedDir(t)
	b, err := Open(Options{RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want, _ := b.cache.resolve(addr, false)
	port := freePort(t, addr)
	ap := netip.AddrPortFrom(addr, port)
	const n = 4
	var hs []*helper
	pids := map[int]bool{}
	for i := 0; i < n; i++ {
		h := startHelper(t, "hold", dir, ap, 0, false)
		rep, err := readReport(h.out)
		if err != nil || rep.Error != "" {
			t.Fatalf("helper %d: %+v %v", i, rep, err)
		}
		if rep.Local != ap.String() || rep.Device != want[0].Device {
			t.Fatalf("helper %d bound %s on %q, want %s on %s", i, rep.Local, rep.Device, ap, want[0].Device)
		}
		pids[rep.PID] = true
		hs = append(hs, h)
	}
	recs, err := b.Registry().List()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.AddrPort() != ap || !pids[int(r.PID)] {
			t.Errorf("unexpected record %v", r)
		}
		delete(pids, int(r.PID))
	}
	if len(recs) != n || len(pids) != 0 {
		t.Fatalf("registry lists %d records (%v); missing pids %v", len(recs), recs, pids)
	}
	// This process shares the port too.
	s, _ := b.Socket(AFInet)
	if err := s.BindAddrPort(ap); err != nil {
		t.Fatalf("a fifth socket, in the test process: %v", err)
	}
	// Another uid (with its own registry file in the same directory: a
	// registry is its owner's alone) is refused by the kernel's reservation.
	h := startHelper(t, "once", dir, ap, 65534, false)
	rep, err := readReport(h.out)
	if err != nil {
		t.Fatal(err)
	}
	if wsa.Code(rep.Code) != wsa.WSAEADDRINUSE {
		t.Fatalf("uid 65534: %+v, want WSAEADDRINUSE", rep)
	}
	s.Close()
	for _, h := range hs {
		h.stop()
	}
	if recs, _ := b.Registry().List(); len(recs) != 0 {
		t.Fatalf("records after every holder left: %v", recs)
	}
	l, err := net.Listen("tcp4", ap.String())
	if err != nil {
		t.Fatalf("port not free after every holder left: %v", err)
	}
	l.Close()
}

// freePort returns a port no one holds on addr now.
func freePort(t *testing.T, addr netip.Addr) uint16 {
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

var crashIters = testutil.EnvInt("RDMABIND_BIND_CRASH_ITERS", 100)

// SIGKILL of a binder at random points of its life (while starting, while
// binding, while holding) leaves no live claim and no port held: the next
// Bind of the same port, in this process, succeeds at once.
func TestDeviceCrashSafety(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	addr := guestAddr(t)
	dir := t.TempDir()
	b, err := Open(Options{RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	port := freePort(t, addr)
	ap := netip.AddrPortFrom(addr, port)
	var bound, early int
	for i := 0; i < crashIters; i++ {
		h := startHelper(t, "hold", dir, ap, 0, false)
		// Kill at a random point: often before the report (mid-start or
		// mid-bind), sometimes after it (holding).
		if rand.IntN(3) == 0 {
			if rep, err := readReport(h.out); err == nil && rep.Error == "" {
				bound++
			}
		} else {
			time.Sleep(time.Duration(rand.IntN(40_000)) * time.Microsecond)
			early++
		}
		h.Kill()
		recs, err := b.Registry().List()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 0 {
			t.Fatalf("iteration %d: live records after SIGKILL: %v", i, recs)
		}
		s, _ := b.Socket(AFInet)
		if err := s.BindAddrPort(ap); err != nil {
			t.Fatalf("iteration %d: port not reusable at once after SIGKILL: %v", i, err)
		}
		s.Close()
	}
	t.Logf("%d iterations: %d killed while holding, %d at a random earlier point", crashIters, bound, early)
}

// A binding in one network namespace is invisible in another: there the
// registry lists nothing of it, and a bind that would conflict here (another
// uid, the wildcard over our address) succeeds.
func TestDeviceNetnsIsolation(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	addr := guestAddr(t)
	dir := testutil.SharedDir(t)
	b, err := Open(Options{RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	port := freePort(t, addr)
	s, _ := b.Socket(AFInet)
	if err := s.BindAddrPort(netip.AddrPortFrom(addr, port)); err != nil {
		t.Fatal(err)
	}
	wild := netip.AddrPortFrom(netip.IPv4Unspecified(), port)
	// Control: in this namespace, uid 65534's wildcard bind conflicts.
	rep, err := readReport(startHelper(t, "once", dir, wild, 65534, false).out)
	if err != nil || wsa.Code(rep.Code) != wsa.WSAEADDRINUSE {
		t.Fatalf("same netns, uid 65534, %s: %+v %v; want WSAEADDRINUSE", wild, rep, err)
	}
	// In a new namespace, with the same registry directory: no conflict,
	// and its registry lists only its own record.
	rep, err = readReport(startHelper(t, "once", dir, wild, 65534, true).out)
	if err != nil || rep.Error != "" {
		t.Fatalf("new netns, uid 65534, %s: %+v %v; want bound", wild, rep, err)
	}
	if rep.Records != 1 {
		t.Fatalf("new netns registry lists %d records, want 1 (its own)", rep.Records)
	}
	if recs, _ := b.Registry().List(); len(recs) != 1 {
		t.Fatalf("this netns lists %v, want our one record", recs)
	}
}
