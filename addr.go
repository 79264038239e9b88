package rdmabind

import (
	"context"
	"net"
	"net/netip"
	"strconv"
)

// Addr is the address of an rdmabind endpoint: an IP address and a port,
// whose Network is "rdma".
type Addr struct {
	AddrPort netip.AddrPort
}

// Network returns "rdma".
func (a *Addr) Network() string { return "rdma" }

// String returns "ip:port" ("[ip]:port" for IPv6).
func (a *Addr) String() string {
	if a == nil {
		return "<nil>"
	}
	return a.AddrPort.String()
}

func newAddr(ap netip.AddrPort) *Addr {
	return &Addr{AddrPort: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
}

// family is the address family a network asks for.
type family uint8

const (
	famAny family = iota
	fam4
	fam6
)

// listenNetwork parses a Listen network.
func listenNetwork(network string) (family, error) {
	switch network {
	case "rdma":
		return famAny, nil
	case "rdma4":
		return fam4, nil
	case "rdma6":
		return fam6, nil
	}
	return 0, net.UnknownNetworkError(network)
}

// dialNetwork parses a Dial network: the rdma ones, and the tcp ones as
// the same over RDMA.
func dialNetwork(network string) (family, error) {
	switch network {
	case "tcp":
		return famAny, nil
	case "tcp4":
		return fam4, nil
	case "tcp6":
		return fam6, nil
	}
	return listenNetwork(network)
}

// fits reports whether ip is of the family.
func (f family) fits(ip netip.Addr) bool {
	switch f {
	case fam4:
		return ip.Unmap().Is4()
	case fam6:
		return ip.Is6() && !ip.Is4In6()
	}
	return true
}

// resolve parses address ("host:port", host an IP literal or a name; an
// empty host is the wildcard when wildcard is true) into an address and
// port of the family.
func resolve(ctx context.Context, f family, address string, wildcard bool) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, &net.AddrError{Err: "invalid address: " + err.Error(), Addr: address}
	}
	port, err := parsePort(portStr)
	if err != nil {
		return netip.AddrPort{}, &net.AddrError{Err: err.Error(), Addr: address}
	}
	if host == "" {
		if !wildcard {
			return netip.AddrPort{}, &net.AddrError{Err: "missing host", Addr: address}
		}
		if f == fam6 {
			return netip.AddrPortFrom(netip.IPv6Unspecified(), port), nil
		}
		return netip.AddrPortFrom(netip.IPv4Unspecified(), port), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if !f.fits(ip) {
			return netip.AddrPort{}, &net.AddrError{Err: "address of the wrong family for the network", Addr: address}
		}
		return netip.AddrPortFrom(ip.Unmap(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for _, ip := range ips {
		if f.fits(ip) {
			return netip.AddrPortFrom(ip.Unmap(), port), nil
		}
	}
	return netip.AddrPort{}, &net.AddrError{Err: "no suitable address found", Addr: address}
}

// parsePort parses a decimal port or a service name of tcp.
func parsePort(s string) (uint16, error) {
	if n, err := strconv.ParseUint(s, 10, 16); err == nil {
		return uint16(n), nil
	}
	n, err := net.LookupPort("tcp", s)
	if err != nil {
		return 0, err
	}
	return uint16(n), nil
}

// addrPortOf converts a net.Addr given as a Dialer's LocalAddr.
// A nil IP (package net's "any address") gives an invalid address with
// the port: the Dialer then binds the route's source address.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	ipPort := func(ip net.IP, port int) (netip.AddrPort, bool) {
		if ip == nil {
			return netip.AddrPortFrom(netip.Addr{}, uint16(port)), true
		}
		addr, ok := netip.AddrFromSlice(ip)
		return netip.AddrPortFrom(addr.Unmap(), uint16(port)), ok
	}
	switch a := a.(type) {
	case *Addr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		return a.AddrPort, a.AddrPort.IsValid()
	case *net.TCPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		return ipPort(a.IP, a.Port)
	case *net.UDPAddr:
		if a == nil {
			return netip.AddrPort{}, false
		}
		return ipPort(a.IP, a.Port)
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
