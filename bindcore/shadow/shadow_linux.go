package shadow

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Bind creates a TCP socket with SO_REUSEPORT (IPV6_V6ONLY for an IPv6
// address) and binds it to ap. Port 0 lets the kernel choose; Addr tells
// which. ap's address may be an IPv4 address or an IPv6 one; an IPv4-mapped
// address is bound as IPv4.
//
// Errors wrap the errno of the failing call: unix.EADDRINUSE when a socket
// without SO_REUSEPORT, or one of another user, holds the port;
// unix.EADDRNOTAVAIL when the address is not on this host (the kernel's
// check, in the calling thread's network namespace); unix.EMFILE/ENFILE/
// ENOBUFS when out of resources. On systems other than Linux it fails with
// ErrNotSupported (and unix.EOPNOTSUPP).
func Bind(ap netip.AddrPort) (*Socket, error) {
	a := ap.Addr().Unmap()
	domain := unix.AF_INET
	if a.Is6() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("shadow socket %s: %w", ap, err)
	}
	if err := setup(fd, domain); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shadow socket %s: %w", ap, err)
	}
	if err := unix.Bind(fd, sockaddr(netip.AddrPortFrom(a, ap.Port()))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shadow bind %s: %w", ap, err)
	}
	if ap.Port() != 0 {
		return &Socket{fd: fd, addr: netip.AddrPortFrom(a.WithZone(ap.Addr().Zone()), ap.Port())}, nil
	}
	sa, err := unix.Getsockname(fd) // the port the kernel chose
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shadow getsockname %s: %w", ap, err)
	}
	return &Socket{fd: fd, addr: addrPort(sa, ap.Addr().Zone())}, nil
}

func setup(fd, domain int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("IPV6_V6ONLY: %w", err)
		}
	}
	return nil
}

// Cookie returns the kernel's socket cookie (SO_COOKIE), unique per socket
// for the life of the kernel. It asks the kernel once, and remembers.
func (s *Socket) Cookie() (uint64, error) {
	var c uint64
	err := s.control(func(fd int) error {
		if s.cookie == 0 {
			v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return fmt.Errorf("shadow cookie %s: %w", s.addr, err)
			}
			s.cookie = v
		}
		c = s.cookie
		return nil
	})
	return c, err
}
