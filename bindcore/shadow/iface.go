package shadow

import (
	"net"
	"strconv"
)

// zoneIndex turns an IPv6 zone, a number or an interface name, into a scope
// id; 0 when it is neither.
func zoneIndex(zone string) uint32 {
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
