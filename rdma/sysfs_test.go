package rdma

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"
)

func readFixture(t testing.TB, name string) *Topology {
	t.Helper()
	topo, err := ReadTopology(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("ReadTopology(%s): %v", name, err)
	}
	return topo
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// The SoftRoCE fixture is a copy of the guest of ci/softroce/run --nics 2.
func TestReadTopologySoftRoCE(t *testing.T) {
	got := readFixture(t, "softroce")
	port := func(eth, ll, v4, v6 string) []Port {
		return []Port{{
			Number: 1, State: "ACTIVE", PhysState: "LinkUp", LinkLayer: LinkLayerEthernet,
			GIDs: []GIDEntry{
				{Index: 0, GID: mustAddr(ll), Type: GIDTypeRoCEv2, Netdev: eth},
				{Index: 1, GID: mustAddr(v4), Type: GIDTypeRoCEv2, Netdev: eth},
				{Index: 2, GID: mustAddr(v6), Type: GIDTypeRoCEv2, Netdev: eth},
			},
			Netdevs: []string{eth},
		}}
	}
	want := &Topology{
		Devices: []Device{
			{Name: "rxe0", NodeType: "CA", NodeGUID: "5054:00ff:fe77:0001",
				Ports: port("eth0", "fe80::5054:ff:fe77:1", "::ffff:10.77.0.1", "fd77::1")},
			{Name: "rxe1", NodeType: "CA", NodeGUID: "5054:00ff:fe77:0101",
				Ports: port("eth1", "fe80::5054:ff:fe77:101", "::ffff:10.78.0.1", "fd78::1")},
		},
		Netdevs: []Netdev{
			{Name: "eth0", Ports: []PortRef{{"rxe0", 1}}},
			{Name: "eth1", Ports: []PortRef{{"rxe1", 1}}},
		},
		RDMACM: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadTopology(softroce):\n got %+v\nwant %+v", got, want)
	}
}

func TestReadTopologyNetdevs(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		want    []Netdev
		ports   map[PortRef][]string // Port.Netdevs
	}{
		{"connectx", []Netdev{
			{Name: "eth2", Ports: []PortRef{{"mlx5_0", 1}}},
			{Name: "eth2.100", Ports: []PortRef{{"mlx5_0", 1}}, Lower: []string{"eth2"}},
			{Name: "eth3", Ports: []PortRef{{"mlx5_1", 1}}},
		}, map[PortRef][]string{{"mlx5_0", 1}: {"eth2", "eth2.100"}, {"mlx5_1", 1}: {"eth3"}}},
		// The slaves' function holds mlx5_bond_0, but its GIDs name bond0.
		{"bond", []Netdev{
			{Name: "bond0", Ports: []PortRef{{"mlx5_bond_0", 1}}, Lower: []string{"eth4", "eth5"}},
		}, map[PortRef][]string{{"mlx5_bond_0", 1}: {"bond0"}}},
		// IPoIB: the port from dev_port+1.
		{"ipoib", []Netdev{
			{Name: "ib0", Ports: []PortRef{{"mlx5_2", 1}}},
			{Name: "ib1", Ports: []PortRef{{"mlx4_0", 1}}},
			{Name: "ib2", Ports: []PortRef{{"mlx4_0", 2}}},
		}, map[PortRef][]string{{"mlx5_2", 1}: {"ib0"}, {"mlx4_0", 1}: {"ib1"}, {"mlx4_0", 2}: {"ib2"}}},
		{"nordma", []Netdev{}, nil},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			topo := readFixture(t, tc.fixture)
			if !reflect.DeepEqual(topo.Netdevs, tc.want) {
				t.Errorf("Netdevs = %+v, want %+v", topo.Netdevs, tc.want)
			}
			for ref, want := range tc.ports {
				p, ok := topo.Port(ref)
				if !ok {
					t.Fatalf("no %s", ref)
				}
				if !reflect.DeepEqual(p.Netdevs, want) {
					t.Errorf("%s: Netdevs = %q, want %q", ref, p.Netdevs, want)
				}
			}
		})
	}
}

func TestReadTopologyGIDTypes(t *testing.T) {
	topo := readFixture(t, "connectx")
	p, _ := topo.Port(PortRef{"mlx5_0", 1})
	if len(p.GIDs) != 10 {
		t.Fatalf("mlx5_0 port 1: %d GIDs, want 10 (16 entries, 6 unused)", len(p.GIDs))
	}
	for _, g := range p.GIDs {
		want := GIDTypeRoCEv1
		if g.Index%2 == 1 {
			want = GIDTypeRoCEv2
		}
		if g.Type != want {
			t.Errorf("GID %d: type %v, want %v", g.Index, g.Type, want)
		}
	}
	topo = readFixture(t, "ipoib")
	p, _ = topo.Port(PortRef{"mlx5_2", 1})
	want := []GIDEntry{{Index: 0, GID: mustAddr("fe80::248a:703:49:d4f0"), Type: GIDTypeIB}}
	if p.LinkLayer != LinkLayerInfiniBand || !reflect.DeepEqual(p.GIDs, want) {
		t.Errorf("mlx5_2 port 1: %s %+v, want InfiniBand %+v", p.LinkLayer, p.GIDs, want)
	}
}

// faultFS makes reads of some files fail, as sysfs does: an unused GID's
// gid_attrs/types/K opens, and its read gives EINVAL.
type faultFS struct {
	fs.FS
	read map[string]error // path -> the error of Read
	open map[string]error // path -> the error of Open
}

type faultFile struct {
	fs.File
	err error
}

func (f faultFile) Read([]byte) (int, error) { return 0, f.err }

func (f faultFS) Open(name string) (fs.File, error) {
	if err, ok := f.open[name]; ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	file, err := f.FS.Open(name)
	if err != nil {
		return nil, err
	}
	if err, ok := f.read[name]; ok {
		return faultFile{file, &fs.PathError{Op: "read", Path: name, Err: err}}, nil
	}
	return file, nil
}

func TestReadTopologyEINVAL(t *testing.T) {
	const port = "sys/class/infiniband/rxe0/ports/1/"
	ffs := faultFS{FS: os.DirFS("testdata/softroce"), read: map[string]error{
		// Entry 1 was deleted between reading gids/1 and types/1.
		port + "gid_attrs/types/1": syscall.EINVAL,
		// The kernel answers EINVAL for an entry without netdev.
		port + "gid_attrs/ndevs/2": syscall.EINVAL,
	}}
	// Unused entries as the kernel has them: zeros, and EINVAL for types.
	for k := 3; k < 8; k++ {
		ffs.read[port+"gid_attrs/types/"+strconv.Itoa(k)] = syscall.EINVAL
	}
	topo, err := readTopology(ffs, "testdata/softroce")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := topo.Port(PortRef{"rxe0", 1})
	want := []GIDEntry{
		{Index: 0, GID: mustAddr("fe80::5054:ff:fe77:1"), Type: GIDTypeRoCEv2, Netdev: "eth0"},
		{Index: 2, GID: mustAddr("fd77::1"), Type: GIDTypeRoCEv2},
	}
	if !reflect.DeepEqual(p.GIDs, want) {
		t.Errorf("GIDs = %+v, want %+v", p.GIDs, want)
	}
}

func TestReadTopologyNoGIDAttrs(t *testing.T) {
	// A kernel from before RoCE v2 has no gid_attrs: v1 on Ethernet.
	fsys := fstest.MapFS{
		"sys/class/infiniband/mlx4_0/node_type":             {Data: []byte("1: CA\n")},
		"sys/class/infiniband/mlx4_0/ports/1/state":         {Data: []byte("4: ACTIVE\n")},
		"sys/class/infiniband/mlx4_0/ports/1/link_layer":    {Data: []byte("Ethernet\n")},
		"sys/class/infiniband/mlx4_0/ports/1/gids/0":        {Data: []byte("0000:0000:0000:0000:0000:ffff:0a00:0001\n")},
		"sys/class/infiniband/mlx4_0/ports/2/state":         {Data: []byte("4: ACTIVE\n")},
		"sys/class/infiniband/mlx4_0/ports/2/gids/0":        {Data: []byte("fe80:0000:0000:0000:0002:c903:0010:a3b2\n")},
		"sys/class/infiniband/mlx4_0/ports/2/gids/1":        {Data: []byte("0000:0000:0000:0000:0000:0000:0000:0000\n")},
		"sys/class/infiniband/mlx4_0/ports/2/gid_attrs/foo": {Data: []byte("")},
	}
	topo, err := readTopology(fsys, "")
	if err != nil {
		t.Fatal(err)
	}
	d := topo.Devices[0]
	if got := d.Ports[0].GIDs; len(got) != 1 || got[0].Type != GIDTypeRoCEv1 {
		t.Errorf("port 1 GIDs = %+v, want one RoCE v1", got)
	}
	// No link_layer file: InfiniBand, as before the file existed.
	if got := d.Ports[1]; got.LinkLayer != LinkLayerInfiniBand || len(got.GIDs) != 1 || got.GIDs[0].Type != GIDTypeIB {
		t.Errorf("port 2 = %+v, want InfiniBand with one IB GID", got)
	}
}

func TestNetdevPortFromDevID(t *testing.T) {
	// Kernels before dev_port put the port, from 0, in dev_id.
	fsys := fstest.MapFS{
		"sys/class/infiniband/mlx4_0/node_type":          {Data: []byte("1: CA\n")},
		"sys/class/infiniband/mlx4_0/ports/1/state":      {Data: []byte("4: ACTIVE\n")},
		"sys/class/infiniband/mlx4_0/ports/1/link_layer": {Data: []byte("InfiniBand\n")},
		"sys/class/infiniband/mlx4_0/ports/2/state":      {Data: []byte("4: ACTIVE\n")},
		"sys/class/infiniband/mlx4_0/ports/2/link_layer": {Data: []byte("InfiniBand\n")},
		"sys/class/net/ib1/dev_id":                       {Data: []byte("0x1\n")},
		"sys/class/net/ib1/device/infiniband/mlx4_0":     {Mode: fs.ModeDir},
	}
	topo, err := readTopology(fsys, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []Netdev{{Name: "ib1", Ports: []PortRef{{"mlx4_0", 2}}}}
	if !reflect.DeepEqual(topo.Netdevs, want) {
		t.Errorf("Netdevs = %+v, want %+v", topo.Netdevs, want)
	}
}

func TestReadTopologyErrors(t *testing.T) {
	base := func() fstest.MapFS {
		return fstest.MapFS{
			"sys/class/infiniband/rxe0/node_type":         {Data: []byte("1: CA\n")},
			"sys/class/infiniband/rxe0/ports/1/state":     {Data: []byte("4: ACTIVE\n")},
			"sys/class/infiniband/rxe0/ports/1/gids/0":    {Data: []byte("fe80:0000:0000:0000:5054:00ff:fe77:0001\n")},
			"sys/class/infiniband/rxe0/ports/1/gids/1":    {Data: []byte("0000:0000:0000:0000:0000:0000:0000:0000\n")},
			"sys/class/infiniband/rxe0/ports/1/gid_attrs": {Mode: fs.ModeDir},
		}
	}
	for _, tc := range []struct {
		name   string
		edit   func(fstest.MapFS)
		inputs []string // in the message
	}{
		{"state", func(m fstest.MapFS) {
			m["sys/class/infiniband/rxe0/ports/1/state"] = &fstest.MapFile{Data: []byte("ACTIVE\n")}
		}, []string{"ports/1/state", `"ACTIVE"`, `"4: ACTIVE"`}},
		{"no state", func(m fstest.MapFS) {
			delete(m, "sys/class/infiniband/rxe0/ports/1/state")
		}, []string{"ports/1/state", "cannot read state"}},
		{"no node_type", func(m fstest.MapFS) {
			delete(m, "sys/class/infiniband/rxe0/node_type")
		}, []string{"rxe0/node_type"}},
		{"link layer", func(m fstest.MapFS) {
			m["sys/class/infiniband/rxe0/ports/1/link_layer"] = &fstest.MapFile{Data: []byte("Omni-Path\n")}
		}, []string{"link_layer", `"Omni-Path"`, "InfiniBand or Ethernet"}},
		{"gid", func(m fstest.MapFS) {
			m["sys/class/infiniband/rxe0/ports/1/gids/0"] = &fstest.MapFile{Data: []byte("fe80::zz\n")}
		}, []string{"gids/0", `"fe80::zz"`, "eight groups"}},
		{"gid type", func(m fstest.MapFS) {
			m["sys/class/infiniband/rxe0/ports/1/gid_attrs/types/0"] = &fstest.MapFile{Data: []byte("RoCE v3\n")}
		}, []string{"types/0", `"RoCE v3"`, `"RoCE v2"`}},
		{"port dir", func(m fstest.MapFS) {
			m["sys/class/infiniband/rxe0/ports/one/state"] = &fstest.MapFile{Data: []byte("4: ACTIVE\n")}
		}, []string{"ports/one", "port number"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			_, err := readTopology(m, "/")
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrTopology) || !errors.Is(err, unix.ENETDOWN) {
				t.Errorf("error %v: want ErrTopology matching ENETDOWN", err)
			}
			if !strings.HasPrefix(err.Error(), "rdma: topology ") {
				t.Errorf("error %q: want it to name the operation", err)
			}
			for _, s := range tc.inputs {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
	if _, err := readTopology(base(), "/"); err != nil {
		t.Errorf("base: %v", err)
	}
}

func TestCheckRDMACM(t *testing.T) {
	if err := (Sysfs{Root: "testdata/softroce"}).CheckRDMACM(); err != nil {
		t.Errorf("softroce: %v", err)
	}
	err := Sysfs{Root: "testdata/nordma"}.CheckRDMACM()
	if !errors.Is(err, ErrNoRDMA) || !errors.Is(err, unix.ENETDOWN) || !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "no RDMA subsystem: /dev/infiniband/rdma_cm not present") {
		t.Errorf("nordma: %v, want ErrNoRDMA wrapping the stat error", err)
	}
}

func TestTopologyJSON(t *testing.T) {
	b, err := json.Marshal(readFixture(t, "softroce"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		RDMACM  *bool `json:"rdma_cm"`
		Devices []struct {
			Name     string `json:"name"`
			NodeType string `json:"node_type"`
			NodeGUID string `json:"node_guid"`
			Ports    []struct {
				Number    int    `json:"number"`
				State     string `json:"state"`
				PhysState string `json:"phys_state"`
				LinkLayer string `json:"link_layer"`
				GIDs      []struct {
					Index  int    `json:"index"`
					GID    string `json:"gid"`
					Type   string `json:"type"`
					Netdev string `json:"netdev"`
				} `json:"gids"`
			} `json:"ports"`
		} `json:"devices"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	p := v.Devices[0].Ports[0]
	g := p.GIDs[1]
	if v.RDMACM == nil || !*v.RDMACM || v.Devices[0].NodeType != "CA" || v.Devices[0].NodeGUID != "5054:00ff:fe77:0001" ||
		p.State != "ACTIVE" || p.PhysState != "LinkUp" || p.LinkLayer != "Ethernet" ||
		g.Index != 1 || g.GID != "::ffff:10.77.0.1" || g.Type != "RoCEv2" || g.Netdev != "eth0" {
		t.Errorf("JSON %s", b)
	}
	var back Topology
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, readFixture(t, "softroce")) {
		t.Errorf("JSON round trip differs")
	}
}

func TestGIDTypeText(t *testing.T) {
	for _, ty := range []GIDType{0, GIDTypeIB, GIDTypeRoCEv1, GIDTypeRoCEv2} {
		b, err := ty.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back GIDType
		if err := back.UnmarshalText(b); err != nil || back != ty {
			t.Errorf("%v: round trip %q -> %v, %v", ty, b, back, err)
		}
	}
	var ty GIDType
	if err := ty.UnmarshalText([]byte("RoCE v2")); err == nil || !strings.Contains(err.Error(), "RoCEv2") {
		t.Errorf("UnmarshalText(RoCE v2): %v, want an error naming the expected forms", err)
	}
	if _, err := GIDType(9).MarshalText(); err == nil {
		t.Error("MarshalText(9): no error")
	}
}
