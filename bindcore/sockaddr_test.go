package bindcore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// in4 builds a sockaddr_in the way C lays it out: native-endian family,
// network-order port and address.
func in4(family uint16, port uint16, a [4]byte) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint16(b[0:], family)
	binary.BigEndian.PutUint16(b[2:], port)
	copy(b[4:], a[:])
	return b
}

func in6(family uint16, port uint16, flow uint32, a [16]byte, scope uint32) []byte {
	b := make([]byte, 28)
	binary.NativeEndian.PutUint16(b[0:], family)
	binary.BigEndian.PutUint16(b[2:], port)
	binary.BigEndian.PutUint32(b[4:], flow)
	copy(b[8:], a[:])
	binary.NativeEndian.PutUint32(b[24:], scope)
	return b
}

var (
	v4   = [4]byte{10, 77, 0, 1}
	v6   = netip.MustParseAddr("fd77::1").As16()
	af4  = uint16(unix.AF_INET)
	af6  = uint16(unix.AF_INET6)
	good = in4(af4, 5000, v4)
)

// Each WSAEFAULT sentence of the spec, and the cases the design's error table
// derives from it.
func TestParseSockaddrFault(t *testing.T) {
	tests := []struct {
		name    string
		spec    string // the spec sentence the case checks
		family  Family
		buf     []byte
		namelen int
		input   string // the input the error must name
		msg     string // a fragment the message must have
	}{
		{"nil name", "The name ... parameter is not a valid part of the user address space",
			AFInet, nil, 16, "name", "nil"},
		{"namelen past the buffer", "The ... namelen parameter is not a valid part of the user address space",
			AFInet, good, 17, "namelen", "outside the 16-byte buffer"},
		{"negative namelen", "The ... namelen parameter is not a valid part of the user address space",
			AFInet, good, -1, "namelen", "outside"},
		{"namelen 0", "the namelen parameter is too small",
			AFInet, good, 0, "namelen", "too small"},
		{"namelen 1", "the namelen parameter is too small",
			AFInet, good, 1, "namelen", "too small"},
		{"namelen 15 for AF_INET", "the namelen parameter is too small",
			AFInet, good, 15, "namelen", "AF_INET needs 16"},
		{"namelen 16 for AF_INET6", "the namelen parameter is too small",
			AFInet6, in6(af6, 1, 0, v6, 0), 16, "namelen", "AF_INET6 needs 28"},
		{"namelen 27 for AF_INET6", "the namelen parameter is too small",
			AFInet6, in6(af6, 1, 0, v6, 0), 27, "namelen", "AF_INET6 needs 28"},
		{"sockaddr_in6 on an AF_INET socket", "the first two bytes of the memory block specified by name do not match the address family associated with the socket descriptor",
			AFInet, in6(af6, 5000, 0, v6, 0), 28, "name", "does not match the socket's family AF_INET"},
		{"sockaddr_in on an AF_INET6 socket", "the first two bytes of the memory block specified by name do not match the address family associated with the socket descriptor",
			AFInet6, append(in4(af4, 5000, v4), make([]byte, 12)...), 28, "name", "family AF_INET, which does not match"},
		{"AF_UNIX family field", "the name parameter contains an incorrect address format for the associated address family",
			AFInet, in4(unix.AF_UNIX, 5000, v4), 16, "name", "AF(1)"},
		{"zero family field", "The sin_family member of sockaddr_in must contain one of the WSK address families that was used to create the socket",
			AFInet, in4(0, 5000, v4), 16, "name", "AF(0)"},
		{"byte-swapped family field", "the first two bytes ... do not match the address family",
			AFInet, in4(af4<<8, 5000, v4), 16, "name", "does not match"},
		{"socket of an unknown family", "the name parameter contains an incorrect address format for the associated address family",
			Family(unix.AF_UNIX), good, 16, "name", "not AF_INET or AF_INET6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSockaddrLen(tt.family, tt.buf, tt.namelen)
			if err == nil {
				t.Fatalf("spec: %q: got no error", tt.spec)
			}
			if !errors.Is(err, wsa.ErrFault) || !errors.Is(err, unix.EFAULT) {
				t.Fatalf("spec: %q: %v does not match WSAEFAULT and EFAULT", tt.spec, err)
			}
			var we *wsa.Error
			if !errors.As(err, &we) || we.Code != wsa.WSAEFAULT || we.Input != tt.input {
				t.Fatalf("error %#v: want code WSAEFAULT naming input %q", we, tt.input)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.HasPrefix(err.Error(), "WSAEFAULT (10014): ") {
				t.Fatalf("message %q: want prefix WSAEFAULT (10014) and %q", err, tt.msg)
			}
		})
	}
}

// The valid forms the spec names: fully qualified, wildcard, port 0.
func TestParseSockaddrValid(t *testing.T) {
	ll := netip.MustParseAddr("fe80::1").As16()
	tests := []struct {
		name      string
		family    Family
		buf       []byte
		want      netip.AddrPort
		scope     uint32
		flow      uint32
		wildcard  bool
		qualified bool
	}{
		{"fully qualified v4", AFInet, in4(af4, 5000, v4), netip.MustParseAddrPort("10.77.0.1:5000"), 0, 0, false, true},
		{"wildcard 0.0.0.0", AFInet, in4(af4, 5000, [4]byte{}), netip.MustParseAddrPort("0.0.0.0:5000"), 0, 0, true, false},
		{"port 0 v4", AFInet, in4(af4, 0, v4), netip.MustParseAddrPort("10.77.0.1:0"), 0, 0, false, false},
		{"wildcard and port 0 v4", AFInet, in4(af4, 0, [4]byte{}), netip.MustParseAddrPort("0.0.0.0:0"), 0, 0, true, false},
		{"high port v4", AFInet, in4(af4, 65535, v4), netip.MustParseAddrPort("10.77.0.1:65535"), 0, 0, false, true},
		{"fully qualified v6", AFInet6, in6(af6, 5000, 0, v6, 0), netip.MustParseAddrPort("[fd77::1]:5000"), 0, 0, false, true},
		{"wildcard ::", AFInet6, in6(af6, 5000, 0, [16]byte{}, 0), netip.MustParseAddrPort("[::]:5000"), 0, 0, true, false},
		{"port 0 v6", AFInet6, in6(af6, 0, 0, v6, 0), netip.MustParseAddrPort("[fd77::1]:0"), 0, 0, false, false},
		{"link-local with scope and flowinfo", AFInet6, in6(af6, 7, 0xabcde, ll, 3), netip.MustParseAddrPort("[fe80::1%3]:7"), 3, 0xabcde, false, true},
		{"v4-mapped v6", AFInet6, in6(af6, 9, 0, netip.MustParseAddr("::ffff:10.77.0.1").As16(), 0), netip.MustParseAddrPort("[::ffff:10.77.0.1]:9"), 0, 0, false, true},
		{"longer buffer than the sockaddr", AFInet, append(in4(af4, 5000, v4), 0xff, 0xff), netip.MustParseAddrPort("10.77.0.1:5000"), 0, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sa, err := ParseSockaddr(tt.family, tt.buf)
			if err != nil {
				t.Fatal(err)
			}
			if sa.AddrPort() != tt.want || sa.ScopeID != tt.scope || sa.Flowinfo != tt.flow || sa.Family != tt.family {
				t.Fatalf("got %v scope %d flow %#x family %v, want %v scope %d flow %#x", sa.AddrPort(), sa.ScopeID, sa.Flowinfo, sa.Family, tt.want, tt.scope, tt.flow)
			}
			if sa.IsWildcard() != tt.wildcard || sa.IsFullyQualified() != tt.qualified {
				t.Fatalf("wildcard %v qualified %v, want %v %v", sa.IsWildcard(), sa.IsFullyQualified(), tt.wildcard, tt.qualified)
			}
			if enc := sa.Encode(); !bytes.Equal(enc, tt.buf[:tt.family.Size()]) {
				t.Fatalf("round trip: encoded % x, parsed % x", enc, tt.buf[:tt.family.Size()])
			}
			back, err := SockaddrFromAddrPort(tt.family, sa.AddrPort())
			if err != nil || back.AddrPort() != sa.AddrPort() || back.ScopeID != sa.ScopeID {
				t.Fatalf("SockaddrFromAddrPort(%v) = %v, %v", sa.AddrPort(), back, err)
			}
		})
	}
}

// sin_zero is kept, so even a name with garbage there encodes back exactly.
func TestSockaddrRoundTripKeepsSinZero(t *testing.T) {
	b := in4(af4, 80, v4)
	copy(b[8:], "garbage!")
	sa, err := ParseSockaddr(AFInet, b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sa.Encode(), b) {
		t.Fatalf("encoded % x, want % x", sa.Encode(), b)
	}
}

func TestSockaddrFromAddrPort(t *testing.T) {
	sa, err := SockaddrFromAddrPort(AFInet, netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"))
	if err != nil || sa.Addr != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("v4-mapped into AF_INET: %v %v", sa, err)
	}
	if _, err := SockaddrFromAddrPort(AFInet, netip.MustParseAddrPort("[fd77::1]:1")); !errors.Is(err, unix.EFAULT) {
		t.Fatalf("IPv6 into AF_INET: %v, want EFAULT", err)
	}
	if _, err := SockaddrFromAddrPort(AFInet6, netip.AddrPortFrom(netip.MustParseAddr("fe80::1").WithZone("eth0"), 1)); !errors.Is(err, wsa.ErrFault) {
		t.Fatalf("named zone: %v, want WSAEFAULT", err)
	}
	if _, err := SockaddrFromAddrPort(AFInet, netip.AddrPort{}); !errors.Is(err, wsa.ErrFault) {
		t.Fatalf("invalid address: %v, want WSAEFAULT", err)
	}
	sa, err = SockaddrFromAddrPort(AFInet6, netip.MustParseAddrPort("10.0.0.1:2"))
	if err != nil || !sa.Addr.Is4In6() || len(sa.Encode()) != 28 {
		t.Fatalf("IPv4 into AF_INET6: %v %v", sa, err)
	}
	if (Sockaddr{Family: AFInet, Addr: netip.MustParseAddr("fd77::1")}).Encode() != nil {
		t.Fatal("an IPv6 address in an AF_INET sockaddr encoded")
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(uint16(AFInet), good)
	f.Add(uint16(AFInet6), in6(af6, 5000, 1, v6, 2))
	f.Add(uint16(AFInet6), good)
	f.Add(uint16(AFInet), []byte{})
	f.Add(uint16(AFInet), []byte{2})
	f.Add(uint16(1), good)
	f.Fuzz(func(t *testing.T, fam uint16, name []byte) {
		family := Family(fam)
		sa, err := ParseSockaddr(family, name)
		if err != nil {
			if !errors.Is(err, wsa.ErrFault) || !errors.Is(err, unix.EFAULT) {
				t.Fatalf("error %v is not WSAEFAULT/EFAULT", err)
			}
			return
		}
		size := family.Size()
		if size == 0 || len(name) < size {
			t.Fatalf("accepted %d bytes for family %v", len(name), family)
		}
		if enc := sa.Encode(); !bytes.Equal(enc, name[:size]) {
			t.Fatalf("round trip: % x -> %+v -> % x", name[:size], sa, enc)
		}
		again, err := ParseSockaddr(family, sa.Encode())
		if err != nil || again != sa {
			t.Fatalf("re-parse: %+v %v, want %+v", again, err, sa)
		}
	})
}
