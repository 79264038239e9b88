package doctor

import (
	"errors"
	"io/fs"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/rdma"
)

const testdata = "../../rdma/testdata/"

// want is what a test expects of one result: passing or not, and words in
// its detail and fix.
type want struct {
	ok     bool
	detail []string
	fix    []string
}

func expect(t *testing.T, rep *Report, name string, w want) {
	t.Helper()
	r, ok := rep.Find(name)
	if !ok {
		var names []string
		for _, c := range rep.Checks {
			names = append(names, c.Name)
		}
		t.Errorf("no check %q among %q", name, names)
		return
	}
	if r.OK != w.ok {
		t.Errorf("%s: ok %v, want %v (%s; fix: %s)", name, r.OK, w.ok, r.Detail, r.Fix)
	}
	for _, s := range w.detail {
		if !strings.Contains(r.Detail, s) {
			t.Errorf("%s: detail %q lacks %q", name, r.Detail, s)
		}
	}
	for _, s := range w.fix {
		if !strings.Contains(r.Fix, s) {
			t.Errorf("%s: fix %q lacks %q", name, r.Fix, s)
		}
	}
	if !r.OK && r.Fix == "" {
		t.Errorf("%s fails with no fix: %s", name, r.Detail)
	}
}

// Every check runs on every fixture, and the fixtures' own faults (a DOWN
// port, an INIT port, an address without a GID, no RDMA) are found.
func TestFixtures(t *testing.T) {
	all := []string{"devices", "memlock", "rdma_cm", "netns", "copy-on-fork", "bpf", "registry"}
	for _, tc := range []struct {
		fixture string
		ok      bool
		checks  map[string]want
	}{
		{"softroce", true, map[string]want{
			"port rxe0/1":   {ok: true, detail: []string{"ACTIVE", "eth0"}},
			"gid 10.77.0.1": {ok: true, detail: []string{"rxe0 port 1, GID index 1", "RoCEv2 ::ffff:10.77.0.1", "routable", "not the link-local GID at index 0"}},
			"gid fd78::1":   {ok: true, detail: []string{"rxe1 port 1, GID index 2"}},
		}},
		{"connectx", false, map[string]want{
			"port mlx5_0/1": {ok: true},
			"port mlx5_1/1": {ok: false, detail: []string{"DOWN", "Disabled"}, fix: []string{"ip link set eth3 up"}},
			// v2 at the odd index, never v1 nor the link-local GID.
			"gid 192.168.10.5":  {ok: true, detail: []string{"GID index 3", "not the RoCEv1 entry of the same GID at index 2", "not the link-local GID at index 1", "NCCL_IB_GID_INDEX"}},
			"gid 192.168.100.5": {ok: true, detail: []string{"GID index 9", "eth2.100"}},
			"gid 192.168.10.99": {ok: false, detail: []string{"has no GID", "::ffff:192.168.10.99", "192.168.10.5", "added a moment ago"}, fix: []string{"wait"}},
			"gid 192.168.11.5":  {ok: false, detail: []string{"DOWN"}},
		}},
		{"bond", true, map[string]want{
			"gid 10.20.0.5": {ok: true, detail: []string{"mlx5_bond_0 port 1, GID index 3", "bond0"}},
		}},
		{"ipoib", false, map[string]want{
			"port mlx4_0/2": {ok: false, detail: []string{"INIT"}, fix: []string{"subnet manager"}},
			"gid 10.30.0.5": {ok: true, detail: []string{"GID index 0", "InfiniBand"}},
			"gid 10.32.0.5": {ok: false, detail: []string{"INIT"}},
		}},
		{"nordma", false, map[string]want{
			"devices": {ok: false, detail: []string{"no RDMA device"}, fix: []string{"modprobe"}},
			"rdma_cm": {ok: false, detail: []string{"does not exist"}, fix: []string{"rdma_ucm"}},
		}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			rep := Run(FixtureFacts(testdata+tc.fixture), netip.Addr{})
			for _, name := range all {
				if _, ok := rep.Find(name); !ok {
					t.Errorf("no %s check", name)
				}
			}
			for name, w := range tc.checks {
				expect(t, rep, name, w)
			}
			if rep.OK() != tc.ok {
				t.Errorf("OK %v, want %v; failed: %+v", rep.OK(), tc.ok, rep.Failed())
			}
		})
	}
}

// Each failing case, one fact changed on a healthy fixture.
func TestFailingFacts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		set   func(f *Facts)
		check string
		w     want
	}{
		{"memlock low", func(f *Facts) { f.Memlock, f.Caps.IPCLock = Limit{Cur: 64 << 10, Max: 64 << 10}, false },
			"memlock", want{detail: []string{"64 KiB", "ENOMEM"}, fix: []string{"ulimit -l unlimited", "LimitMEMLOCK"}}},
		{"memlock low, CAP_IPC_LOCK", func(f *Facts) { f.Memlock = Limit{Cur: 64 << 10, Max: 64 << 10} },
			"memlock", want{ok: true, detail: []string{"CAP_IPC_LOCK"}}},
		{"memlock enough", func(f *Facts) { f.Memlock, f.Caps.IPCLock = Limit{Cur: 64 << 20, Max: 64 << 20}, false },
			"memlock", want{ok: true, detail: []string{"64.0 MiB", "25 connection"}}},
		{"memlock unknown", func(f *Facts) { f.MemlockErr = unix.EPERM }, "memlock", want{}},
		{"no device node", func(f *Facts) { f.RDMACM = Node{Path: "/dev/infiniband/rdma_cm", Err: fs.ErrNotExist} },
			"rdma_cm", want{detail: []string{"does not exist"}, fix: []string{"modprobe rdma_ucm", "--device /dev/infiniband/rdma_cm"}}},
		{"node not a char device", func(f *Facts) { f.RDMACM = Node{Path: "/dev/infiniband/rdma_cm", Mode: 0o644} },
			"rdma_cm", want{detail: []string{"not a character device"}, fix: []string{"udev"}}},
		{"node not permitted", func(f *Facts) {
			f.RDMACM.Mode, f.RDMACM.AccessErr = fs.ModeDevice|fs.ModeCharDevice|0o600, &fs.PathError{Op: "open", Path: "/dev/infiniband/rdma_cm", Err: unix.EACCES}
		}, "rdma_cm", want{detail: []string{"0600", "permission denied"}, fix: []string{"group"}}},
		{"copy-on-fork off", func(f *Facts) { f.System.CopyOnFork = "off" },
			"copy-on-fork", want{detail: []string{"off"}, fix: []string{"5.13"}}},
		{"no rdma tool", func(f *Facts) { f.SystemErr = errors.New(`exec: "rdma": executable file not found in $PATH`) },
			"copy-on-fork", want{ok: true, detail: []string{"not checked"}}},
		{"no CAP_BPF", func(f *Facts) { f.Caps.BPF, f.Caps.SysAdmin = false, false },
			"bpf", want{detail: []string{"no CAP_BPF", "degraded"}, fix: []string{"setcap"}}},
		{"no CAP_NET_ADMIN", func(f *Facts) { f.Caps.NetAdmin = false },
			"bpf", want{detail: []string{"no CAP_NET_ADMIN"}}},
		{"registry not writable", func(f *Facts) { f.RegistryDirErr = errors.New("access /run/rdmabind for writing: permission denied") },
			"registry", want{detail: []string{"permission denied"}, fix: []string{"RDMABIND_REGISTRY_DIR", "/run/rdmabind"}}},
		{"registry file there", func(f *Facts) { f.RegistryFileErr, f.RegistryFileSize = nil, 655488 },
			"registry", want{ok: true, detail: []string{"655488 bytes"}}},
		{"exclusive mode, no device here", func(f *Facts) {
			f.Root, f.Netns, f.System.NetnsMode = testdata+"nordma", 4026532000, "exclusive"
		}, "netns", want{detail: []string{"exclusive", "not the host's", "no RDMA device"}, fix: []string{"rdma dev set"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := FixtureFacts(testdata + "softroce")
			tc.set(f)
			expect(t, Run(f, netip.Addr{}), tc.check, tc.w)
		})
	}
}

// A port going down fails its check and the GIDs of its addresses.
func TestPortDown(t *testing.T) {
	f := FixtureFacts(testdata + "connectx")
	rep := Run(f, netip.MustParseAddr("192.168.11.5"))
	expect(t, rep, "port mlx5_1/1", want{detail: []string{"DOWN"}, fix: []string{"ip link set eth3 up"}})
	expect(t, rep, "gid 192.168.11.5", want{detail: []string{"mlx5_1 port 1, which is DOWN"}, fix: []string{"port"}})
	// Asked about one address, the check looks at that one only.
	for _, c := range rep.Checks {
		if strings.HasPrefix(c.Name, "gid ") && c.Name != "gid 192.168.11.5" {
			t.Errorf("check of another address: %s", c.Name)
		}
	}
}

// The container case: a namespace whose eth0 is not the eth0 the GID
// tables name (shared RDMA namespace mode: the host's tables). Its address
// has no GID, and the doctor says why.
func TestWrongNetnsGID(t *testing.T) {
	f := FixtureFacts(testdata + "softroce")
	f.Addrs = rdma.NewAddrTable([]rdma.NetdevAddr{
		{Netdev: "lo", Addr: netip.MustParseAddr("127.0.0.1")},
		{Netdev: "eth0", Addr: netip.MustParseAddr("10.99.0.2")},
	})
	f.Netns = 4026532300
	rep := Run(f, netip.Addr{})
	expect(t, rep, "gid 10.99.0.2", want{
		detail: []string{"10.99.0.2 on eth0 has no GID", "::ffff:10.99.0.2", "the entries naming eth0 hold", "10.77.0.1",
			"network namespace 4026532300, not the host's (4026531840)", "no address on (eth1)", "another namespace's", "shared"},
		fix: []string{"macvlan", "rdma dev set"}})
	expect(t, rep, "netns", want{detail: []string{"shared", "not the host's", "none of this namespace's addresses"}, fix: []string{"macvlan"}})
	// Unknown namespace (no /proc/1 access): still explained by the GID
	// tables' netdevs that are not here.
	f.Netns, f.HostNetns = 0, 0
	expect(t, Run(f, netip.Addr{}), "gid 10.99.0.2", want{detail: []string{"no address on (eth1)", "another namespace's"}})
	// An address not on this namespace's interfaces at all.
	f.Netns, f.HostNetns = 4026532300, hostNetns
	expect(t, Run(f, netip.MustParseAddr("10.77.0.1")), "gid 10.77.0.1", want{detail: []string{"not on this host"}, fix: []string{"not the host's"}})
}

// A port with only a RoCE v1 entry for the address: the kernel's default
// is v2, so the doctor flags it.
func TestRoCEv1Only(t *testing.T) {
	topo, err := rdma.ReadTopology(testdata + "connectx")
	if err != nil {
		t.Fatal(err)
	}
	p := &topo.Devices[0].Ports[0]
	p.GIDs = []rdma.GIDEntry{{Index: 2, GID: netip.MustParseAddr("::ffff:192.168.10.5"), Type: rdma.GIDTypeRoCEv1, Netdev: "eth2"}}
	ok, detail, fix := why(topo, rdma.Endpoint{Device: "mlx5_0", Port: 1, GIDIndex: 2, GID: p.GIDs[0].GID, GIDType: rdma.GIDTypeRoCEv1, Netdev: "eth2", LinkLayer: rdma.LinkLayerEthernet})
	if ok || !strings.Contains(detail, "no RoCE v2 entry") || !strings.Contains(fix, "default_roce_mode") {
		t.Errorf("v1 only: ok %v, %q, fix %q", ok, detail, fix)
	}
}

func TestParseSystem(t *testing.T) {
	for in, w := range map[string]System{
		"netns shared copy-on-fork on\n":   {NetnsMode: "shared", CopyOnFork: "on"},
		"netns exclusive copy-on-fork off": {NetnsMode: "exclusive", CopyOnFork: "off"},
		"netns shared\n":                   {NetnsMode: "shared"},
	} {
		s, err := parseSystem(in)
		if err != nil || s != w {
			t.Errorf("parseSystem(%q) = %+v, %v; want %+v", in, s, err, w)
		}
	}
	if _, err := parseSystem("Failed to open NETLINK_RDMA socket"); err == nil {
		t.Error("parseSystem accepted garbage")
	}
}
