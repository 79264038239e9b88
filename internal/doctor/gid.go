package doctor

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/rdmabind/rdmabind/rdma"
)

// checkGIDs reports, per address, the GID a bind of it would use and why,
// or why it has none.
func checkGIDs(e *Env) []Result {
	f := e.Facts
	if e.topoErr != nil || len(e.topo.t.Devices) == 0 {
		return nil // devices said why
	}
	if f.AddrsErr != nil || f.Addrs == nil {
		return one("gid", false, fmt.Sprintf("cannot list this namespace's addresses: %v", f.AddrsErr), "")
	}
	var addrs []rdma.NetdevAddr
	if e.Addr.IsValid() {
		nd, _ := f.Addrs.Lookup(e.Addr)
		addrs = []rdma.NetdevAddr{{Netdev: nd, Addr: e.Addr}}
	} else {
		for _, na := range f.Addrs.All() {
			// Addresses of netdevs no port serves are not RDMA's business,
			// unless asked about.
			if _, ok := e.topo.t.Netdev(na.Netdev); ok && !na.Addr.IsLoopback() {
				addrs = append(addrs, na)
			}
		}
	}
	if len(addrs) == 0 {
		return one("gid", false, "no address of this namespace is on a netdev an RDMA port serves"+nsNote(e),
			"add an address to an RDMA netdev ("+servedNetdevs(e.topo.t)+")")
	}
	var out []Result
	for _, na := range addrs {
		out = append(out, gidResult(e, na))
	}
	return out
}

func gidResult(e *Env, na rdma.NetdevAddr) Result {
	a := na.Addr
	r := Result{Name: "gid " + a.String()}
	eps, err := e.topo.res.Resolve(a)
	if err == nil {
		ep := eps[0]
		if len(eps) > 1 || ep.GIDIndex < 0 {
			r.OK = true
			r.Detail = fmt.Sprintf("the wildcard: %d ACTIVE port(s); each connection uses the GID of the address its peer reached", len(eps))
			return r
		}
		r.OK, r.Detail, r.Fix = why(e.topo.t, ep)
		return r
	}
	r.Detail = err.Error()
	_, served := e.topo.t.Netdev(na.Netdev)
	switch {
	case errors.Is(err, rdma.ErrAddrNotLocal):
		r.Fix = "bind an address of this namespace's interfaces" + nsNote(e)
	case errors.Is(err, rdma.ErrPortDown):
		r.Fix = "bring the port up (see its port check)"
	case errors.Is(err, rdma.ErrAddrNotServed) && served:
		r.Detail, r.Fix = noGID(e, na)
	case errors.Is(err, rdma.ErrAddrNotServed):
		r.Fix = "bind an address of a netdev an RDMA port serves: " + servedNetdevs(e.topo.t)
	}
	return r
}

// why explains the GID entry chosen for ep, and whether it is sound.
func why(t *rdma.Topology, ep rdma.Endpoint) (ok bool, detail, fix string) {
	p, _ := t.Port(rdma.PortRef{Device: ep.Device, Port: ep.Port})
	head := fmt.Sprintf("%s port %d, GID index %d (%s %s, netdev %s)", ep.Device, ep.Port, ep.GIDIndex, ep.GIDType, ep.GID, ep.Netdev)
	if ep.LinkLayer == rdma.LinkLayerInfiniBand {
		return true, head + ": InfiniBand: the port GID at index 0 (subnet prefix and port GUID), reached through IPoIB", ""
	}
	var notes []string
	for _, g := range p.GIDs {
		if g.Index == ep.GIDIndex || g.Netdev != ep.Netdev {
			continue
		}
		switch {
		case g.GID == ep.GID:
			notes = append(notes, fmt.Sprintf("not the %s entry of the same GID at index %d", g.Type, g.Index))
		case g.GID.IsLinkLocalUnicast() && !ep.GID.IsLinkLocalUnicast() && g.Type == ep.GIDType:
			notes = append(notes, fmt.Sprintf("not the link-local GID at index %d, which no router forwards", g.Index))
		}
	}
	more := ""
	if len(notes) > 0 {
		more = "; " + strings.Join(notes, "; ")
	}
	switch {
	case ep.GIDType == rdma.GIDTypeRoCEv1:
		return false, head + ": RoCE v1, as the port has no RoCE v2 entry for the address, while rdma_cm uses the port's default GID type, v2" + more,
			fmt.Sprintf("set the default to v1 on both ends (mkdir /sys/kernel/config/rdma_cm/%s; echo 'IB/RoCE v1' > /sys/kernel/config/rdma_cm/%s/ports/%d/default_roce_mode), or find why the kernel made no v2 entry", ep.Device, ep.Device, ep.Port)
	case ep.GID.IsLinkLocalUnicast():
		return true, head + ": RoCE v2 (the kernel's default type) of a link-local address, for peers on this link only" + more, ""
	}
	return true, head + ": RoCE v2 (the kernel's default type), routable" + more +
		fmt.Sprintf("; tools that take an index want %d (NCCL_IB_GID_INDEX, ib_send_lat -x)", ep.GIDIndex), ""
}

// noGID explains an address on a served netdev that no GID entry holds.
func noGID(e *Env, na rdma.NetdevAddr) (detail, fix string) {
	t := e.topo.t
	var theirs []string
	for _, d := range t.Devices {
		for _, p := range d.Ports {
			for _, g := range p.GIDs {
				if g.Netdev == na.Netdev && !slices.Contains(theirs, addrOfGID(g.GID)) {
					theirs = append(theirs, addrOfGID(g.GID))
				}
			}
		}
	}
	detail = fmt.Sprintf("%s on %s has no GID: no RDMA port's GID table holds %s; the entries naming %s hold %s",
		na.Addr, na.Netdev, gidText(na.Addr), na.Netdev, strings.Join(theirs, ", "))
	if foreign := foreignNetdevs(e); e.otherNetns() || len(foreign) > 0 {
		detail += nsNote(e)
		if len(foreign) > 0 {
			detail += fmt.Sprintf("; the GID tables name netdevs this namespace has no address on (%s)", strings.Join(foreign, ", "))
		}
		detail += fmt.Sprintf(": the GID tables are another namespace's (the host's, under the RDMA namespace mode %s), and %s here is not the %s they name", cmp.Or(e.Facts.System.NetnsMode, "unknown"), na.Netdev, na.Netdev)
		return detail, "bind one of the addresses the GID tables hold from the namespace that has them; or give this namespace an interface whose addresses get GID entries (a macvlan or ipvlan on the RDMA netdev, or the netdev itself moved in), or a device of its own (rdma system set netns exclusive; rdma dev set DEV netns NSNAME)"
	}
	return detail + ": the kernel adds an entry for every address of an RDMA netdev; an address added a moment ago may not have one yet",
		"wait a moment and check again; if it stays missing, remove and add the address (ip addr del/add) and look at dmesg"
}

// otherNetns reports whether this process is known to be in a network
// namespace other than the host's.
func (e *Env) otherNetns() bool {
	f := e.Facts
	return f.Netns != 0 && f.HostNetns != 0 && f.Netns != f.HostNetns
}

// nsNote is "; this process is in network namespace N, not the host's (M)"
// when it is, else "".
func nsNote(e *Env) string {
	if !e.otherNetns() {
		return ""
	}
	return fmt.Sprintf("; this process is in network namespace %d, not the host's (%d)", e.Facts.Netns, e.Facts.HostNetns)
}

// foreignNetdevs lists the netdevs GID entries name that hold no address
// here.
func foreignNetdevs(e *Env) []string {
	here := map[string]bool{}
	for _, na := range e.Facts.Addrs.All() {
		here[na.Netdev] = true
	}
	var out []string
	for _, d := range e.topo.t.Devices {
		for _, p := range d.Ports {
			for _, nd := range p.Netdevs {
				if !here[nd] && !slices.Contains(out, nd) && p.LinkLayer == rdma.LinkLayerEthernet {
					out = append(out, nd)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func servedNetdevs(t *rdma.Topology) string {
	var out []string
	for _, nd := range t.Netdevs {
		out = append(out, nd.Name)
	}
	if len(out) == 0 {
		return "none here"
	}
	return strings.Join(out, ", ")
}

// gidText is the GID of a RoCE address: ::ffff:a.b.c.d for IPv4.
func gidText(a netip.Addr) string {
	if a.Is4() {
		return netip.AddrFrom16(a.As16()).String()
	}
	return a.WithZone("").String()
}

// addrOfGID is the address a RoCE GID stands for.
func addrOfGID(g netip.Addr) string { return g.Unmap().String() }
