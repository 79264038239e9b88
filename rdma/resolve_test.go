package rdma

import (
	"encoding/json"
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func fixtureResolver(t testing.TB, name string) *Resolver {
	t.Helper()
	addrs, err := ReadAddrTable(filepath.Join("testdata", name, "addrs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return NewResolver(readFixture(t, name), addrs)
}

// ep builds the Endpoint a specific address should resolve to.
func ep(addr, dev string, port, idx int, gid string, ty GIDType, netdev string, ll LinkLayer) Endpoint {
	return Endpoint{Addr: mustAddr(addr), Device: dev, Port: port, GIDIndex: idx,
		GID: mustAddr(gid), GIDType: ty, Netdev: netdev, LinkLayer: ll}
}

// wc builds the Endpoint of a port for the wildcard.
func wc(addr, dev string, port int, netdev string, ll LinkLayer) Endpoint {
	return Endpoint{Addr: mustAddr(addr), Device: dev, Port: port, GIDIndex: -1, Netdev: netdev, LinkLayer: ll}
}

const (
	eth = LinkLayerEthernet
	ib  = LinkLayerInfiniBand
	v1  = GIDTypeRoCEv1
	v2  = GIDTypeRoCEv2
)

func TestResolveFixtures(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		addr    string
		want    []Endpoint
	}{
		// SoftRoCE, as in the guest.
		{"softroce", "10.77.0.1", []Endpoint{ep("10.77.0.1", "rxe0", 1, 1, "::ffff:10.77.0.1", v2, "eth0", eth)}},
		{"softroce", "::ffff:10.77.0.1", []Endpoint{ep("10.77.0.1", "rxe0", 1, 1, "::ffff:10.77.0.1", v2, "eth0", eth)}},
		{"softroce", "fd77::1", []Endpoint{ep("fd77::1", "rxe0", 1, 2, "fd77::1", v2, "eth0", eth)}},
		{"softroce", "10.78.0.1", []Endpoint{ep("10.78.0.1", "rxe1", 1, 1, "::ffff:10.78.0.1", v2, "eth1", eth)}},
		{"softroce", "fd78::1", []Endpoint{ep("fd78::1", "rxe1", 1, 2, "fd78::1", v2, "eth1", eth)}},
		// A link-local address has a link-local GID, and no zone means the
		// first holder, whose name becomes the zone.
		{"softroce", "fe80::5054:ff:fe77:1%eth0", []Endpoint{ep("fe80::5054:ff:fe77:1%eth0", "rxe0", 1, 0, "fe80::5054:ff:fe77:1", v2, "eth0", eth)}},
		{"softroce", "fe80::5054:ff:fe77:101", []Endpoint{ep("fe80::5054:ff:fe77:101%eth1", "rxe1", 1, 0, "fe80::5054:ff:fe77:101", v2, "eth1", eth)}},
		{"softroce", "0.0.0.0", []Endpoint{wc("0.0.0.0", "rxe0", 1, "eth0", eth), wc("0.0.0.0", "rxe1", 1, "eth1", eth)}},
		{"softroce", "::", []Endpoint{wc("::", "rxe0", 1, "eth0", eth), wc("::", "rxe1", 1, "eth1", eth)}},
		{"softroce", "::ffff:0.0.0.0", []Endpoint{wc("0.0.0.0", "rxe0", 1, "eth0", eth), wc("0.0.0.0", "rxe1", 1, "eth1", eth)}},

		// ConnectX: v1 at even, v2 at odd indexes; v2 wins.
		{"connectx", "192.168.10.5", []Endpoint{ep("192.168.10.5", "mlx5_0", 1, 3, "::ffff:192.168.10.5", v2, "eth2", eth)}},
		{"connectx", "fd10::5", []Endpoint{ep("fd10::5", "mlx5_0", 1, 5, "fd10::5", v2, "eth2", eth)}},
		// The VLAN's own entries, whose ndev is the VLAN.
		{"connectx", "192.168.100.5", []Endpoint{ep("192.168.100.5", "mlx5_0", 1, 9, "::ffff:192.168.100.5", v2, "eth2.100", eth)}},
		{"connectx", "fe80::bace:f6ff:fea1:b2c0%eth2.100", []Endpoint{ep("fe80::bace:f6ff:fea1:b2c0%eth2.100", "mlx5_0", 1, 7, "fe80::bace:f6ff:fea1:b2c0", v2, "eth2.100", eth)}},
		{"connectx", "fe80::bace:f6ff:fea1:b2c0%eth2", []Endpoint{ep("fe80::bace:f6ff:fea1:b2c0%eth2", "mlx5_0", 1, 1, "fe80::bace:f6ff:fea1:b2c0", v2, "eth2", eth)}},
		{"connectx", "0.0.0.0", []Endpoint{wc("0.0.0.0", "mlx5_0", 1, "eth2", eth)}}, // mlx5_1 is DOWN

		{"bond", "10.20.0.5", []Endpoint{ep("10.20.0.5", "mlx5_bond_0", 1, 3, "::ffff:10.20.0.5", v2, "bond0", eth)}},
		{"bond", "::", []Endpoint{wc("::", "mlx5_bond_0", 1, "bond0", eth)}},

		// IPoIB: the port behind the netdev, GID index 0.
		{"ipoib", "10.30.0.5", []Endpoint{ep("10.30.0.5", "mlx5_2", 1, 0, "fe80::248a:703:49:d4f0", GIDTypeIB, "ib0", ib)}},
		{"ipoib", "fe80::268a:703:49:d4f0%ib0", []Endpoint{ep("fe80::268a:703:49:d4f0%ib0", "mlx5_2", 1, 0, "fe80::248a:703:49:d4f0", GIDTypeIB, "ib0", ib)}},
		{"ipoib", "10.31.0.5", []Endpoint{ep("10.31.0.5", "mlx4_0", 1, 0, "fe80::2:c903:10:a3b1", GIDTypeIB, "ib1", ib)}},
		{"ipoib", "0.0.0.0", []Endpoint{wc("0.0.0.0", "mlx4_0", 1, "ib1", ib), wc("0.0.0.0", "mlx5_2", 1, "ib0", ib)}},
	} {
		t.Run(tc.fixture+"/"+tc.addr, func(t *testing.T) {
			got, err := fixtureResolver(t, tc.fixture).Resolve(mustAddr(tc.addr))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Resolve(%s):\n got %+v\nwant %+v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		addr    netip.Addr
		want    error // the sentinel
		errno   unix.Errno
		in      []string // in the message
	}{
		{"softroce", mustAddr("10.77.0.9"), ErrAddrNotLocal, unix.EADDRNOTAVAIL,
			[]string{"10.77.0.9 is not an address of this host", "0.0.0.0"}},
		{"softroce", mustAddr("fd77::9"), ErrAddrNotLocal, unix.EADDRNOTAVAIL,
			[]string{"fd77::9 is not an address of this host", "::"}},
		{"softroce", mustAddr("fe80::5054:ff:fe77:1%eth1"), ErrAddrNotLocal, unix.EADDRNOTAVAIL,
			[]string{"fe80::5054:ff:fe77:1%eth1 is not an address of this host"}},
		{"softroce", netip.Addr{}, ErrAddrNotLocal, unix.EADDRNOTAVAIL,
			[]string{"zero netip.Addr", "expected an IPv4 or IPv6 address"}},
		// Loopback: refused, though rdma_cm would take it as the wildcard.
		{"softroce", mustAddr("127.0.0.1"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"127.0.0.1 is a loopback address", "wildcard", "0.0.0.0"}},
		{"softroce", mustAddr("127.0.0.2"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"127.0.0.2 is a loopback address"}},
		{"softroce", mustAddr("::1"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"::1 is a loopback address", "or ::"}},
		// An address on a netdev no RDMA device serves.
		{"connectx", mustAddr("192.0.2.9"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"192.0.2.9 is on netdev eth9, which no RDMA device serves", "eth2 (mlx5_0 port 1)"}},
		{"connectx", mustAddr("fe80::21b:21ff:fe3c:9d09%eth9"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"on netdev eth9, which no RDMA device serves"}},
		// On an RDMA netdev, but without a GID entry yet.
		{"connectx", mustAddr("192.168.10.99"), ErrAddrNotServed, unix.EADDRNOTAVAIL,
			[]string{"192.168.10.99 is on netdev eth2", "mlx5_0 port 1", "::ffff:192.168.10.99"}},
		// The port is DOWN, or stuck in INIT.
		{"connectx", mustAddr("192.168.11.5"), ErrPortDown, unix.ENETDOWN,
			[]string{"192.168.11.5 on netdev eth3 is served by mlx5_1 port 1, which is DOWN (phys_state Disabled)", "ACTIVE"}},
		{"ipoib", mustAddr("10.32.0.5"), ErrPortDown, unix.ENETDOWN,
			[]string{"10.32.0.5 on netdev ib2 is served by mlx4_0 port 2, which is INIT"}},
		// No RDMA subsystem at all: ErrNoRDMA before anything else.
		{"nordma", mustAddr("192.0.2.2"), ErrNoRDMA, unix.ENETDOWN,
			[]string{"resolve 192.0.2.2: no RDMA subsystem: /dev/infiniband/rdma_cm not present"}},
		{"nordma", mustAddr("0.0.0.0"), ErrNoRDMA, unix.ENETDOWN,
			[]string{"no RDMA subsystem"}},
	} {
		t.Run(tc.fixture+"/"+tc.addr.String(), func(t *testing.T) {
			got, err := fixtureResolver(t, tc.fixture).Resolve(tc.addr)
			if err == nil {
				t.Fatalf("Resolve(%s) = %+v, want an error", tc.addr, got)
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, tc.errno) {
				t.Errorf("error %v: want %q matching %v", err, tc.want, tc.errno)
			}
			for _, other := range allSentinels {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v matches %q too", err, other)
				}
			}
			if want := "rdma: resolve " + tc.addr.String() + ": "; tc.addr.IsValid() && !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q: want it to start with %q (the operation and the input)", err, want)
			}
			for _, s := range tc.in {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

// No port of any fixture address gets a link-local GID for a global
// address, and every RoCE endpoint's GID is the address itself.
func TestResolveNeverLinkLocalForGlobal(t *testing.T) {
	for _, fx := range []string{"softroce", "connectx", "bond", "ipoib"} {
		r := fixtureResolver(t, fx)
		n := 0
		for _, na := range r.addrs.All() {
			eps, err := r.Resolve(na.Addr)
			if err != nil {
				continue
			}
			e := eps[0]
			if e.LinkLayer != LinkLayerEthernet {
				continue
			}
			n++
			if !na.Addr.IsLinkLocalUnicast() && e.GID.IsLinkLocalUnicast() {
				t.Errorf("%s: %s got link-local GID %s (index %d)", fx, na.Addr, e.GID, e.GIDIndex)
			}
			if e.GID != gidOf(na.Addr) || e.GIDType != GIDTypeRoCEv2 {
				t.Errorf("%s: %s got GID %s %v, want %s RoCEv2", fx, na.Addr, e.GID, e.GIDType, gidOf(na.Addr))
			}
		}
		if fx != "ipoib" && n == 0 {
			t.Errorf("%s: no RoCE address resolved", fx)
		}
	}
}

// handTopology is one RoCE port whose table is laid out against the
// selection: link-local v2 entries first, v2 before v1 for an address,
// an address with v1 only, and the same address on another netdev.
func handTopology() (*Topology, *AddrTable) {
	g := func(i int, a string, ty GIDType, nd string) GIDEntry {
		return GIDEntry{Index: i, GID: mustAddr(a), Type: ty, Netdev: nd}
	}
	topo := &Topology{RDMACM: true, Devices: []Device{{
		Name: "mlx4_0", NodeType: "CA",
		Ports: []Port{{
			Number: 1, State: "ACTIVE", PhysState: "LinkUp", LinkLayer: LinkLayerEthernet,
			GIDs: []GIDEntry{
				g(0, "fe80::1", v2, "eth0"),
				g(1, "fe80::1", v1, "eth0"),
				g(2, "::ffff:10.0.0.1", v2, "eth0"),
				g(3, "::ffff:10.0.0.1", v1, "eth0"),
				g(4, "::ffff:10.0.0.2", v1, "eth0"),
				g(5, "::ffff:10.0.0.3", v2, "macvlan0"),
				g(6, "::ffff:10.0.0.3", v1, "eth0"),
			},
			Netdevs: []string{"eth0", "macvlan0"},
		}},
	}}}
	addrs := NewAddrTable([]NetdevAddr{
		{Netdev: "eth0", Addr: mustAddr("10.0.0.1")},
		{Netdev: "eth0", Addr: mustAddr("10.0.0.2")},
		{Netdev: "eth0", Addr: mustAddr("10.0.0.3")},
		{Netdev: "eth0", Addr: mustAddr("fe80::1")},
	})
	return topo, addrs
}

func TestResolveSelection(t *testing.T) {
	r := NewResolver(handTopology())
	for addr, want := range map[string]int{
		"10.0.0.1": 2, // v2 even where v1 comes after it
		"10.0.0.2": 4, // v1 when the port has no v2 entry for it
		"10.0.0.3": 6, // the entry of the netdev that holds the address
		"fe80::1":  0,
	} {
		eps, err := r.Resolve(mustAddr(addr))
		if err != nil {
			t.Errorf("Resolve(%s): %v", addr, err)
			continue
		}
		if eps[0].GIDIndex != want {
			t.Errorf("Resolve(%s): GID index %d, want %d", addr, eps[0].GIDIndex, want)
		}
	}
}

func TestResolveWildcardNoActivePort(t *testing.T) {
	topo, addrs := handTopology()
	topo.Devices[0].Ports[0].State = "DOWN"
	_, err := NewResolver(topo, addrs).Resolve(mustAddr("0.0.0.0"))
	if !errors.Is(err, ErrPortDown) || !errors.Is(err, unix.ENETDOWN) || !strings.Contains(err.Error(), "no RDMA port is ACTIVE (mlx4_0 port 1 DOWN)") {
		t.Errorf("wildcard, all ports DOWN: %v, want ErrPortDown naming the ports", err)
	}
	topo.Devices = nil
	_, err = NewResolver(topo, addrs).Resolve(mustAddr("::"))
	if !errors.Is(err, ErrNoDevice) || !errors.Is(err, unix.ENETDOWN) || !strings.Contains(err.Error(), "no RDMA device: /sys/class/infiniband lists none") {
		t.Errorf("wildcard, no devices: %v, want ErrNoDevice", err)
	}
}

func TestEndpointJSON(t *testing.T) {
	eps, err := fixtureResolver(t, "softroce").Resolve(mustAddr("10.77.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(eps[0])
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"addr":"10.77.0.1","device":"rxe0","port":1,"gid_index":1,"gid":"::ffff:10.77.0.1","gid_type":"RoCEv2","netdev":"eth0","link_layer":"Ethernet"}`
	if string(b) != want {
		t.Errorf("JSON\n got %s\nwant %s", b, want)
	}
	eps, _ = fixtureResolver(t, "softroce").Resolve(mustAddr("0.0.0.0"))
	b, _ = json.Marshal(eps[0])
	const wantWC = `{"addr":"0.0.0.0","device":"rxe0","port":1,"gid_index":-1,"gid":"","gid_type":"","netdev":"eth0","link_layer":"Ethernet"}`
	if string(b) != wantWC {
		t.Errorf("wildcard JSON\n got %s\nwant %s", b, wantWC)
	}
}

// Resolution does not allocate beyond the result.
func TestResolveAllocs(t *testing.T) {
	r := fixtureResolver(t, "connectx")
	a := mustAddr("192.168.100.5")
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Resolve(a) }); n > 1 {
		t.Errorf("Resolve: %v allocations, want at most 1 (the result)", n)
	}
}

// allSentinels lists the package's sentinels: an error matches exactly one.
var allSentinels = []error{ErrNoRDMA, ErrNoDevice, ErrTopology, ErrPortDown, ErrAddrNotLocal, ErrAddrNotServed}
