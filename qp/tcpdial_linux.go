package qp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// dialTCPFrom connects to remote over kernel TCP from local, the bound
// socket's own address and port: a plain IPPROTO_TCP socket (never MPTCP,
// which Go would pick for a net.Dialer where the kernel allows it) with
// SO_REUSEPORT, like the socket's shadow reservation, so the bind shares the
// port with it. Like any TCP connection, only one can exist per (local,
// remote) pair.
func dialTCPFrom(ctx context.Context, local, remote netip.AddrPort) (net.Conn, error) {
	op := fmt.Sprintf("rendezvous dial %v -> %v", local, remote)
	domain := unix.AF_INET
	if !remote.Addr().Unmap().Is4() || !local.Addr().Unmap().Is4() {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("%s: socket: %w", op, err)
	}
	f := os.NewFile(uintptr(fd), "rendezvous")
	defer f.Close() // net.FileConn dups it
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return nil, fmt.Errorf("%s: SO_REUSEPORT: %w", op, err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, fmt.Errorf("%s: TCP_NODELAY: %w", op, err)
	}
	if domain == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return nil, fmt.Errorf("%s: IPV6_V6ONLY: %w", op, err)
		}
	}
	if err := unix.Bind(fd, sockaddr(domain, local)); err != nil {
		return nil, fmt.Errorf("%s: bind: %w", op, err)
	}
	err = unix.Connect(fd, sockaddr(domain, remote))
	if err != nil && err != unix.EINPROGRESS {
		return nil, fmt.Errorf("%s: connect: %w", op, err)
	}
	if err == unix.EINPROGRESS {
		if d, ok := ctx.Deadline(); ok {
			f.SetWriteDeadline(d)
		}
		stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		var soErr int
		werr := rc.Write(func(fd uintptr) bool {
			soErr, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
			if err != nil || (soErr != 0 && soErr != int(unix.EINPROGRESS) && soErr != int(unix.EALREADY)) {
				return true
			}
			// Connected once it has a peer; until then wait for writability.
			_, perr := unix.Getpeername(int(fd))
			return perr == nil
		})
		if werr != nil {
			if errors.Is(werr, os.ErrDeadlineExceeded) && ctx.Err() != nil {
				werr = ctx.Err()
			}
			return nil, fmt.Errorf("%s: connect: %w", op, werr)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: SO_ERROR: %w", op, err)
		}
		if soErr != 0 {
			return nil, fmt.Errorf("%s: connect: %w", op, unix.Errno(soErr))
		}
		f.SetWriteDeadline(time.Time{})
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

func sockaddr(domain int, ap netip.AddrPort) unix.Sockaddr {
	if domain == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
