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

// ErrNotSupported is wrapped, with unix.EOPNOTSUPP, by the errors of Bind
// and Cookie on systems other than Linux: shadows rely on Linux's
// SO_REUSEPORT rules (one uid per reuseport group) and SO_COOKIE.
var ErrNotSupported = errors.New("kernel TCP reservation not supported")

// Socket is a kernel TCP socket that reserves an address and port.
type Socket struct {
	mu     sync.Mutex
	fd     int
	addr   netip.AddrPort
	cookie uint64 // SO_COOKIE, once asked
	closed bool
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

// Control runs f with the socket's fd while the socket cannot be closed. f
// must not close the fd or keep it past its return.
func (s *Socket) Control(f func(fd int) error) error { return s.control(f) }

func (s *Socket) control(f func(fd int) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("shadow socket %s: %w", s.addr, ErrClosed)
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
