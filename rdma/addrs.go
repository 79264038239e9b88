package rdma

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// AddrSource answers which network interface holds an IP address: the first
// step of resolution. *AddrTable is the implementation this package
// provides (LiveAddrs fills one from the system, ReadAddrTable from a
// fixture file).
type AddrSource interface {
	// Lookup returns the netdev that holds addr. An IPv4-mapped IPv6
	// address is looked up as IPv4. The zone of an IPv6 link-local address
	// (fe80::1%eth0, or an interface index) restricts the answer to that
	// interface; without a zone the first interface holding it answers.
	// The zone of any other address is ignored, as the kernel ignores the
	// scope id of a global address.
	Lookup(addr netip.Addr) (netdev string, ok bool)
	// All lists every address with its netdev.
	All() []NetdevAddr
}

// NetdevAddr is an address of a network interface.
type NetdevAddr struct {
	// Netdev is the interface name.
	Netdev string `json:"netdev"`
	// Index is the interface index, or 0 if unknown (fixtures).
	Index int `json:"index,omitempty"`
	// Addr is the address. Link-local IPv6 addresses carry the interface
	// name as their zone.
	Addr netip.Addr `json:"addr"`
}

// AddrTable is an AddrSource over a fixed list of addresses: a snapshot of
// the live system (LiveAddrs) or a fixture. It is safe for concurrent use
// and Lookup does not allocate.
type AddrTable struct {
	all    []NetdevAddr
	byAddr map[netip.Addr]int // address (zone kept for link-local) -> index in all
	first  map[netip.Addr]int // link-local address without zone -> first holder
}

// Equal reports whether t and u hold the same addresses on the same
// netdevs, in the same order (two snapshots of an unchanged system).
func (t *AddrTable) Equal(u *AddrTable) bool {
	if t == nil || u == nil {
		return t == u
	}
	return slices.Equal(t.all, u.all)
}

// NewAddrTable returns a table of list. Addresses are unmapped, and
// link-local IPv6 addresses get their netdev as zone if they have none.
func NewAddrTable(list []NetdevAddr) *AddrTable {
	t := &AddrTable{
		all:    make([]NetdevAddr, 0, len(list)),
		byAddr: make(map[netip.Addr]int, len(list)),
		first:  map[netip.Addr]int{},
	}
	for _, na := range list {
		a := na.Addr.Unmap()
		if isLinkLocal6(a) {
			if a.Zone() == "" {
				a = a.WithZone(na.Netdev)
			}
			if _, ok := t.first[a.WithZone("")]; !ok {
				t.first[a.WithZone("")] = len(t.all)
			}
		} else {
			a = a.WithZone("")
		}
		na.Addr = a
		if _, ok := t.byAddr[a]; !ok {
			t.byAddr[a] = len(t.all)
		}
		t.all = append(t.all, na)
	}
	return t
}

func isLinkLocal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast())
}

// Lookup implements AddrSource.
func (t *AddrTable) Lookup(addr netip.Addr) (string, bool) {
	a := addr.Unmap()
	if !isLinkLocal6(a) {
		i, ok := t.byAddr[a.WithZone("")]
		if !ok {
			return "", false
		}
		return t.all[i].Netdev, true
	}
	zone := a.Zone()
	if zone == "" {
		i, ok := t.first[a]
		if !ok {
			return "", false
		}
		return t.all[i].Netdev, true
	}
	if i, ok := t.byAddr[a]; ok {
		return t.all[i].Netdev, true
	}
	// A numeric zone is an interface index.
	if idx, err := strconv.Atoi(zone); err == nil && idx > 0 {
		for _, na := range t.all {
			if na.Index == idx && na.Addr.WithZone("") == a.WithZone("") {
				return na.Netdev, true
			}
		}
	}
	return "", false
}

// All implements AddrSource. It returns a copy.
func (t *AddrTable) All() []NetdevAddr {
	return append([]NetdevAddr(nil), t.all...)
}

// LiveAddrs returns a snapshot of the addresses of the host's network
// interfaces (net.Interfaces and their Addrs), in the calling thread's
// network namespace. Take a new snapshot to see address changes.
//
// Errors: the error of net.Interfaces or of an interface's Addrs, wrapped
// with the interface's name.
func LiveAddrs() (*AddrTable, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("rdma: list network interfaces: %w", err)
	}
	var list []NetdevAddr
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("rdma: addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			var ip net.IP
			switch v := a.(type) {
			case *net.IPNet:
				ip = v.IP
			case *net.IPAddr:
				ip = v.IP
			default:
				continue
			}
			addr, ok := netip.AddrFromSlice(ip)
			if !ok {
				continue
			}
			addr = addr.Unmap()
			if isLinkLocal6(addr) {
				addr = addr.WithZone(ifc.Name)
			}
			list = append(list, NetdevAddr{Netdev: ifc.Name, Index: ifc.Index, Addr: addr})
		}
	}
	return NewAddrTable(list), nil
}

// ReadAddrTable reads a table from a text file (a fixture's addrs.txt), in
// the format ParseAddrTable reads.
//
// Errors: the file's open error, or ParseAddrTable's.
func ReadAddrTable(name string) (*AddrTable, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("rdma: address table: %w", err)
	}
	defer f.Close()
	t, err := ParseAddrTable(f)
	if err != nil {
		return nil, fmt.Errorf("rdma: address table %s: %w", name, err)
	}
	return t, nil
}

// ParseAddrTable reads one address per line, "NETDEV ADDR[/BITS]", as `ip
// -br addr` shows them; blank lines and lines starting with # are skipped:
//
//	eth0 10.77.0.1/24
//	eth0 fd77::1/64
//	eth0 fe80::5054:ff:fe12:3401/64
//
// Errors: a line that is not a netdev name and an address, naming the line
// number and its text.
func ParseAddrTable(r io.Reader) (*AddrTable, error) {
	var list []NetdevAddr
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d %q: expected a netdev name and an address, like \"eth0 10.77.0.1/24\"", n, line)
		}
		s, _, _ := strings.Cut(f[1], "/")
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: expected a netdev name and an address, like \"eth0 10.77.0.1/24\": %w", n, line, err)
		}
		list = append(list, NetdevAddr{Netdev: f[0], Addr: a})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return NewAddrTable(list), nil
}
