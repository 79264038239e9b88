package shadow

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by methods of a closed Socket.
var ErrClosed = errors.New("shadow socket closed")

// Socket is a kernel TCP socket that reserves an address and port.
type Socket struct {
	mu     sync.Mutex
	fd     int
	addr   netip.AddrPort
	closed bool
}

// Bind creates a TCP socket with SO_REUSEPORT (IPV6_V6ONLY for an IPv6
// address) and binds it to ap. Port 0 lets the kernel choose; Addr tells
// which. ap's address may be an IPv4 address or an IPv6 one; an IPv4-mapped
// address is bound as IPv4.
//
// Errors wrap the errno of the failing call: unix.EADDRINUSE when a socket
// without SO_REUSEPORT, or one of another user, holds the port;
// unix.EADDRNOTAVAIL when the address is not on this host (the kernel's
// check, in the calling thread's network namespace); unix.EMFILE/ENFILE/
// ENOBUFS when out of resources.
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

func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	if z := ap.Addr().Zone(); z != "" {
		sa.ZoneId = zoneIndex(z)
	}
	return sa
}

func addrPort(sa unix.Sockaddr, zone string) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).WithZone(zone), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// Addr returns the bound address and port (the kernel's choice for port 0).
func (s *Socket) Addr() netip.AddrPort { return s.addr }

// Listen makes the shadow a TCP listener with the given backlog.
func (s *Socket) Listen(backlog int) error {
	return s.control(func(fd int) error {
		if err := unix.Listen(fd, backlog); err != nil {
			return fmt.Errorf("shadow listen %s: %w", s.addr, err)
		}
		return nil
	})
}

// Cookie returns the kernel's socket cookie (SO_COOKIE), unique per socket
// for the life of the kernel.
func (s *Socket) Cookie() (uint64, error) {
	var c uint64
	err := s.control(func(fd int) error {
		v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		c = v
		return err
	})
	return c, err
}

// Control runs f with the socket's fd while the socket cannot be closed. f
// must not close the fd or keep it past its return.
func (s *Socket) Control(f func(fd int) error) error { return s.control(f) }

func (s *Socket) control(f func(fd int) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return f(s.fd)
}

// Dup returns a new *os.File on a duplicate of the socket's fd, for callers
// that hand the socket to the Go netpoller (an accept loop, say). The caller
// closes it; the reservation lives until both are closed.
func (s *Socket) Dup() (*os.File, error) {
	var f *os.File
	err := s.control(func(fd int) error {
		nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("shadow dup %s: %w", s.addr, err)
		}
		f = os.NewFile(uintptr(nfd), "shadow:"+s.addr.String())
		return nil
	})
	return f, err
}

// Close releases the reservation. It is safe to call more than once; only
// the first call closes.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return unix.Close(s.fd)
}
