package rdma

import (
	"fmt"
	"net/netip"
	"strings"
)

// Resolver maps IP addresses to Endpoints against an in-memory Topology and
// an AddrSource. NewResolver indexes the topology once; Resolve then reads
// no file and makes no system call beyond what the AddrSource does (none for
// an *AddrTable). A Resolver is safe for concurrent use as long as neither
// the Topology nor the AddrSource is modified.
type Resolver struct {
	topo  *Topology
	addrs AddrSource
	gids  map[netip.Addr][]gidLoc // RoCE GID -> entries holding it
	ports map[string][]portLoc    // netdev -> ports serving it
}

type portLoc struct{ dev, port int } // indexes into Topology.Devices and Ports

type gidLoc struct {
	portLoc
	entry int // index into Port.GIDs
}

// NewResolver returns a Resolver over t and addrs.
func NewResolver(t *Topology, addrs AddrSource) *Resolver {
	r := &Resolver{
		topo:  t,
		addrs: addrs,
		gids:  map[netip.Addr][]gidLoc{},
		ports: map[string][]portLoc{},
	}
	addPort := func(nd string, l portLoc) {
		for _, x := range r.ports[nd] {
			if x == l {
				return
			}
		}
		r.ports[nd] = append(r.ports[nd], l)
	}
	for di := range t.Devices {
		d := &t.Devices[di]
		for pi := range d.Ports {
			p := &d.Ports[pi]
			loc := portLoc{di, pi}
			for _, nd := range p.Netdevs {
				addPort(nd, loc)
			}
			if p.LinkLayer != LinkLayerEthernet {
				continue
			}
			for gi, g := range p.GIDs {
				key := g.GID.WithZone("")
				r.gids[key] = append(r.gids[key], gidLoc{loc, gi})
				if g.Netdev != "" {
					addPort(g.Netdev, loc)
				}
			}
		}
	}
	for _, nd := range t.Netdevs {
		for _, ref := range nd.Ports {
			if loc, ok := r.locate(ref); ok {
				addPort(nd.Name, loc)
			}
		}
	}
	return r
}

func (r *Resolver) locate(ref PortRef) (portLoc, bool) {
	for di := range r.topo.Devices {
		d := &r.topo.Devices[di]
		if d.Name != ref.Device {
			continue
		}
		for pi := range d.Ports {
			if d.Ports[pi].Number == ref.Port {
				return portLoc{di, pi}, true
			}
		}
	}
	return portLoc{}, false
}

func (r *Resolver) port(l portLoc) (*Device, *Port) {
	d := &r.topo.Devices[l.dev]
	return d, &d.Ports[l.port]
}

// Topology returns the topology the Resolver resolves against.
func (r *Resolver) Topology() *Topology { return r.topo }

// Resolve returns the Endpoint that a bind of addr uses: exactly one for a
// specific address, one per ACTIVE port of every device for the wildcard
// (0.0.0.0 or ::). How it chooses is described in the package documentation.
//
// Errors, each naming addr (and the netdev or port concerned) and matching
// one sentinel and its errno:
//   - ErrNoRDMA (unix.ENETDOWN): the rdma_cm device node is absent
//     (Topology.RDMACM is false);
//   - ErrNoDevice (unix.ENETDOWN): the wildcard was asked for and the host
//     has no RDMA device;
//   - ErrPortDown (unix.ENETDOWN): the wildcard was asked for and no port is
//     ACTIVE; the port that serves addr is not ACTIVE;
//   - ErrAddrNotLocal (unix.EADDRNOTAVAIL): addr is invalid (the zero
//     Addr), or no network interface of this host holds it;
//   - ErrAddrNotServed (unix.EADDRNOTAVAIL): addr is a loopback address; the
//     netdev holding addr is served by no RDMA device; or its RDMA port has
//     no GID entry for addr on that netdev.
func (r *Resolver) Resolve(addr netip.Addr) ([]Endpoint, error) {
	if !r.topo.RDMACM {
		return nil, errNoRDMACM("resolve", addr.String(), nil)
	}
	if !addr.IsValid() {
		return nil, resolveErr("invalid address", ErrAddrNotLocal,
			"the zero netip.Addr is not an IP address (expected an IPv4 or IPv6 address)")
	}
	a := addr.Unmap()
	if a.IsUnspecified() {
		return r.wildcard(a.WithZone(""))
	}
	if a.IsLoopback() {
		return nil, resolveErr(a.String(), ErrAddrNotServed,
			"%s is a loopback address, which no RDMA device serves (rdma_cm would take it as the wildcard and listen on every RDMA port); expected an address of an RDMA netdev, or %s for every port",
			a, wildcardFor(a))
	}
	netdev, ok := r.addrs.Lookup(a)
	if !ok {
		return nil, resolveErr(a.String(), ErrAddrNotLocal,
			"%s is not an address of this host (expected an address of one of its network interfaces, or %s for every RDMA port)",
			a, wildcardFor(a))
	}
	if isLinkLocal6(a) && a.Zone() == "" {
		a = a.WithZone(netdev)
	}
	served := r.ports[netdev]
	if len(served) == 0 {
		return nil, resolveErr(a.String(), ErrAddrNotServed,
			"%s is on netdev %s, which no RDMA device serves (expected an address of an RDMA netdev: %s)",
			a, netdev, r.servedList())
	}

	// Candidates: RoCE entries holding the address for this netdev, and
	// the port GID (index 0) of InfiniBand ports behind the netdev.
	var best Endpoint
	bestRank := -1
	var bestLoc portLoc
	consider := func(l portLoc, g GIDEntry) {
		d, p := r.port(l)
		rank := typeRank(g.Type)
		if p.Active() {
			rank += 10
		}
		if rank <= bestRank {
			return
		}
		bestRank, bestLoc = rank, l
		best = Endpoint{
			Addr: a, Device: d.Name, Port: p.Number,
			GIDIndex: g.Index, GID: g.GID, GIDType: g.Type,
			Netdev: netdev, LinkLayer: p.LinkLayer,
		}
	}
	global := !a.IsLinkLocalUnicast()
	for _, gl := range r.gids[gidOf(a)] {
		_, p := r.port(gl.portLoc)
		g := p.GIDs[gl.entry]
		if g.Netdev != netdev || (global && g.GID.IsLinkLocalUnicast()) {
			continue
		}
		consider(gl.portLoc, g)
	}
	for _, l := range served {
		_, p := r.port(l)
		if p.LinkLayer != LinkLayerInfiniBand {
			continue
		}
		if g, ok := p.GID(0); ok {
			consider(l, g)
		}
	}

	if bestRank < 0 {
		return nil, resolveErr(a.String(), ErrAddrNotServed,
			"%s is on netdev %s, served by %s, but no GID entry there holds %s for %s (expected the entry the kernel adds for each address of an RDMA netdev: was the address added a moment ago?)",
			a, netdev, r.refList(served), gidOf(a), netdev)
	}
	if _, p := r.port(bestLoc); !p.Active() {
		return nil, resolveErr(a.String(), ErrPortDown,
			"%s on netdev %s is served by %s port %d, which is %s (phys_state %s); expected an ACTIVE port",
			a, netdev, best.Device, best.Port, p.State, orUnknown(p.PhysState))
	}
	return []Endpoint{best}, nil
}

// wildcard returns one Endpoint per ACTIVE port.
func (r *Resolver) wildcard(a netip.Addr) ([]Endpoint, error) {
	n := 0
	for _, d := range r.topo.Devices {
		for _, p := range d.Ports {
			if p.Active() {
				n++
			}
		}
	}
	if n == 0 {
		if len(r.topo.Devices) == 0 {
			return nil, resolveErr(a.String(), ErrNoDevice,
				"/sys/class/infiniband lists none (expected at least one RDMA device on this host)")
		}
		var down []string
		for _, d := range r.topo.Devices {
			for _, p := range d.Ports {
				down = append(down, PortRef{d.Name, p.Number}.String()+" "+p.State)
			}
		}
		return nil, resolveErr(a.String(), ErrPortDown,
			"no RDMA port is ACTIVE (%s); expected at least one", strings.Join(down, ", "))
	}
	out := make([]Endpoint, 0, n)
	for _, d := range r.topo.Devices {
		for _, p := range d.Ports {
			if !p.Active() {
				continue
			}
			e := Endpoint{Addr: a, Device: d.Name, Port: p.Number, GIDIndex: -1, LinkLayer: p.LinkLayer}
			if len(p.Netdevs) > 0 {
				e.Netdev = p.Netdevs[0]
			}
			out = append(out, e)
		}
	}
	return out, nil
}

// gidOf returns the RoCE GID of a: the IPv4-mapped address for IPv4, the
// address itself (without zone) for IPv6.
func gidOf(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom16(a.As16())
	}
	return a.WithZone("")
}

// typeRank orders GID types: RoCE v2 first (the kernel's default GID type
// for RoCE ports that support it), then v1, then IB.
func typeRank(t GIDType) int {
	switch t {
	case GIDTypeRoCEv2:
		return 3
	case GIDTypeRoCEv1:
		return 2
	case GIDTypeIB:
		return 1
	}
	return 0
}

func wildcardFor(a netip.Addr) string {
	if a.Is4() {
		return "0.0.0.0"
	}
	return "::"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// servedList lists the served netdevs, for error messages.
func (r *Resolver) servedList() string {
	var b []string
	for _, nd := range r.topo.Netdevs {
		refs := make([]string, len(nd.Ports))
		for i, ref := range nd.Ports {
			refs[i] = ref.String()
		}
		b = append(b, nd.Name+" ("+strings.Join(refs, ", ")+")")
	}
	if len(b) == 0 {
		return "none here"
	}
	return strings.Join(b, ", ")
}

func (r *Resolver) refList(ls []portLoc) string {
	b := make([]string, len(ls))
	for i, l := range ls {
		d, p := r.port(l)
		b[i] = PortRef{d.Name, p.Number}.String()
	}
	return strings.Join(b, ", ")
}

// Resolve resolves addr on the live system: it reads the topology from
// /sys, takes a snapshot of the host's addresses and resolves against both.
// It costs a sysfs walk per call; a caller resolving often keeps a Resolver.
//
// Errors: those of ReadTopology and Resolver.Resolve (ErrNoRDMA before the
// host's addresses are listed); when they cannot be listed, LiveAddrs' error
// wrapped with the address (no sentinel of this package).
func Resolve(addr netip.Addr) ([]Endpoint, error) {
	t, err := ReadTopology("/")
	if err != nil {
		return nil, err
	}
	if !t.RDMACM {
		return nil, errNoRDMACM("resolve", addr.String(), nil)
	}
	addrs, err := LiveAddrs()
	if err != nil {
		return nil, fmt.Errorf("rdma: resolve %s: cannot list the host's addresses to find which netdev holds it: %w", addr, err)
	}
	return NewResolver(t, addrs).Resolve(addr)
}

// resolveErr is an error of resolving input: "rdma: resolve <input>:
// <sentinel's text>: <what was wrong and what was expected>".
func resolveErr(input string, sentinel error, format string, args ...any) error {
	return fmt.Errorf("rdma: resolve %s: %w: %s", input, sentinel, fmt.Sprintf(format, args...))
}
