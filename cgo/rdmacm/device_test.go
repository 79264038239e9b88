//go:build cgo

package rdmacm

// Tests against the real librdmacm. On a host without RDMA only
// TestNoRDMADevice runs; the others skip, unless RDMABIND_SOFTROCE=1 (inside
// the SoftRoCE guest), where a missing device fails them.

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const cmDev = "/dev/infiniband/rdma_cm"

var softRoCE = os.Getenv("RDMABIND_SOFTROCE") == "1"

// The SoftRoCE guest's topology (ci/softroce/run).
var (
	rxe0v4 = netip.MustParseAddr("10.77.0.1")
	rxe0v6 = netip.MustParseAddr("fd77::1")
	rxe1v4 = netip.MustParseAddr("10.78.0.1")
	// TEST-NET-1: never an address of the host.
	notLocal = netip.MustParseAddr("192.0.2.1")
)

func needDevice(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(cmDev); err != nil {
		if softRoCE {
			t.Fatalf("RDMABIND_SOFTROCE=1 but %v", err)
		}
		t.Skipf("no RDMA device: %s is absent", cmDev)
	}
}

func needSoftRoCE(t testing.TB) {
	t.Helper()
	needDevice(t)
	if !softRoCE {
		t.Skip("needs the SoftRoCE guest (RDMABIND_SOFTROCE=1): rxe0 on 10.77.0.1, fd77::1")
	}
}

func hostHasAddr(ip netip.Addr) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == ip {
			return true
		}
	}
	return false
}

func newChannel(t testing.TB) *EventChannel {
	t.Helper()
	ec, err := NewEventChannel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ec.Close() })
	return ec
}

func newID(t testing.TB, ec *EventChannel, reuse bool) *ID {
	t.Helper()
	id, err := ec.CreateID(PortSpaceTCP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { id.Close() })
	if reuse {
		if err := id.SetReuseAddr(true); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

func bind(t testing.TB, id *ID, ip netip.Addr, port uint16) netip.AddrPort {
	t.Helper()
	if err := id.Bind(netip.AddrPortFrom(ip, port)); err != nil {
		t.Fatal(err)
	}
	return id.LocalAddr()
}

func TestNoRDMADevice(t *testing.T) {
	if _, err := os.Stat(cmDev); err == nil {
		t.Skipf("%s exists: this host has RDMA", cmDev)
	}
	if softRoCE {
		t.Fatalf("RDMABIND_SOFTROCE=1 but %s is absent", cmDev)
	}
	ec, err := NewEventChannel()
	if ec != nil || !errors.Is(err, unix.ENODEV) || !errors.Is(err, ErrNotSupported) {
		t.Fatalf("NewEventChannel() = %v, %v; want nil and ENODEV, ErrNotSupported", ec, err)
	}
	if !strings.HasPrefix(err.Error(), "rdma_create_event_channel: no such device") {
		t.Fatalf("message %q", err)
	}
	t.Log(err)
}

func TestBindDevice(t *testing.T) {
	needSoftRoCE(t)
	ec := newChannel(t)
	for _, ip := range []netip.Addr{rxe0v4, rxe0v6} {
		id := newID(t, ec, false)
		local := bind(t, id, ip, 0)
		if local.Addr() != ip || local.Port() == 0 {
			t.Errorf("%v: LocalAddr %v, want the address and a chosen port", ip, local)
		}
		if name, port := id.DeviceName(), id.PortNum(); name != "rxe0" || port != 1 {
			t.Errorf("%v: device %q port %d, want rxe0 port 1", ip, name, port)
		}
		// Close releases the port: a new ID binds it again.
		if err := id.Close(); err != nil {
			t.Fatal(err)
		}
		again := newID(t, ec, false)
		if got := bind(t, again, ip, local.Port()); got != local {
			t.Errorf("rebind after Close: %v, want %v", got, local)
		}
	}
}

func TestBindSecondDevice(t *testing.T) {
	needSoftRoCE(t)
	if !hostHasAddr(rxe1v4) {
		t.Skipf("%v is not configured: run the guest with --nics 2", rxe1v4)
	}
	ec := newChannel(t)
	id := newID(t, ec, false)
	bind(t, id, rxe1v4, 0)
	if name, port := id.DeviceName(), id.PortNum(); name != "rxe1" || port != 1 {
		t.Fatalf("device %q port %d, want rxe1 port 1", name, port)
	}
}

func TestBindWildcard(t *testing.T) {
	needDevice(t)
	ec := newChannel(t)
	for _, ip := range []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		id := newID(t, ec, false)
		local := bind(t, id, ip, 0)
		if local.Addr() != ip || local.Port() == 0 {
			t.Errorf("%v: LocalAddr %v", ip, local)
		}
		if name, port := id.DeviceName(), id.PortNum(); name != "" || port != 0 {
			t.Errorf("%v: device %q port %d, want none", ip, name, port)
		}
	}
}

func TestBindNotLocal(t *testing.T) {
	needDevice(t)
	ec := newChannel(t)
	id := newID(t, ec, false)
	ap := netip.AddrPortFrom(notLocal, 4791)
	err := id.Bind(ap)
	if !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("Bind(%v) = %v, want EADDRNOTAVAIL", ap, err)
	}
	if want := "rdma_bind_addr 192.0.2.1:4791: cannot assign requested address"; err.Error() != want {
		t.Fatalf("message %q, want %q", err, want)
	}
	if id.DeviceName() != "" || id.LocalAddr().Port() != 0 {
		t.Fatalf("failed bind left %q %v", id.DeviceName(), id.LocalAddr())
	}
}

func TestReuseAddr(t *testing.T) {
	needSoftRoCE(t)
	ec := newChannel(t)
	a := newID(t, ec, true)
	port := bind(t, a, rxe0v4, 0).Port()
	ap := netip.AddrPortFrom(rxe0v4, port)
	b := newID(t, ec, true)
	if err := b.Bind(ap); err != nil {
		t.Fatalf("second REUSEADDR bind of %v: %v", ap, err)
	}
	c := newID(t, ec, false)
	if err := c.Bind(ap); !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("bind without REUSEADDR: %v, want EADDRINUSE", err)
	}
	// Every ID on the port must have set it.
	d := newID(t, ec, false)
	port2 := bind(t, d, rxe0v4, 0).Port()
	e := newID(t, ec, true)
	if err := e.Bind(netip.AddrPortFrom(rxe0v4, port2)); !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("REUSEADDR bind on a non-reuse port: %v, want EADDRINUSE", err)
	}
}

func TestListenIsExclusive(t *testing.T) {
	needSoftRoCE(t)
	ec := newChannel(t)
	a := newID(t, ec, true)
	port := bind(t, a, rxe0v4, 0).Port()
	ap := netip.AddrPortFrom(rxe0v4, port)
	if err := a.Listen(8); err != nil {
		t.Fatal(err)
	}
	b := newID(t, ec, true)
	err := b.Bind(ap)
	if err == nil {
		err = b.Listen(8)
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("second ID on a listening port: %v, want EADDRINUSE", err)
	}
	t.Logf("second ID: %v", err)

	// Two IDs sharing a port with REUSEADDR: neither can listen.
	c := newID(t, ec, true)
	port = bind(t, c, rxe0v4, 0).Port()
	d := newID(t, ec, true)
	bind(t, d, rxe0v4, port)
	err = c.Listen(8)
	if !errors.Is(err, unix.EADDRINUSE) {
		t.Fatalf("listen on a shared port: %v, want EADDRINUSE", err)
	}
	t.Logf("listen on a shared port: %v", err)

	// A wildcard and a specific address on one port: EADDRNOTAVAIL, at bind
	// without REUSEADDR, at listen with it.
	e := newID(t, ec, true)
	port = bind(t, e, netip.IPv4Unspecified(), 0).Port()
	f := newID(t, ec, true)
	bind(t, f, rxe0v4, port)
	if err := e.Listen(8); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("listen on the wildcard of a shared port: %v, want EADDRNOTAVAIL", err)
	}
	g := newID(t, ec, false)
	port = bind(t, g, netip.IPv4Unspecified(), 0).Port()
	h := newID(t, ec, false)
	if err := h.Bind(netip.AddrPortFrom(rxe0v4, port)); !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("bind beside a wildcard: %v, want EADDRNOTAVAIL", err)
	}
}

func TestBindLinkLocal(t *testing.T) {
	needSoftRoCE(t)
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		t.Fatal(err)
	}
	var ll netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
			ll = p.Addr()
		}
	}
	if !ll.IsValid() {
		t.Skip("eth0 has no IPv6 link-local address")
	}
	ec := newChannel(t)
	want := ll.WithZone(strconv.Itoa(ifi.Index))
	for _, zone := range []string{"eth0", strconv.Itoa(ifi.Index)} {
		id := newID(t, ec, false)
		local := bind(t, id, ll.WithZone(zone), 0)
		if local.Addr() != want || local.Port() == 0 {
			t.Errorf("zone %s: LocalAddr %v, want %v and a port", zone, local, want)
		}
		if id.DeviceName() != "rxe0" || id.PortNum() != 1 {
			t.Errorf("zone %s: device %q port %d", zone, id.DeviceName(), id.PortNum())
		}
	}
}

func TestCloseTwice(t *testing.T) {
	needDevice(t)
	ec, err := NewEventChannel()
	if err != nil {
		t.Fatal(err)
	}
	id, err := ec.CreateID(PortSpaceTCP)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ec.CreateID(PortSpaceUDP)
	if err != nil {
		t.Fatal(err)
	}
	bind(t, id, netip.IPv4Unspecified(), 0)
	if err := id.Listen(1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := id.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := ec.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// The channel closed other.
	if err := other.Bind(netip.AddrPortFrom(netip.IPv4Unspecified(), 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Bind on an ID of a closed channel: %v", err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGetEventWaits(t *testing.T) {
	needDevice(t)
	ec := newChannel(t)
	id := newID(t, ec, false)
	bind(t, id, netip.IPv4Unspecified(), 0)
	if err := id.Listen(1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := ec.GetEvent(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetEvent with nothing pending: %v", err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := ec.GetEvent(context.Background())
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ec.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("GetEvent after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake GetEvent")
	}
}

func TestConnectRequest(t *testing.T) {
	needSoftRoCE(t)
	rping, err := exec.LookPath("rping")
	if err != nil {
		t.Skip("rping (rdmacm-utils) not installed")
	}
	ec := newChannel(t)
	l := newID(t, ec, false)
	local := bind(t, l, rxe0v4, 0)
	if err := l.Listen(8); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := exec.CommandContext(ctx, rping, "-c", "-a", local.Addr().String(),
		"-p", strconv.Itoa(int(local.Port())), "-C", "1")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		client.Process.Kill()
		client.Wait()
	}()
	ev, err := ec.GetEvent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != EventConnectRequest || ev.Listener != l || ev.ID == nil || ev.ID == l {
		t.Fatalf("event %v listener %p id %p, want a connect request on %p", ev.Type, ev.Listener, ev.ID, l)
	}
	if ev.ID.DeviceName() != "rxe0" || ev.ID.PortNum() != 1 || ev.ID.LocalAddr() != local {
		t.Fatalf("new ID on %q port %d %v", ev.ID.DeviceName(), ev.ID.PortNum(), ev.ID.LocalAddr())
	}
	if err := ev.ID.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestNetns checks that an ID takes the network namespace it is created in:
// in a new namespace, the guest's rxe0 address is not an address at all, and
// an address of the namespace's own loopback device is one that no RDMA
// device serves.
func TestNetns(t *testing.T) {
	needSoftRoCE(t)
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	nsfd := newNetns(t, func() {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"addr", "add", "10.99.0.1/32", "dev", "lo"},
		} {
			if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
				t.Errorf("ip %v: %v: %s", args, err, out)
			}
		}
	})
	ec := newChannel(t)
	for _, c := range []struct {
		ip   netip.Addr
		want error
	}{
		{rxe0v4, unix.EADDRNOTAVAIL},
		{netip.MustParseAddr("10.99.0.1"), unix.ENODEV},
	} {
		id, err := ec.CreateIDInNetns(PortSpaceTCP, nsfd)
		if err != nil {
			t.Fatal(err)
		}
		err = id.Bind(netip.AddrPortFrom(c.ip, 0))
		t.Logf("bind %v in the new netns: %v", c.ip, err)
		if !errors.Is(err, c.want) {
			t.Errorf("bind %v in the new netns: %v, want %v", c.ip, err, c.want)
		}
		id.Close()
	}
	// IDs of the process's namespace are as before.
	id := newID(t, ec, false)
	bind(t, id, rxe0v4, 0)
	if id.DeviceName() != "rxe0" {
		t.Fatalf("after CreateIDInNetns, a CreateID ID binds to %q", id.DeviceName())
	}
}

func TestNoFDLeak(t *testing.T) {
	needDevice(t)
	ip := netip.IPv4Unspecified()
	if softRoCE {
		ip = rxe0v4
	}
	once := func() {
		ec, err := NewEventChannel()
		if err != nil {
			t.Fatal(err)
		}
		a, _ := ec.CreateID(PortSpaceTCP)
		b, _ := ec.CreateID(PortSpaceTCP)
		if err := a.Bind(netip.AddrPortFrom(ip, 0)); err != nil {
			t.Fatal(err)
		}
		a.Listen(4)
		b.Bind(netip.AddrPortFrom(notLocal, 0))
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		ec.GetEvent(ctx)
		cancel()
		a.Close()
		// b is closed by the channel.
		ec.Close()
		ec.Close()
	}
	// The first run opens what librdmacm keeps for the process (the
	// devices it binds to stay open while it is loaded).
	once()
	before := countFDs(t)
	for range 20 {
		once()
	}
	if after := countFDs(t); after != before {
		t.Fatalf("%d fds before, %d after 20 rounds", before, after)
	}
}

// BenchmarkBindAddr is one bind as rdmabind does it: create an ID, bind it to
// port 0 of the device address (the wildcard outside the SoftRoCE guest),
// destroy it.
func BenchmarkBindAddr(b *testing.B) {
	needDevice(b)
	ip := netip.IPv4Unspecified()
	if softRoCE {
		ip = rxe0v4
	}
	ap := netip.AddrPortFrom(ip, 0)
	ec := newChannel(b)
	for b.Loop() {
		id, err := ec.CreateID(PortSpaceTCP)
		if err != nil {
			b.Fatal(err)
		}
		if err := id.Bind(ap); err != nil {
			b.Fatal(err)
		}
		if err := id.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
