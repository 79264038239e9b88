//go:build linux && cgo

package main

/*
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
*/
import "C"

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind"
	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

const (
	invalidSocket = ^C.uintptr_t(0)
	socketError   = C.int(-1)
	maxSockaddr   = 28 // sizeof(struct sockaddr_in6)
)

// fail stores code at lpErrno (when not NULL).
func fail(lpErrno *C.int, code int) {
	if lpErrno != nil {
		*lpErrno = C.int(code)
	}
}

// failErr stores err's code; it returns SOCKET_ERROR.
func failErr(lpErrno *C.int, err error) C.int {
	fail(lpErrno, codeOf(err))
	return socketError
}

// nameBytes copies the sockaddr at name: at most its family's largest
// size, namelen permitting (nil for a NULL name, empty for namelen <= 0,
// which the parser answers with WSAEFAULT).
func nameBytes(name *C.struct_sockaddr, namelen C.int) []byte {
	if name == nil {
		return nil
	}
	if namelen <= 0 {
		return []byte{}
	}
	return C.GoBytes(unsafe.Pointer(name), C.int(min(int(namelen), maxSockaddr)))
}

// putName writes ap as a sockaddr of fam at name, *namelen the buffer's
// size on entry and the address's length on return: WSAEFAULT when name
// or namelen is NULL or the buffer is too small.
func putName(fam bindcore.Family, ap netip.AddrPort, name *C.struct_sockaddr, namelen *C.int) int {
	sa, err := bindcore.SockaddrFromAddrPort(fam, ap)
	if err != nil {
		return codeOf(err)
	}
	b := sa.Encode()
	if name == nil || namelen == nil || int(*namelen) < len(b) {
		return int(wsa.WSAEFAULT)
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(name)), len(b)), b)
	*namelen = C.int(len(b))
	return 0
}

//export WSPSocket
func WSPSocket(af, typ, protocol C.int, lpErrno *C.int) C.uintptr_t {
	var fam bindcore.Family
	switch af {
	case unix.AF_INET:
		fam = bindcore.AFInet
	case unix.AF_INET6:
		fam = bindcore.AFInet6
	default:
		fail(lpErrno, wsaEAFNOSUPPORT)
		return invalidSocket
	}
	if typ != unix.SOCK_STREAM {
		fail(lpErrno, wsaESOCKTNOSUPPORT)
		return invalidSocket
	}
	if protocol != 0 && protocol != unix.IPPROTO_TCP {
		fail(lpErrno, wsaEPROTONOSUPPORT)
		return invalidSocket
	}
	b, err := theBinder()
	if err != nil {
		failErr(lpErrno, err)
		return invalidSocket
	}
	s, err := b.Socket(fam)
	if err != nil {
		failErr(lpErrno, err)
		return invalidSocket
	}
	return C.uintptr_t(add(&sock{fam: fam, s: s}))
}

// get is the live sock of h, locked; WSAENOTSOCK for any other handle.
func get(h C.uintptr_t, lpErrno *C.int) *sock {
	s := lookup(uintptr(h))
	if s == nil {
		fail(lpErrno, int(wsa.WSAENOTSOCK))
		return nil
	}
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		fail(lpErrno, int(wsa.WSAENOTSOCK))
		return nil
	}
	return s
}

//export WSPBind
func WSPBind(h C.uintptr_t, name *C.struct_sockaddr, namelen C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	if s.s == nil {
		fail(lpErrno, int(wsa.WSAEINVAL)) // a connection of WSPAccept
		return socketError
	}
	if err := s.s.Bind(nameBytes(name, namelen)); err != nil {
		return failErr(lpErrno, err)
	}
	return 0
}

//export WSPListen
func WSPListen(h C.uintptr_t, backlog C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	switch {
	case s.s == nil, s.conn != nil:
		fail(lpErrno, wsaEISCONN)
		return socketError
	case s.ln != nil:
		return 0 // listening already: Winsock lets Listen be called again
	}
	if err := s.s.Listen(int(backlog)); err != nil {
		return failErr(lpErrno, err)
	}
	ln, err := rdmabind.NewListener(s.s, nil)
	if err != nil {
		return failErr(lpErrno, err)
	}
	s.ln = ln
	return 0
}

//export WSPAccept
func WSPAccept(h C.uintptr_t, addr *C.struct_sockaddr, addrlen *C.int, lpErrno *C.int) C.uintptr_t {
	s := get(h, lpErrno)
	if s == nil {
		return invalidSocket
	}
	ln, fam := s.ln, s.fam
	s.mu.Unlock() // Accept waits: WSPCloseSocket from another thread ends it
	if ln == nil {
		fail(lpErrno, int(wsa.WSAEINVAL))
		return invalidSocket
	}
	// Checked before the wait: a connection is never accepted only to be
	// dropped for a buffer too small for its address.
	if addr != nil && (addrlen == nil || int(*addrlen) < fam.Size()) {
		fail(lpErrno, int(wsa.WSAEFAULT))
		return invalidSocket
	}
	nc, err := ln.Accept()
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			fail(lpErrno, int(wsa.WSAENOTSOCK))
		} else {
			failErr(lpErrno, err)
		}
		return invalidSocket
	}
	c := nc.(*rdmabind.Conn)
	if addr != nil {
		if code := putName(fam, c.RemoteAddr().(*rdmabind.Addr).AddrPort, addr, addrlen); code != 0 {
			c.Close()
			fail(lpErrno, code)
			return invalidSocket
		}
	}
	return C.uintptr_t(add(&sock{fam: fam, conn: c}))
}

// connectTimeout bounds WSPConnect (a blocking connect in Winsock ends
// with WSAETIMEDOUT too).
const connectTimeout = 30 * time.Second

//export WSPConnect
func WSPConnect(h C.uintptr_t, name *C.struct_sockaddr, namelen C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	switch {
	case s.conn != nil:
		fail(lpErrno, wsaEISCONN)
		return socketError
	case s.cancel != nil:
		fail(lpErrno, wsaEALREADY) // another thread connects it
		return socketError
	case s.ln != nil:
		fail(lpErrno, int(wsa.WSAEINVAL))
		return socketError
	}
	sa, err := bindcore.ParseSockaddr(s.fam, nameBytes(name, namelen))
	if err != nil {
		return failErr(lpErrno, err)
	}
	remote := sa.AddrPort()
	if remote.Addr().Unmap().IsUnspecified() || remote.Port() == 0 {
		fail(lpErrno, int(wsa.WSAEADDRNOTAVAIL))
		return socketError
	}
	if _, err := s.s.Endpoint(); err != nil {
		// Not bound: bind the route's source address, port 0, first.
		src, err := rdmabind.RouteSource(netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
		if err != nil {
			return failErr(lpErrno, err)
		}
		if err := s.s.BindAddrPort(src); err != nil {
			return failErr(lpErrno, err)
		}
	}
	// The dial waits without the lock: WSPCloseSocket from another thread
	// cancels it (the connect then fails with WSAEINTR).
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	s.cancel = cancel
	sk := s.s
	s.mu.Unlock()
	c, err := rdmabind.DialSocket(ctx, sk, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), nil)
	s.mu.Lock()
	s.cancel = nil
	if s.dead {
		if c != nil {
			c.Close()
		}
		fail(lpErrno, wsaEINTR)
		return socketError
	}
	if err != nil {
		return failErr(lpErrno, err)
	}
	s.conn = c
	return 0
}

// connOf is the connection of h (WSAENOTCONN without one).
func connOf(h C.uintptr_t, lpErrno *C.int) *rdmabind.Conn {
	s := get(h, lpErrno)
	if s == nil {
		return nil
	}
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		fail(lpErrno, wsaENOTCONN)
	}
	return c
}

// ioBuf is the connection of h and the n bytes at buf, for WSPSend and
// WSPRecv; ok false when the call fails (its code stored).
func ioBuf(h C.uintptr_t, buf unsafe.Pointer, n C.int, lpErrno *C.int) (c *rdmabind.Conn, p []byte, ok bool) {
	if c = connOf(h, lpErrno); c == nil {
		return nil, nil, false
	}
	if n < 0 || (buf == nil && n > 0) {
		fail(lpErrno, int(wsa.WSAEFAULT))
		return nil, nil, false
	}
	if n > 0 {
		p = unsafe.Slice((*byte)(buf), int(n))
	}
	return c, p, true
}

//export WSPSend
func WSPSend(h C.uintptr_t, buf unsafe.Pointer, n C.int, lpErrno *C.int) C.int {
	c, p, ok := ioBuf(h, buf, n, lpErrno)
	if !ok {
		return socketError
	}
	if len(p) == 0 {
		return 0
	}
	if _, err := c.Write(p); err != nil {
		return failErr(lpErrno, err)
	}
	return n
}

//export WSPRecv
func WSPRecv(h C.uintptr_t, buf unsafe.Pointer, n C.int, lpErrno *C.int) C.int {
	c, p, ok := ioBuf(h, buf, n, lpErrno)
	if !ok {
		return socketError
	}
	if len(p) == 0 {
		return 0
	}
	got, err := c.Read(p)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0
		}
		return failErr(lpErrno, err)
	}
	return C.int(got)
}

//export WSPGetSockName
func WSPGetSockName(h C.uintptr_t, name *C.struct_sockaddr, namelen *C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	var ap netip.AddrPort
	switch {
	case s.conn != nil && s.s == nil:
		ap = s.conn.LocalAddr().(*rdmabind.Addr).AddrPort
	default:
		ep, err := s.s.Endpoint()
		if err != nil {
			return failErr(lpErrno, err) // WSAEINVAL: not bound
		}
		ap = ep.Local
	}
	if code := putName(s.fam, ap, name, namelen); code != 0 {
		fail(lpErrno, code)
		return socketError
	}
	return 0
}

//export WSPGetPeerName
func WSPGetPeerName(h C.uintptr_t, name *C.struct_sockaddr, namelen *C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	if s.conn == nil {
		fail(lpErrno, wsaENOTCONN)
		return socketError
	}
	if code := putName(s.fam, s.conn.RemoteAddr().(*rdmabind.Addr).AddrPort, name, namelen); code != 0 {
		fail(lpErrno, code)
		return socketError
	}
	return 0
}

//export WSPCloseSocket
func WSPCloseSocket(h C.uintptr_t, lpErrno *C.int) C.int {
	s := remove(uintptr(h))
	if s == nil {
		fail(lpErrno, int(wsa.WSAENOTSOCK))
		return socketError
	}
	// A WSPAccept waiting on the listener returns (its Close ends it)
	// before the lock is taken: WSPAccept does not hold it while waiting.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = true
	if s.cancel != nil {
		s.cancel() // a WSPConnect under way returns WSAEINTR
	}
	var errs []error
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	if s.ln != nil {
		errs = append(errs, s.ln.Close()) // closes s.s too
	} else if s.s != nil {
		errs = append(errs, s.s.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return failErr(lpErrno, err)
	}
	return 0
}

//export WSPCleanup
func WSPCleanup(lpErrno *C.int) C.int {
	table.Lock()
	hs := make([]uintptr, 0, len(table.m))
	for h := range table.m {
		hs = append(hs, h)
	}
	table.Unlock()
	var errs []error
	for _, h := range hs {
		var code C.int
		if WSPCloseSocket(C.uintptr_t(h), &code) == socketError && int(code) != int(wsa.WSAENOTSOCK) {
			errs = append(errs, wsa.New(wsa.Code(code), "cleanup", "socket", "closing %#x", h))
		}
	}
	binder.Lock()
	if binder.b != nil {
		errs = append(errs, binder.b.Close())
		binder.b = nil
	}
	binder.Unlock()
	if err := errors.Join(errs...); err != nil {
		return failErr(lpErrno, err)
	}
	return 0
}

//export rdmabind_endpoint
func rdmabind_endpoint(h C.uintptr_t, device *C.char, devlen C.int, port, gidIndex *C.int, lpErrno *C.int) C.int {
	s := get(h, lpErrno)
	if s == nil {
		return socketError
	}
	defer s.mu.Unlock()
	if s.s == nil {
		fail(lpErrno, int(wsa.WSAEINVAL))
		return socketError
	}
	ep, err := s.s.Endpoint()
	if err != nil {
		return failErr(lpErrno, err)
	}
	if device != nil {
		if int(devlen) < len(ep.Device)+1 {
			fail(lpErrno, int(wsa.WSAEFAULT))
			return socketError
		}
		b := unsafe.Slice((*byte)(unsafe.Pointer(device)), int(devlen))
		n := copy(b, ep.Device)
		b[n] = 0
	}
	if port != nil {
		*port = C.int(ep.Port)
	}
	if gidIndex != nil {
		*gidIndex = C.int(ep.GIDIndex)
	}
	return 0
}

//export rdmabind_open_sockets
func rdmabind_open_sockets() C.int { return C.int(openSockets()) }

//export rdmabind_bench_go_bind
func rdmabind_bench_go_bind(name *C.struct_sockaddr, namelen C.int, n C.int, lpErrno *C.int) C.int64_t {
	raw := nameBytes(name, namelen)
	if raw == nil || len(raw) < 2 || n <= 0 {
		fail(lpErrno, int(wsa.WSAEFAULT))
		return -1
	}
	fam := bindcore.Family(*(*uint16)(unsafe.Pointer(&raw[0])))
	b, err := theBinder()
	if err != nil {
		failErr(lpErrno, err)
		return -1
	}
	ts := make([]time.Duration, 0, int(n))
	for range int(n) {
		t0 := time.Now()
		s, err := b.Socket(fam)
		if err == nil {
			err = s.Bind(raw)
			s.Close()
		}
		if err != nil {
			failErr(lpErrno, err)
			return -1
		}
		ts = append(ts, time.Since(t0))
	}
	slices.Sort(ts)
	return C.int64_t(ts[len(ts)/2].Nanoseconds())
}
