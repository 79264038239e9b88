package rdma

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeMapper answers as rdmamap would on a fixture.
type fakeMapper struct {
	devs []string
	of   map[string]string // netdev -> device; absent: rdmamap finds none
	err  error             // returned for every netdev, if set
}

func (f fakeMapper) devices() []string { return f.devs }

func (f fakeMapper) deviceFor(nd string) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	if d, ok := f.of[nd]; ok {
		return d, nil
	}
	return "", fmt.Errorf("rdma: rdmamap %s: %w: rdmamap finds no RDMA device serving netdev %s", nd, ErrAddrNotServed, nd)
}

func fixtureNetdevs(t *testing.T, fx string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("testdata", fx, classNet))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestCheckMapping(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		m       fakeMapper
		bad     []string // in the error; none: agreement
	}{
		{"softroce", fakeMapper{devs: []string{"rxe1", "rxe0"}, of: map[string]string{"eth0": "rxe0", "eth1": "rxe1"}}, nil},
		{"connectx", fakeMapper{devs: []string{"mlx5_0", "mlx5_1"}, of: map[string]string{"eth2": "mlx5_0", "eth2.100": "mlx5_0", "eth3": "mlx5_1"}}, nil},
		{"bond", fakeMapper{devs: []string{"mlx5_bond_0"}, of: map[string]string{"bond0": "mlx5_bond_0"}}, nil},
		// rdmamap matches the node GUID against the port GUID in the IPoIB
		// hardware address: mlx4's port GUIDs are not its node GUID.
		{"ipoib", fakeMapper{devs: []string{"mlx4_0", "mlx5_2"}, of: map[string]string{"ib0": "mlx5_2"}}, nil},
		{"nordma", fakeMapper{}, nil},
		// Disagreements.
		{"ipoib", fakeMapper{devs: []string{"mlx4_0", "mlx5_2"}}, []string{"netdev ib0: sysfs reader mlx5_2, rdmamap none"}},
		{"softroce", fakeMapper{devs: []string{"rxe0"}, of: map[string]string{"eth0": "rxe0", "eth1": "rxe1"}}, []string{`devices: sysfs reader ["rxe0" "rxe1"], rdmamap ["rxe0"]`}},
		{"connectx", fakeMapper{devs: []string{"mlx5_0", "mlx5_1"}, of: map[string]string{"eth2": "mlx5_0", "eth2.100": "mlx5_1", "eth3": "mlx5_1", "eth9": "mlx5_0"}},
			[]string{"netdev eth2.100: sysfs reader mlx5_0, rdmamap mlx5_1", "netdev eth9: sysfs reader none, rdmamap mlx5_0"}},
	} {
		err := checkMapping(readFixture(t, tc.fixture), fixtureNetdevs(t, tc.fixture), tc.m)
		if len(tc.bad) == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.fixture, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: agreement, want %q", tc.fixture, tc.bad)
			continue
		}
		for _, s := range tc.bad {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q does not contain %q", tc.fixture, err, s)
			}
		}
	}
	// An error other than "no device" is passed on.
	boom := errors.New("boom")
	err := checkMapping(readFixture(t, "softroce"), []string{"eth0"}, fakeMapper{devs: []string{"rxe0", "rxe1"}, err: boom})
	if !errors.Is(err, boom) {
		t.Errorf("mapper error: %v, want boom", err)
	}
}

func TestDeviceForNetdevErrors(t *testing.T) {
	_, err := DeviceForNetdev("no-such-netdev0")
	if !errors.Is(err, ErrAddrNotLocal) || !errors.Is(err, unix.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "no network interface named no-such-netdev0") {
		t.Errorf("DeviceForNetdev(no-such-netdev0): %v", err)
	}
	if hasLiveDevices() {
		return
	}
	// No RDMA here: rdmamap's "" becomes an error naming the netdev.
	_, err = DeviceForNetdev("lo")
	if !errors.Is(err, ErrAddrNotServed) || !errors.Is(err, unix.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "no RDMA device serving netdev lo") {
		t.Errorf("DeviceForNetdev(lo): %v", err)
	}
}

func hasLiveDevices() bool {
	ents, _ := os.ReadDir("/sys/class/infiniband")
	return len(ents) > 0
}
