package rdma

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// inSoftRoCE reports whether the test runs in the guest of ci/softroce/run,
// where RDMA devices must exist.
func inSoftRoCE() bool { return os.Getenv("RDMABIND_SOFTROCE") == "1" }

// requireLiveDevices skips the test on a host without RDMA devices, and
// fails it in the SoftRoCE guest, where they must be.
func requireLiveDevices(t *testing.T) {
	t.Helper()
	if hasLiveDevices() {
		return
	}
	if inSoftRoCE() {
		t.Fatal("RDMABIND_SOFTROCE=1 but /sys/class/infiniband has no devices: the guest's rxe setup failed")
	}
	t.Skip("no RDMA devices in /sys/class/infiniband (this test runs in the SoftRoCE guest: go test -exec 'ci/softroce/run --nics 2 --' ./rdma/)")
}

// TestLive checks the sysfs reader against the live system: rdmamap agrees
// with it, and every address of a SoftRoCE netdev resolves to the GID entry
// that holds that very address.
func TestLive(t *testing.T) {
	requireLiveDevices(t)
	if err := CheckLiveMapping(); err != nil {
		t.Errorf("CheckLiveMapping: %v", err)
	}
	topo, err := ReadTopology("/")
	if err != nil {
		t.Fatal(err)
	}
	if !topo.RDMACM {
		t.Fatal("devices but no /dev/infiniband/rdma_cm: is rdma_ucm loaded?")
	}
	addrs, err := LiveAddrs()
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(topo, addrs)

	// The netdevs of software RDMA devices (rxe): their parent file.
	rxe := map[string]string{}
	for _, d := range topo.Devices {
		b, err := os.ReadFile(filepath.Join("/", classInfiniBand, d.Name, "parent"))
		if err == nil {
			rxe[strings.TrimSpace(string(b))] = d.Name
		}
	}
	if inSoftRoCE() && len(rxe) == 0 {
		t.Fatal("no rxe device (no parent file under /sys/class/infiniband/*)")
	}
	n := 0
	for _, na := range addrs.All() {
		dev, ok := rxe[na.Netdev]
		if !ok {
			continue
		}
		n++
		eps, err := r.Resolve(na.Addr)
		if err != nil {
			t.Errorf("Resolve(%s) on %s: %v", na.Addr, na.Netdev, err)
			continue
		}
		if len(eps) != 1 {
			t.Errorf("Resolve(%s): %d endpoints, want 1", na.Addr, len(eps))
			continue
		}
		e := eps[0]
		if e.Device != dev || e.Netdev != na.Netdev || e.LinkLayer != LinkLayerEthernet {
			t.Errorf("Resolve(%s) = %+v, want device %s netdev %s Ethernet", na.Addr, e, dev, na.Netdev)
		}
		if !na.Addr.IsLinkLocalUnicast() && e.GID.IsLinkLocalUnicast() {
			t.Errorf("Resolve(%s): link-local GID %s for a global address", na.Addr, e.GID)
		}
		// Read the chosen entry again, straight from sysfs.
		port := filepath.Join("/", classInfiniBand, e.Device, "ports", fmt.Sprint(e.Port))
		gid := readLiveGID(t, filepath.Join(port, "gids", fmt.Sprint(e.GIDIndex)))
		if want := gidOf(na.Addr); gid != want || e.GID != want {
			t.Errorf("Resolve(%s): index %d; sysfs has %s there, the endpoint %s; want %s", na.Addr, e.GIDIndex, gid, e.GID, want)
		}
		b, err := os.ReadFile(filepath.Join(port, "gid_attrs", "ndevs", fmt.Sprint(e.GIDIndex)))
		if err != nil || strings.TrimSpace(string(b)) != na.Netdev {
			t.Errorf("Resolve(%s): ndevs/%d = %q, %v; want %s", na.Addr, e.GIDIndex, b, err, na.Netdev)
		}
		t.Logf("%s on %s -> %s port %d GID %d %s %v", na.Addr, na.Netdev, e.Device, e.Port, e.GIDIndex, e.GID, e.GIDType)
	}
	if inSoftRoCE() && n == 0 {
		t.Errorf("no address on the rxe netdevs %v", rxe)
	}

	// The wildcard: every ACTIVE port.
	eps, err := r.Resolve(netip.IPv4Unspecified())
	if err != nil {
		t.Fatalf("Resolve(0.0.0.0): %v", err)
	}
	active := 0
	for _, d := range topo.Devices {
		for _, p := range d.Ports {
			if p.Active() {
				active++
			}
		}
	}
	if len(eps) != active {
		t.Errorf("Resolve(0.0.0.0): %d endpoints, want %d (the ACTIVE ports)", len(eps), active)
	}

	// The one-call form reads the same.
	for _, na := range addrs.All() {
		if _, ok := rxe[na.Netdev]; ok {
			got, err := Resolve(na.Addr)
			want, _ := r.Resolve(na.Addr)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Resolve(%s) = %+v, %v; the Resolver gave %+v", na.Addr, got, err, want)
			}
			break
		}
	}
}

func readLiveGID(t *testing.T, name string) netip.Addr {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netip.ParseAddr(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return a
}

// TestLiveMatchesSoftRoCEFixture checks that the softroce fixture is still
// what the guest has: every device of the fixture that the guest has reads
// the same (guest 1 of ci/softroce/run, whose addresses the fixture holds).
func TestLiveMatchesSoftRoCEFixture(t *testing.T) {
	if !inSoftRoCE() {
		t.Skip("runs in the SoftRoCE guest only (RDMABIND_SOFTROCE=1)")
	}
	if h := os.Getenv("RDMABIND_SOFTROCE_HOST"); h != "" && h != "1" {
		t.Skipf("guest %s: the fixture copies guest 1", h)
	}
	requireLiveDevices(t)
	fx := readFixture(t, "softroce")
	// The kernel fills a GID table as the netdev's addresses come (IPv6
	// link-local and DAD last): read again for a few seconds while it
	// differs (once a run met a transient table, index 0 and 1 alike).
	var diffs []string
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		live, err := ReadTopology("/")
		if err != nil {
			t.Fatal(err)
		}
		compared := 0
		diffs = nil
		for _, want := range fx.Devices {
			got, ok := live.Device(want.Name)
			if !ok {
				continue
			}
			compared++
			if !reflect.DeepEqual(*got, want) {
				diffs = append(diffs, fmt.Sprintf("%s:\nguest   %+v\nfixture %+v", want.Name, *got, want))
			}
		}
		if compared == 0 {
			t.Fatalf("the guest has none of the fixture's devices (guest: %d devices)", len(live.Devices))
		}
		if len(diffs) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, d := range diffs {
		t.Error(d)
	}
}
