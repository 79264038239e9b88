package rdma

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Paths below the root, in io/fs form (slash-separated, no leading slash).
const (
	classInfiniBand = "sys/class/infiniband"
	classNet        = "sys/class/net"
	rdmaCMNode      = "dev/infiniband/rdma_cm"
)

// Sysfs reads the RDMA topology from sysfs below a root directory: Root "/"
// (or "") reads the live system, a fixture directory laid out like / reads
// that. Paths read, relative to Root:
//
//	sys/class/infiniband/<dev>/{node_type,node_guid}
//	sys/class/infiniband/<dev>/ports/<n>/{state,phys_state,link_layer}
//	sys/class/infiniband/<dev>/ports/<n>/gids/<k>
//	sys/class/infiniband/<dev>/ports/<n>/gid_attrs/{types,ndevs}/<k>
//	sys/class/net/<netdev>/lower_*              (VLAN parent, bond slaves)
//	sys/class/net/<netdev>/device/infiniband/*  (IPoIB)
//	sys/class/net/<netdev>/{dev_port,dev_id}
//	dev/infiniband/rdma_cm
//
// Symbolic links are followed, as in sysfs itself; a fixture's links must be
// relative.
type Sysfs struct {
	Root string
}

func (s Sysfs) root() string {
	if s.Root == "" {
		return "/"
	}
	return s.Root
}

// ReadTopology is Sysfs{Root: root}.ReadTopology().
func ReadTopology(root string) (*Topology, error) {
	return Sysfs{Root: root}.ReadTopology()
}

// ReadTopology reads every RDMA device, port and valid GID entry, and which
// netdevs the ports serve. A host with no /sys/class/infiniband (no RDMA
// support in its kernel) has an empty topology, not an error; the absence of
// the rdma_cm device node is recorded in Topology.RDMACM, not an error, so
// that devices can be listed where librdmacm cannot run.
//
// GID entries that are all zeros are unused and skipped, and so are those
// whose gid_attrs/types file cannot be read (the kernel answers EINVAL for an
// entry that is unused or just went away). A missing gid_attrs directory
// (kernels before RoCE v2) gives IB entries on InfiniBand ports and RoCE v1
// entries on Ethernet ports.
//
// Errors: one matching ErrTopology (and unix.ENETDOWN) naming the file,
// when a file every device or port has cannot be read (the device went away
// while it was read; the read's error is wrapped too) or holds text sysfs
// never writes (the message says what was expected).
func (s Sysfs) ReadTopology() (*Topology, error) {
	return readTopology(os.DirFS(s.root()), s.root())
}

// CheckRDMACM reports whether the rdma_cm device node exists below the root.
//
// Errors: one matching ErrNoRDMA (and unix.ENETDOWN), "rdma: check
// /dev/infiniband/rdma_cm: no RDMA subsystem: /dev/infiniband/rdma_cm not
// present (expected ...)", wrapping the stat error.
func (s Sysfs) CheckRDMACM() error {
	if _, err := fs.Stat(os.DirFS(s.root()), rdmaCMNode); err != nil {
		return errNoRDMACM("check", "/"+rdmaCMNode, err)
	}
	return nil
}

// errNoRDMACM is the error of a host without the rdma_cm device node; input
// is what was asked (an address, or the node's path).
func errNoRDMACM(op, input string, cause error) error {
	err := fmt.Errorf("rdma: %s %s: %w: /%s not present (expected the rdma_cm character device of a kernel with rdma_ucm loaded)", op, input, ErrNoRDMA, rdmaCMNode)
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// reader carries the file system and its root (for error messages).
type reader struct {
	fsys fs.FS
	root string
}

func (r reader) errf(p string, cause error, format string, args ...any) error {
	err := fmt.Errorf("rdma: topology %s: %w: %s", filepath.Join(r.root, filepath.FromSlash(p)), ErrTopology, fmt.Sprintf(format, args...))
	if cause != nil {
		err = fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// read returns the file's content without surrounding white space.
func (r reader) read(p string) (string, error) {
	b, err := fs.ReadFile(r.fsys, p)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// mustRead reads a file that must exist.
func (r reader) mustRead(p string) (string, error) {
	s, err := r.read(p)
	if err != nil {
		return "", r.errf(p, err, "cannot read %s (did the device go away?)", path.Base(p))
	}
	return s, nil
}

// numbered parses sysfs's "4: ACTIVE" and returns "ACTIVE".
func (r reader) numbered(p, s, example string) (string, error) {
	num, name, ok := strings.Cut(s, ":")
	name = strings.TrimSpace(name)
	if _, err := strconv.Atoi(strings.TrimSpace(num)); !ok || err != nil || name == "" {
		return "", r.errf(p, nil, "%q: expected a number, a colon and a name, like %q", s, example)
	}
	return name, nil
}

func readTopology(fsys fs.FS, root string) (*Topology, error) {
	r := reader{fsys: fsys, root: root}
	t := &Topology{Devices: []Device{}, Netdevs: []Netdev{}}
	_, err := fs.Stat(fsys, rdmaCMNode)
	t.RDMACM = err == nil

	ents, err := fs.ReadDir(fsys, classInfiniBand)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, r.errf(classInfiniBand, err, "cannot list RDMA devices")
	}
	for _, e := range ents {
		d, err := r.readDevice(e.Name())
		if err != nil {
			return nil, err
		}
		t.Devices = append(t.Devices, d)
	}
	if err := r.readNetdevs(t); err != nil {
		return nil, err
	}
	return t, nil
}

func (r reader) readDevice(name string) (Device, error) {
	dir := path.Join(classInfiniBand, name)
	d := Device{Name: name, Ports: []Port{}}
	p := path.Join(dir, "node_type")
	s, err := r.mustRead(p)
	if err != nil {
		return d, err
	}
	if d.NodeType, err = r.numbered(p, s, "1: CA"); err != nil {
		return d, err
	}
	// node_guid is there on every device; tolerate its absence in fixtures.
	d.NodeGUID, _ = r.read(path.Join(dir, "node_guid"))

	pdir := path.Join(dir, "ports")
	ents, err := fs.ReadDir(r.fsys, pdir)
	if err != nil {
		return d, r.errf(pdir, err, "cannot list the ports of %s (did the device go away?)", name)
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n < 1 {
			return d, r.errf(path.Join(pdir, e.Name()), nil, "port directory %q: expected a port number from 1", e.Name())
		}
		port, err := r.readPort(path.Join(pdir, e.Name()), n)
		if err != nil {
			return d, err
		}
		d.Ports = append(d.Ports, port)
	}
	slices.SortFunc(d.Ports, func(a, b Port) int { return a.Number - b.Number })
	return d, nil
}

func (r reader) readPort(dir string, n int) (Port, error) {
	p := Port{Number: n, GIDs: []GIDEntry{}, Netdevs: []string{}}
	f := path.Join(dir, "state")
	s, err := r.mustRead(f)
	if err != nil {
		return p, err
	}
	if p.State, err = r.numbered(f, s, "4: ACTIVE"); err != nil {
		return p, err
	}
	f = path.Join(dir, "phys_state")
	if s, err := r.read(f); err == nil {
		if p.PhysState, err = r.numbered(f, s, "5: LinkUp"); err != nil {
			return p, err
		}
	}
	// Kernels before link_layer existed had InfiniBand only.
	p.LinkLayer = LinkLayerInfiniBand
	f = path.Join(dir, "link_layer")
	if s, err := r.read(f); err == nil {
		switch LinkLayer(s) {
		case LinkLayerInfiniBand, LinkLayerEthernet:
			p.LinkLayer = LinkLayer(s)
		default:
			return p, r.errf(f, nil, "link layer %q: expected InfiniBand or Ethernet", s)
		}
	}

	gdir := path.Join(dir, "gids")
	ents, err := fs.ReadDir(r.fsys, gdir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return p, r.errf(gdir, err, "cannot list the GID table (did the device go away?)")
	}
	for _, e := range ents {
		k, err := strconv.Atoi(e.Name())
		if err != nil || k < 0 {
			continue
		}
		g, ok, err := r.readGID(dir, k, p.LinkLayer)
		if err != nil {
			return p, err
		}
		if ok {
			p.GIDs = append(p.GIDs, g)
		}
	}
	slices.SortFunc(p.GIDs, func(a, b GIDEntry) int { return a.Index - b.Index })
	for _, g := range p.GIDs {
		if g.Netdev != "" && !slices.Contains(p.Netdevs, g.Netdev) {
			p.Netdevs = append(p.Netdevs, g.Netdev)
		}
	}
	return p, nil
}

// readGID reads entry k of the GID table of the port in dir. ok is false for
// an unused entry.
func (r reader) readGID(dir string, k int, ll LinkLayer) (g GIDEntry, ok bool, err error) {
	idx := strconv.Itoa(k)
	f := path.Join(dir, "gids", idx)
	s, err := r.read(f)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return g, false, nil // the table shrank under us
		}
		return g, false, r.errf(f, err, "cannot read GID %d", k)
	}
	gid, err := netip.ParseAddr(s)
	if err != nil || !gid.Is6() || gid.Zone() != "" {
		return g, false, r.errf(f, err, "GID %q: expected 16 bytes in eight groups of hex digits, like fe80:0000:0000:0000:5054:00ff:fe12:3456", s)
	}
	if gid.IsUnspecified() {
		return g, false, nil // unused entry
	}
	g = GIDEntry{Index: k, GID: gid}

	f = path.Join(dir, "gid_attrs", "types", idx)
	s, err = r.read(f)
	switch {
	case err == nil:
		if g.Type, err = parseGIDType(s, ll); err != nil {
			return g, false, r.errf(f, err, "GID type %q: expected \"IB/RoCE v1\" or \"RoCE v2\"", s)
		}
	case errors.Is(err, fs.ErrNotExist):
		// No gid_attrs: a kernel from before RoCE v2.
		g.Type = GIDTypeRoCEv1
		if ll == LinkLayerInfiniBand {
			g.Type = GIDTypeIB
		}
	default:
		// EINVAL: the entry is unused, or was deleted since gids/k was read.
		return g, false, nil
	}
	// InfiniBand entries have no netdev: reading ndevs/k gives EINVAL.
	g.Netdev, _ = r.read(path.Join(dir, "gid_attrs", "ndevs", idx))
	return g, true, nil
}

// parseGIDType maps sysfs's text to a GIDType. The kernel writes "IB/RoCE v1"
// for both IB and RoCE v1 GIDs: the link layer tells which.
func parseGIDType(s string, ll LinkLayer) (GIDType, error) {
	switch s {
	case "IB/RoCE v1":
		if ll == LinkLayerInfiniBand {
			return GIDTypeIB, nil
		}
		return GIDTypeRoCEv1, nil
	case "RoCE v2":
		return GIDTypeRoCEv2, nil
	}
	return 0, errors.New("unknown GID type")
}

// readNetdevs fills t.Netdevs and the device-link part of each Port.Netdevs.
func (r reader) readNetdevs(t *Topology) error {
	ents, err := fs.ReadDir(r.fsys, classNet)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r.errf(classNet, err, "cannot list network interfaces")
	}
	direct := map[string][]PortRef{}
	lower := map[string][]string{}
	var names []string
	add := func(nd string, ref PortRef) {
		if !slices.Contains(direct[nd], ref) {
			direct[nd] = append(direct[nd], ref)
		}
	}
	// GID entries name the netdevs of RoCE ports (those of other network
	// namespaces too, which sys/class/net does not list).
	for _, d := range t.Devices {
		for _, p := range d.Ports {
			for _, nd := range p.Netdevs {
				add(nd, PortRef{Device: d.Name, Port: p.Number})
				if !slices.Contains(names, nd) {
					names = append(names, nd)
				}
			}
		}
	}
	for _, e := range ents {
		nd := e.Name()
		if !slices.Contains(names, nd) {
			names = append(names, nd)
		}
		dir := path.Join(classNet, nd)
		files, err := fs.ReadDir(r.fsys, dir)
		if err != nil {
			continue // the interface went away
		}
		for _, f := range files {
			if l, ok := strings.CutPrefix(f.Name(), "lower_"); ok {
				lower[nd] = append(lower[nd], l)
			}
		}
		devs, err := fs.ReadDir(r.fsys, path.Join(dir, "device", "infiniband"))
		if err != nil {
			continue // not a netdev of an RDMA function
		}
		for _, de := range devs {
			d, ok := t.Device(de.Name())
			if !ok {
				continue
			}
			n, ok := r.netdevPort(dir, d)
			if !ok {
				continue
			}
			// Only IPoIB takes its port from the parent device. An
			// Ethernet function's netdev is served as its GID entries
			// say: under RoCE LAG the function of a bond slave holds
			// the bond's device, whose GIDs name the bond, not the slave.
			p, _ := d.Port(n)
			if p.LinkLayer != LinkLayerInfiniBand {
				continue
			}
			add(nd, PortRef{Device: d.Name, Port: n})
			if !slices.Contains(p.Netdevs, nd) {
				p.Netdevs = append(p.Netdevs, nd)
			}
		}
	}

	slices.Sort(names)
	for _, nd := range names {
		ports := served(nd, direct, lower, nil)
		if len(ports) == 0 {
			continue
		}
		t.Netdevs = append(t.Netdevs, Netdev{Name: nd, Ports: ports, Lower: lower[nd]})
	}
	return nil
}

// netdevPort returns the port of d that the netdev in dir belongs to: dev_port
// counts ports from 0 (IPoIB since Linux 3.15, and RoCE functions); older
// kernels put the same number, in hex, in dev_id.
func (r reader) netdevPort(dir string, d *Device) (int, bool) {
	n := -1
	if s, err := r.read(path.Join(dir, "dev_port")); err == nil {
		if v, err := strconv.Atoi(s); err == nil {
			n = v + 1
		}
	}
	if n < 0 {
		if s, err := r.read(path.Join(dir, "dev_id")); err == nil {
			if v, err := strconv.ParseInt(s, 0, 32); err == nil {
				n = int(v) + 1
			}
		}
	}
	if _, ok := d.Port(n); ok {
		return n, true
	}
	if len(d.Ports) == 1 {
		return d.Ports[0].Number, true
	}
	return 0, false
}

// served returns the ports behind nd: its own, then its lower devices'.
func served(nd string, direct map[string][]PortRef, lower map[string][]string, seen []string) []PortRef {
	if slices.Contains(seen, nd) {
		return nil
	}
	seen = append(seen, nd)
	out := slices.Clone(direct[nd])
	for _, l := range lower[nd] {
		for _, ref := range served(l, direct, lower, seen) {
			if !slices.Contains(out, ref) {
				out = append(out, ref)
			}
		}
	}
	return out
}
