package registry

import "net/netip"

// Overlap reports whether two bindings of one port cover a common local
// address, by the kernel's TCP bind rules:
//
//   - equal specific addresses overlap;
//   - an IPv4 wildcard (0.0.0.0) overlaps every IPv4 address;
//   - an IPv6 wildcard (::) overlaps every IPv6 address, and with dualStack
//     (IPV6_V6ONLY off) every IPv4 address too;
//   - IPv4 and IPv6 bindings overlap nowhere else.
//
// An IPv4-mapped IPv6 address counts as the IPv4 address it maps (the kernel
// binds it as IPv4). Zones are ignored: fe80::1%eth0 and fe80::1%eth1 overlap,
// the conservative answer.
func Overlap(a netip.Addr, aDual bool, b netip.Addr, bDual bool) bool {
	a, b = a.Unmap().WithZone(""), b.Unmap().WithZone("")
	if !a.IsValid() || !b.IsValid() {
		return false
	}
	if a.Is4() == b.Is4() {
		return a == b || a.IsUnspecified() || b.IsUnspecified()
	}
	// One IPv4, one IPv6: only a dual-stack IPv6 wildcard reaches across.
	if a.Is6() {
		return aDual && a.IsUnspecified()
	}
	return bDual && b.IsUnspecified()
}

// Conflicts reports whether a live claim held prevents a new claim of
// (addr, port) with share policy share and dualStack by a process of uid:
// the ports are equal, the addresses overlap, and either one of the two is
// Exclusive or the uids differ. Sockets of one uid share freely (SO_REUSEPORT
// semantics, in one process and across processes).
func Conflicts(held Record, addr netip.Addr, port uint16, dualStack bool, share Share, uid uint32) bool {
	if held.State != StateUsed || held.Port != port {
		return false
	}
	if !Overlap(held.Addr, held.DualStack, addr, dualStack) {
		return false
	}
	return held.Share == Exclusive || share == Exclusive || held.UID != uid
}
