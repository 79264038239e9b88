package bindcore

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// Family is a socket address family, with Linux's numbering (AF_INET = 2,
// AF_INET6 = 10): rdmabind parses Linux sockaddrs, whose family field is a
// native-endian sa_family_t.
type Family uint16

// The families a socket of this layer may have.
const (
	AFInet  Family = unix.AF_INET
	AFInet6 Family = unix.AF_INET6
)

// Sizes of the sockaddr structures, in bytes: the smallest namelen WSPBind
// accepts for each family.
const (
	SizeofSockaddrInet4 = unix.SizeofSockaddrInet4 // 16
	SizeofSockaddrInet6 = unix.SizeofSockaddrInet6 // 28
)

// String returns "AF_INET", "AF_INET6" or "AF(n)".
func (f Family) String() string {
	switch f {
	case AFInet:
		return "AF_INET"
	case AFInet6:
		return "AF_INET6"
	}
	return fmt.Sprintf("AF(%d)", uint16(f))
}

// FamilyOf is the family of a socket for ip: AF_INET for an IPv4 address
// (also in its IPv4-mapped IPv6 form), else AF_INET6.
func FamilyOf(ip netip.Addr) Family {
	if ip.Unmap().Is4() {
		return AFInet
	}
	return AFInet6
}

// Size returns the size of the family's sockaddr, or 0 for a family this
// layer does not know.
func (f Family) Size() int {
	switch f {
	case AFInet:
		return SizeofSockaddrInet4
	case AFInet6:
		return SizeofSockaddrInet6
	}
	return 0
}

// Sockaddr is a parsed sockaddr_in or sockaddr_in6. Every field of the
// structure is kept, so that Encode gives back the bytes that were parsed.
type Sockaddr struct {
	Family   Family
	Addr     netip.Addr // 4 bytes for AF_INET, 16 for AF_INET6 (never unmapped)
	Port     uint16     // host order; on the wire in network order
	Flowinfo uint32     // AF_INET6 sin6_flowinfo, host order; network order on the wire
	ScopeID  uint32     // AF_INET6 sin6_scope_id, native order as Linux keeps it
	Zero     [8]byte    // AF_INET sin_zero, as given (Linux and Windows ignore it)
}

// ParseSockaddr parses name as a sockaddr of the socket's family, with
// namelen = len(name). It is ParseSockaddrLen(family, name, len(name)).
func ParseSockaddr(family Family, name []byte) (Sockaddr, error) {
	return ParseSockaddrLen(family, name, len(name))
}

// ParseSockaddrLen parses the first namelen bytes of name as a sockaddr of
// the socket's family, checking it as WSPBind does. Bytes past the family's
// structure size are ignored, as both Windows and Linux ignore them.
//
// Every failure is WSAEFAULT (errors.Is(err, wsa.ErrFault), errors.Is(err,
// unix.EFAULT)), with the reason in the message:
//   - name is nil, namelen is negative or namelen exceeds len(name): "not a
//     valid part of the user address space";
//   - namelen is smaller than the socket family's sockaddr: "namelen too small";
//   - the first two bytes of name, the family field, are not the socket's
//     family ("do not match the address family associated with the socket");
//   - the socket's family is neither AF_INET nor AF_INET6, so no address
//     format can be correct for it.
func ParseSockaddrLen(family Family, name []byte, namelen int) (Sockaddr, error) {
	const op = "bind"
	size := family.Size()
	switch {
	case size == 0:
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "name", "the socket's family %s is not AF_INET or AF_INET6", family)
	case name == nil:
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "name", "name is nil: not a valid part of the user address space")
	case namelen < 0 || namelen > len(name):
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "namelen", "namelen %d is outside the %d-byte buffer at name: not a valid part of the user address space", namelen, len(name))
	case namelen < 2:
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "namelen", "namelen %d is too small: %s needs %d bytes", namelen, family, size)
	}
	got := Family(binary.NativeEndian.Uint16(name[0:2]))
	if got != family {
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "name", "the first two bytes of name give family %s, which does not match the socket's family %s", got, family)
	}
	if namelen < size {
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, "namelen", "namelen %d is too small: %s needs %d bytes", namelen, family, size)
	}
	b := name[:size]
	sa := Sockaddr{Family: family, Port: binary.BigEndian.Uint16(b[2:4])}
	if family == AFInet {
		sa.Addr = netip.AddrFrom4([4]byte(b[4:8]))
		copy(sa.Zero[:], b[8:16])
		return sa, nil
	}
	sa.Flowinfo = binary.BigEndian.Uint32(b[4:8])
	sa.Addr = netip.AddrFrom16([16]byte(b[8:24]))
	sa.ScopeID = binary.NativeEndian.Uint32(b[24:28])
	return sa, nil
}

// Encode returns the sockaddr's bytes: 16 for AF_INET, 28 for AF_INET6. For
// a Sockaddr that ParseSockaddr returned it gives back exactly the bytes
// parsed (the first Family.Size() of them). It returns nil for a Sockaddr
// whose family is unknown or whose address does not fit its family.
func (sa Sockaddr) Encode() []byte {
	return sa.AppendTo(nil)
}

// AppendTo appends the encoded sockaddr to b; see Encode.
func (sa Sockaddr) AppendTo(b []byte) []byte {
	switch {
	case sa.Family == AFInet && sa.Addr.Is4():
		b = binary.NativeEndian.AppendUint16(b, uint16(sa.Family))
		b = binary.BigEndian.AppendUint16(b, sa.Port)
		a := sa.Addr.As4()
		b = append(b, a[:]...)
		return append(b, sa.Zero[:]...)
	case sa.Family == AFInet6 && sa.Addr.IsValid():
		b = binary.NativeEndian.AppendUint16(b, uint16(sa.Family))
		b = binary.BigEndian.AppendUint16(b, sa.Port)
		b = binary.BigEndian.AppendUint32(b, sa.Flowinfo)
		a := sa.Addr.As16()
		b = append(b, a[:]...)
		return binary.NativeEndian.AppendUint32(b, sa.ScopeID)
	}
	return b
}

// SockaddrFromAddrPort returns the sockaddr for ap in the given family. An
// IPv4 address in an AF_INET6 sockaddr becomes its IPv4-mapped form. A zone
// that is a number becomes the scope id. It fails with WSAEFAULT when ap does
// not fit the family (an IPv6 address for AF_INET, an invalid address).
func SockaddrFromAddrPort(family Family, ap netip.AddrPort) (Sockaddr, error) {
	const op = "bind"
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, ap.String(), "not a valid IP address")
	case family == AFInet && a.Is4():
		return Sockaddr{Family: AFInet, Addr: a, Port: ap.Port()}, nil
	case family == AFInet && a.Is4In6():
		return Sockaddr{Family: AFInet, Addr: a.Unmap(), Port: ap.Port()}, nil
	case family == AFInet:
		return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, ap.String(), "an IPv6 address is not an AF_INET address")
	case family == AFInet6:
		sa := Sockaddr{Family: AFInet6, Addr: netip.AddrFrom16(a.As16()), Port: ap.Port()}
		if z := a.Zone(); z != "" {
			var id uint32
			if _, err := fmt.Sscan(z, &id); err != nil {
				return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, ap.String(), "zone %q is not a numeric scope id", z)
			}
			sa.ScopeID = id
		}
		return sa, nil
	}
	return Sockaddr{}, wsa.New(wsa.WSAEFAULT, op, ap.String(), "the socket's family %s is not AF_INET or AF_INET6", family)
}

// AddrPort returns the address and port. An AF_INET6 sockaddr holding an
// IPv4-mapped address keeps the mapped form; its scope id, if any, becomes a
// numeric zone.
func (sa Sockaddr) AddrPort() netip.AddrPort {
	a := sa.Addr
	if sa.Family == AFInet6 && sa.ScopeID != 0 {
		a = a.WithZone(fmt.Sprint(sa.ScopeID))
	}
	return netip.AddrPortFrom(a, sa.Port)
}

// IsWildcard reports whether the address is the wildcard (0.0.0.0 or ::):
// bind on every NIC the provider serves.
func (sa Sockaddr) IsWildcard() bool { return sa.Addr.IsUnspecified() }

// IsFullyQualified reports whether both port and address are nonzero: the
// spec's common case, a name associated with one of the provider's NICs.
func (sa Sockaddr) IsFullyQualified() bool {
	return sa.Port != 0 && sa.Addr.IsValid() && !sa.Addr.IsUnspecified()
}

// String formats as the address and port, "10.0.0.1:5000" or "[fd77::1]:5000".
func (sa Sockaddr) String() string { return sa.AddrPort().String() }
