package rdma

// This file is the only one that calls github.com/Mellanox/rdmamap. rdmamap
// reads the real /sys (its paths are package variables, not a root), and
// answers nil or "" where it failed: every answer is turned into a real error
// here. Every call holds rdmamapMu, so that ReadPortCounters may point
// rdmamap.RdmaClassDir at a fixture's root for the length of its call
// without another call reading the wrong tree.

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/Mellanox/rdmamap"
)

// DeviceForNetdev returns the RDMA device that serves netdev on the live
// system, as github.com/Mellanox/rdmamap finds it: for an Ethernet netdev
// the first device with a GID entry naming it, for an IPoIB netdev the
// device whose node GUID is the port GUID in the netdev's hardware address.
// It exists to cross-check the sysfs reader (see CheckLiveMapping);
// resolution does not use it.
//
// Errors, each naming netdev and matching unix.EADDRNOTAVAIL:
// ErrAddrNotLocal when no network interface has that name (with the lookup's
// error as the cause); ErrAddrNotServed when rdmamap finds no device for it
// (with rdmamap's own error, if it gave one, as the cause).
func DeviceForNetdev(netdev string) (string, error) {
	if _, err := net.InterfaceByName(netdev); err != nil {
		return "", fmt.Errorf("rdma: rdmamap %s: %w: no network interface named %s (expected a netdev of this network namespace): %w", netdev, ErrAddrNotLocal, netdev, err)
	}
	rdmamapMu.Lock()
	dev, rerr := rdmamap.GetRdmaDeviceForNetdevice(netdev)
	rdmamapMu.Unlock()
	if dev == "" {
		err := fmt.Errorf("rdma: rdmamap %s: %w: rdmamap finds no RDMA device serving netdev %s", netdev, ErrAddrNotServed, netdev)
		if rerr != nil {
			err = fmt.Errorf("%w: %w", err, rerr)
		}
		return "", err
	}
	return dev, nil
}

// liveMapper is the rdmamap side of CheckLiveMapping.
type liveMapper struct{}

func (liveMapper) devices() []string {
	rdmamapMu.Lock()
	defer rdmamapMu.Unlock()
	return rdmamap.GetRdmaDeviceList()
}

func (liveMapper) deviceFor(netdev string) (string, error) { return DeviceForNetdev(netdev) }

// rdmamapMu is held around every call of rdmamap (see the top of the file).
var rdmamapMu sync.Mutex

// ReadPortCounters reads the counters of port n of device dev below s's
// root, with rdmamap's GetRdmaSysfsStats (ports/<n>/counters) and
// GetRdmaSysfsHwStats (ports/<n>/hw_counters). A port without one of the
// two directories has no counters of that kind (rxe has no counters/: no
// PMA); one without both has none at all, which is not an error. rdmamap
// reads a counter file it cannot read or parse as 0; it is reported so.
//
// rdmamap reads below its package variable RdmaClassDir, which this
// function sets to <root>/sys/class/infiniband for the call. (Its
// GetRdmaSysfsAllPortsStats is not used: when a port has hw_counters but no
// counters, as rxe's, it returns the port as port 0 and drops the error.)
//
// Errors: one matching ErrTopology (and unix.ENETDOWN) naming the port's
// directory when it does not exist (no such device or port, or it went
// away) or a counter directory cannot be listed for another reason than its
// absence.
func (s Sysfs) ReadPortCounters(dev string, n int) (Counters, error) {
	r := reader{fsys: os.DirFS(s.root()), root: s.root()}
	pdir := path.Join(classInfiniBand, dev, "ports", fmt.Sprint(n))
	if st, err := fs.Stat(r.fsys, pdir); err != nil || !st.IsDir() {
		if err == nil {
			err = fs.ErrInvalid
		}
		return Counters{}, r.errf(pdir, err, "no port %d of %s (did the device go away?)", n, dev)
	}
	rdmamapMu.Lock()
	defer rdmamapMu.Unlock()
	defer func(old string) { rdmamap.RdmaClassDir = old }(rdmamap.RdmaClassDir)
	rdmamap.RdmaClassDir = filepath.Join(s.root(), filepath.FromSlash(classInfiniBand))
	var c Counters
	for _, g := range []struct {
		dir  string
		read func(string, int) ([]rdmamap.RdmaStatEntry, error)
		into *map[string]uint64
	}{
		{rdmamap.RdmaCountersDir, rdmamap.GetRdmaSysfsStats, &c.PMA},
		{rdmamap.RdmaHwCountersDir, rdmamap.GetRdmaSysfsHwStats, &c.HW},
	} {
		ents, err := g.read(dev, n)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return Counters{}, r.errf(path.Join(pdir, g.dir), err, "cannot list the counters")
		}
		m := make(map[string]uint64, len(ents))
		for _, e := range ents {
			if e.Name != "lifespan" {
				m[e.Name] = e.Value
			}
		}
		*g.into = m
	}
	return c, nil
}

// mapper answers which devices exist and which one serves a netdev.
type mapper interface {
	devices() []string
	deviceFor(netdev string) (string, error)
}

// CheckLiveMapping reads the live topology (ReadTopology("/")) and checks
// that rdmamap agrees with it: the same device names, and for every netdev
// in /sys/class/net the device rdmamap names is one that serves the netdev
// directly in the topology (a GID entry names it, or it is the IPoIB netdev
// of the port), or rdmamap names none where the topology has none. An IPoIB
// netdev of a port whose GUID differs from the node GUID (the second port
// of a dual-port HCA) is one rdmamap cannot map; "none" is accepted there.
//
// Errors: those of ReadTopology; a plain error listing every disagreement;
// the error of listing /sys/class/net.
func CheckLiveMapping() error {
	t, err := ReadTopology("/")
	if err != nil {
		return err
	}
	ents, err := os.ReadDir("/" + classNet)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rdma: list /%s: %w", classNet, err)
	}
	netdevs := make([]string, 0, len(ents))
	for _, e := range ents {
		netdevs = append(netdevs, e.Name())
	}
	return checkMapping(t, netdevs, liveMapper{})
}

func checkMapping(t *Topology, netdevs []string, m mapper) error {
	var bad []string
	var names []string
	for _, d := range t.Devices {
		names = append(names, d.Name)
	}
	got := slices.Clone(m.devices())
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		bad = append(bad, fmt.Sprintf("devices: sysfs reader %q, rdmamap %q", names, got))
	}
	for _, nd := range netdevs {
		want, guidMismatchOnly := directDevices(t, nd)
		dev, err := m.deviceFor(nd)
		if err != nil {
			if !errors.Is(err, ErrAddrNotServed) && !errors.Is(err, ErrAddrNotLocal) {
				return err
			}
			dev = ""
		}
		switch {
		case dev == "" && len(want) == 0:
		case dev == "" && guidMismatchOnly:
		case dev != "" && slices.Contains(want, dev):
		default:
			w := "none"
			if len(want) > 0 {
				w = strings.Join(want, " or ")
			}
			g := dev
			if g == "" {
				g = "none"
			}
			bad = append(bad, fmt.Sprintf("netdev %s: sysfs reader %s, rdmamap %s", nd, w, g))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("rdma: the sysfs reader and rdmamap disagree: %s", strings.Join(bad, "; "))
	}
	return nil
}

// directDevices returns the devices with a port that serves nd directly.
// guidMismatchOnly reports that all of them are InfiniBand ports whose port
// GUID is not the node GUID, which rdmamap cannot map.
func directDevices(t *Topology, nd string) (devs []string, guidMismatchOnly bool) {
	guidMismatchOnly = true
	for _, d := range t.Devices {
		for _, p := range d.Ports {
			if !slices.Contains(p.Netdevs, nd) {
				continue
			}
			if !slices.Contains(devs, d.Name) {
				devs = append(devs, d.Name)
			}
			if p.LinkLayer != LinkLayerInfiniBand || portGUIDIsNodeGUID(&d, &p) {
				guidMismatchOnly = false
			}
		}
	}
	return devs, guidMismatchOnly && len(devs) > 0
}

func portGUIDIsNodeGUID(d *Device, p *Port) bool {
	g, ok := p.GID(0)
	if !ok {
		return false
	}
	b := g.GID.As16()
	guid := strings.ReplaceAll(d.NodeGUID, ":", "")
	return strings.EqualFold(guid, fmt.Sprintf("%x", b[8:]))
}
