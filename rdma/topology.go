package rdma

import (
	"fmt"
	"net/netip"
)

// Topology is a snapshot of the host's RDMA devices, their ports and GID
// tables, and of the network interfaces (netdevs) those ports serve. It is
// plain data: Sysfs.ReadTopology fills it from sysfs, tests may build one by
// hand, and the CLI prints it as JSON. A Topology does not change once read;
// read a new one to see hot-plugged devices or new addresses' GIDs.
type Topology struct {
	// Devices lists the RDMA devices (/sys/class/infiniband/*), by name.
	Devices []Device `json:"devices"`
	// Netdevs lists the network interfaces that at least one RDMA port
	// serves, by name, with the ports behind each (see Netdev).
	Netdevs []Netdev `json:"netdevs"`
	// RDMACM reports whether the rdma_cm device node
	// (/dev/infiniband/rdma_cm) was present when the topology was read.
	// Without it librdmacm cannot work, and Resolve fails with ErrNoRDMA.
	RDMACM bool `json:"rdma_cm"`
}

// Device is one RDMA device: an HCA function (mlx5_0), a bonded function
// (mlx5_bond_0) or a software device (rxe0).
type Device struct {
	// Name is the kernel's name of the device, as in /sys/class/infiniband.
	Name string `json:"name"`
	// NodeType is the node type without its number: "CA" for HCAs and
	// SoftRoCE, "RNIC" for iWARP, "switch", "router".
	NodeType string `json:"node_type"`
	// NodeGUID is the node GUID as sysfs spells it, four groups of four
	// hex digits ("248a:0703:0049:d4f0").
	NodeGUID string `json:"node_guid"`
	// Ports lists the device's ports by number, from 1.
	Ports []Port `json:"ports"`
}

// Port is one port of a Device.
type Port struct {
	// Number is the port number, from 1.
	Number int `json:"number"`
	// State is the logical port state without its number: "DOWN", "INIT",
	// "ARMED", "ACTIVE" or "ACTIVE_DEFER". Only ACTIVE ports carry traffic.
	State string `json:"state"`
	// PhysState is the physical state without its number: "LinkUp",
	// "Disabled", "Polling"...
	PhysState string `json:"phys_state"`
	// LinkLayer is InfiniBand or Ethernet (RoCE).
	LinkLayer LinkLayer `json:"link_layer"`
	// GIDs is the port's GID table, valid entries only, by index.
	GIDs []GIDEntry `json:"gids"`
	// Netdevs lists the netdevs this port serves directly: on Ethernet the
	// netdevs named by its GID entries, in GID index order; on InfiniBand
	// the IPoIB netdevs whose parent device holds this device and port. The
	// first one is the port's main netdev.
	Netdevs []string `json:"netdevs"`
	// Counters are the port's counters, when they were read
	// (Sysfs.AddCounters: ReadTopology leaves them nil).
	Counters *Counters `json:"counters,omitempty"`
}

// PortStateActive is the State of a port that carries traffic.
const PortStateActive = "ACTIVE"

// Active reports whether the port is ACTIVE.
func (p *Port) Active() bool { return p.State == PortStateActive }

// GID returns the valid GID entry at index, if there is one.
func (p *Port) GID(index int) (GIDEntry, bool) {
	for _, g := range p.GIDs {
		if g.Index == index {
			return g, true
		}
	}
	return GIDEntry{}, false
}

// LinkLayer is the link layer of a port, as sysfs names it.
type LinkLayer string

// The link layers of RDMA ports.
const (
	LinkLayerInfiniBand LinkLayer = "InfiniBand"
	LinkLayerEthernet   LinkLayer = "Ethernet"
)

// GIDType is the type of a GID table entry: IB on InfiniBand ports, RoCE v1
// or RoCE v2 on Ethernet ports. The zero value means no GID (a wildcard
// Endpoint has none).
type GIDType uint8

// The GID types. sysfs writes "IB/RoCE v1" for both IB and RoCE v1 (the
// kernel's types share a value); the port's link layer tells them apart.
const (
	GIDTypeIB GIDType = iota + 1
	GIDTypeRoCEv1
	GIDTypeRoCEv2
)

// String returns "IB", "RoCEv1", "RoCEv2", or "" for the zero value.
func (t GIDType) String() string {
	switch t {
	case 0:
		return ""
	case GIDTypeIB:
		return "IB"
	case GIDTypeRoCEv1:
		return "RoCEv1"
	case GIDTypeRoCEv2:
		return "RoCEv2"
	}
	return fmt.Sprintf("GIDType(%d)", uint8(t))
}

// MarshalText encodes t as its String.
func (t GIDType) MarshalText() ([]byte, error) {
	if t > GIDTypeRoCEv2 {
		return nil, fmt.Errorf("rdma: GID type %d: expected IB, RoCEv1 or RoCEv2", uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText decodes "IB", "RoCEv1", "RoCEv2" or "". It returns an error
// naming the text for anything else.
func (t *GIDType) UnmarshalText(b []byte) error {
	switch string(b) {
	case "":
		*t = 0
	case "IB":
		*t = GIDTypeIB
	case "RoCEv1":
		*t = GIDTypeRoCEv1
	case "RoCEv2":
		*t = GIDTypeRoCEv2
	default:
		return fmt.Errorf("rdma: GID type %q: expected IB, RoCEv1 or RoCEv2", b)
	}
	return nil
}

// GIDEntry is one valid entry of a port's GID table.
type GIDEntry struct {
	// Index is the entry's index in the table (the "GID index" that verbs
	// and perftest's -x take).
	Index int `json:"index"`
	// GID is the 16-byte GID as an IPv6 address: an IPv4-mapped address
	// (::ffff:10.77.0.1) for an IPv4 RoCE GID, the IPv6 address itself for
	// an IPv6 one, subnet prefix and port GUID on InfiniBand.
	GID netip.Addr `json:"gid"`
	// Type is the entry's GID type.
	Type GIDType `json:"type"`
	// Netdev is the network interface the entry belongs to (RoCE), or ""
	// (InfiniBand entries have none).
	Netdev string `json:"netdev,omitempty"`
}

// Netdev is a network interface that RDMA ports serve.
type Netdev struct {
	// Name is the interface name.
	Name string `json:"name"`
	// Ports lists the RDMA ports behind the interface: those whose GID
	// entries name it, the one its parent device holds (IPoIB: ib0 ->
	// mlx5_2 port 1), and those behind its lower devices (a VLAN's parent, a
	// bond's slaves).
	Ports []PortRef `json:"ports"`
	// Lower lists the interface's lower devices (the parent of a VLAN, the
	// slaves of a bond), if any.
	Lower []string `json:"lower,omitempty"`
}

// PortRef names a port of a device.
type PortRef struct {
	Device string `json:"device"`
	Port   int    `json:"port"`
}

// String formats the reference as "mlx5_0 port 1".
func (r PortRef) String() string { return fmt.Sprintf("%s port %d", r.Device, r.Port) }

// Endpoint is what an IP address resolves to: the device, port and GID that
// a bind of the address uses.
type Endpoint struct {
	// Addr is the address resolved, without an IPv4-in-IPv6 mapping.
	Addr netip.Addr `json:"addr"`
	// Device and Port name the RDMA port.
	Device string `json:"device"`
	Port   int    `json:"port"`
	// GIDIndex is the index of the chosen GID entry. For the wildcard it is
	// -1: a wildcard bind holds no GID; each connection uses the GID of the
	// address its peer connects to.
	GIDIndex int `json:"gid_index"`
	// GID is the chosen GID (the zero Addr, printed "", for the wildcard).
	GID netip.Addr `json:"gid"`
	// GIDType is the chosen entry's type (zero for the wildcard).
	GIDType GIDType `json:"gid_type"`
	// Netdev is the interface that holds Addr; for the wildcard, the port's
	// main netdev ("" if it serves none).
	Netdev string `json:"netdev"`
	// LinkLayer is the port's link layer.
	LinkLayer LinkLayer `json:"link_layer"`
}

// Device returns the device named name, if there is one.
func (t *Topology) Device(name string) (*Device, bool) {
	for i := range t.Devices {
		if t.Devices[i].Name == name {
			return &t.Devices[i], true
		}
	}
	return nil, false
}

// Port returns the port that r names, if there is one.
func (t *Topology) Port(r PortRef) (*Port, bool) {
	d, ok := t.Device(r.Device)
	if !ok {
		return nil, false
	}
	return d.Port(r.Port)
}

// Port returns the port numbered n, if there is one.
func (d *Device) Port(n int) (*Port, bool) {
	for i := range d.Ports {
		if d.Ports[i].Number == n {
			return &d.Ports[i], true
		}
	}
	return nil, false
}

// Netdev returns the served netdev named name, if there is one.
func (t *Topology) Netdev(name string) (*Netdev, bool) {
	for i := range t.Netdevs {
		if t.Netdevs[i].Name == name {
			return &t.Netdevs[i], true
		}
	}
	return nil, false
}
