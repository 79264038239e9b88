package steer

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/netns"
)

// checkSocket refuses what the kernel cannot steer with a clear error:
// MPTCP sockets (the kernel would answer EOPNOTSUPP or ENOTSUPP on attach
// and map update) and anything but a TCP stream socket of AF_INET/AF_INET6.
// SO_PROTOCOL IPPROTO_TCP alone says a TCP stream socket of AF_INET or
// AF_INET6 (the only families with TCP), so one getsockopt suffices for a
// socket that passes; SO_TYPE is read only to say what a refused one is.
func checkSocket(fd int) error {
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		if errors.Is(err, unix.ENOTSOCK) {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
		return fmt.Errorf("SO_PROTOCOL: %w", err)
	}
	switch proto {
	case unix.IPPROTO_TCP:
		return nil
	case unix.IPPROTO_MPTCP:
		return fmt.Errorf("fd %d: %w: %w", fd, ErrMPTCP, unix.EOPNOTSUPP)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("SO_TYPE: %w", err)
	}
	return fmt.Errorf("fd %d is not a TCP socket (protocol %d, type %d): %w", fd, proto, typ, unix.EPROTOTYPE)
}

// KeyOf returns the key of the group s belongs to: its network namespace
// (asked of the socket with SIOCGSKNS, or, without CAP_NET_ADMIN for that,
// the calling thread's) and its bound address and port.
//
// Errors: unix.EINVAL when s is not bound; ErrMPTCP; unix.EPROTOTYPE for a
// socket that is not TCP; the errno of getsockname(2) or of reading the
// namespace; the socket's own Control error.
func KeyOf(s Socket) (Key, error) {
	var k Key
	err := s.Control(func(fd int) error {
		if err := checkSocket(fd); err != nil {
			return err
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		k.Addr = addrPort(sa)
		if k.Addr.Port() == 0 {
			return fmt.Errorf("socket not bound: %w", unix.EINVAL)
		}
		k.NetNS, err = socketNetNS(fd)
		return err
	})
	if err != nil {
		return Key{}, fmt.Errorf("steer key: %w", err)
	}
	return k, nil
}

// socketNetNS returns the inode of fd's network namespace, or, without the
// privilege to ask the socket, of the calling thread's.
func socketNetNS(fd int) (uint64, error) {
	ns, err := socketNetNSStrict(fd)
	if errors.Is(err, unix.EPERM) {
		return NetNS()
	}
	return ns, err
}

// nsInodes maps the netns cookies (SO_NETNS_COOKIE, never reused while the
// kernel runs) of the namespaces seen to their inode numbers, so that a
// socket's namespace is one getsockopt once its namespace was seen.
var nsInodes sync.Map // uint64 -> uint64

// socketNetNSStrict asks the socket for its network namespace: its netns
// cookie, and for a namespace not seen before, the namespace itself
// (SIOCGSKNS, which needs CAP_NET_ADMIN in it).
func socketNetNSStrict(fd int) (uint64, error) {
	cookie, cerr := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if cerr == nil {
		if ino, ok := nsInodes.Load(cookie); ok {
			return ino.(uint64), nil
		}
	}
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		return 0, fmt.Errorf("SIOCGSKNS: %w", err)
	}
	defer unix.Close(nsfd)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		return 0, fmt.Errorf("fstat netns: %w", err)
	}
	if cerr == nil {
		nsInodes.Store(cookie, st.Ino)
	}
	return st.Ino, nil
}

// NetNS returns the inode of the network namespace of the calling
// goroutine's OS thread (internal/netns.Current, on a locked thread).
//
// Errors: the errno of stat(2) on /proc/thread-self/ns/net.
func NetNS() (uint64, error) { return netns.Current() }

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.ZoneId != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.ZoneId), 10))
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
