package rdmabind

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/qp"
)

// ListenConfig holds the options of a Listen.
type ListenConfig struct {
	// Backlog is the listen backlog (0: 128).
	Backlog int
	// Options tune the connections accepted (nil: qp's defaults).
	Options *qp.Options
	// Binder gives the socket (nil: the process's shared Binder).
	Binder *bindcore.Binder
}

// Listen listens on the local address with the default configuration:
// see ListenConfig.Listen.
func Listen(network, address string) (net.Listener, error) {
	var lc ListenConfig
	return lc.Listen(context.Background(), network, address)
}

// Listen binds a socket to address ("ip:port"; an empty ip or the
// unspecified address is the wildcard, port 0 a free port) and listens on
// it: the returned net.Listener's Accept gives *Conn streams, set up over
// rdma_cm or the TCP rendezvous. Other processes may listen on the same
// address and port: the first is the designated listener, which receives
// the connections, the others stand by and take over in turn when it
// closes (the standby's Accept waits meanwhile). ctx bounds the bind and
// the listen (not the Listener's life).
//
// Errors: a *net.OpError with Op "listen": net.UnknownNetworkError, a
// *net.AddrError for an address that does not parse; the spec's codes of
// WSPBind (wsa.ErrAddrNotAvail for an address that is not the host's or
// that no RDMA device serves, wsa.ErrAddrInUse, wsa.ErrNetDown ...) and
// of listening.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	fail := func(addr net.Addr, err error) (net.Listener, error) {
		return nil, &net.OpError{Op: "listen", Net: network, Addr: addr, Err: netErr(err)}
	}
	f, err := listenNetwork(network)
	if err != nil {
		return fail(nil, err)
	}
	ap, err := resolve(ctx, f, address, true)
	if err != nil {
		return fail(nil, err)
	}
	b, err := binderOr(lc.Binder)
	if err != nil {
		return fail(newAddr(ap), err)
	}
	s, err := b.Socket(bindcore.FamilyOf(ap.Addr()))
	if err != nil {
		return fail(newAddr(ap), err)
	}
	ln, err := lc.listen(ctx, s, ap)
	if err != nil {
		s.Close()
		return fail(newAddr(ap), err)
	}
	ln.network = network
	return ln, nil
}

func (lc *ListenConfig) listen(ctx context.Context, s *bindcore.Socket, ap netip.AddrPort) (*Listener, error) {
	if err := s.BindAddrPort(ap); err != nil {
		return nil, err
	}
	backlog := lc.Backlog
	if backlog <= 0 {
		backlog = 128
	}
	if err := s.ListenContext(ctx, backlog); err != nil {
		return nil, err
	}
	return NewListener(s, lc.Options)
}

// NewListener gives a net.Listener of streams on s, a bound socket that
// listens (Socket.Listen): what Listen does after its bind and listen, for
// callers that made the socket themselves (the C API). The Listener owns s:
// its Close closes s.
//
// Errors: those of s.Endpoint and qp.NewListener (WSAENOTSOCK, WSAEINVAL
// when s is not listening).
func NewListener(s *bindcore.Socket, o *qp.Options) (*Listener, error) {
	ep, err := s.Endpoint()
	if err != nil {
		return nil, err
	}
	l, err := qp.NewListener(s, o)
	if err != nil {
		return nil, err
	}
	return &Listener{network: "rdma", s: s, l: l, addr: newAddr(ep.Local)}, nil
}

// Listener is a net.Listener of rdmabind streams.
type Listener struct {
	network string
	s       *bindcore.Socket
	l       *qp.Listener
	addr    *Addr

	closeOnce sync.Once
	closeErr  error
}

var _ net.Listener = (*Listener)(nil)

// Accept waits for the next connection (a *Conn) and returns it. A standby
// listener's Accept waits until it is the designated one and a connection
// comes.
//
// Errors: a *net.OpError with Op "accept" whose Err matches net.ErrClosed
// after Close.
func (ln *Listener) Accept() (net.Conn, error) {
	c, err := ln.l.Accept(context.Background()) // Close ends it: ErrClosed
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: ln.network, Addr: ln.addr, Err: err}
	}
	return newConn(c, ln.network, nil), nil
}

// Close stops listening: the socket's port is free (a standby of another
// process takes over), a waiting Accept returns, the connections accepted
// stay open. Safe to call more than once.
func (ln *Listener) Close() error {
	ln.closeOnce.Do(func() {
		err := errors.Join(ln.l.Close(), ln.s.Close())
		if err != nil {
			ln.closeErr = &net.OpError{Op: "close", Net: ln.network, Addr: ln.addr, Err: err}
		}
	})
	return ln.closeErr
}

// Addr is the address listened on (an *Addr), with the port bound (port 0
// asked: the one picked).
func (ln *Listener) Addr() net.Addr { return ln.addr }

// Socket is the listening bindcore socket, for its listen state (role,
// designated) and device events.
func (ln *Listener) Socket() *bindcore.Socket { return ln.s }
