package rdmabind

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/qp"
)

// Dialer holds the options of a Dial. The zero value dials over rdma_cm
// from the route's source address, with qp's defaults.
type Dialer struct {
	// LocalAddr is the address and port to bind before connecting (an
	// *Addr, *net.TCPAddr or anything whose String is "ip:port"); port 0:
	// an ephemeral port. nil: the source address of the kernel's route to
	// the peer, port 0; an unspecified or nil IP: that address with the
	// port given.
	LocalAddr net.Addr
	// Timeout bounds the whole dial, as net.Dialer's (0: the context's
	// deadline, else qp's setup timeout, 15 s).
	Timeout time.Duration
	// Options tune the connection; Options.Mode picks rdma_cm (default) or
	// the TCP rendezvous (nil: qp's defaults).
	Options *qp.Options
	// Binder gives the socket (nil: the process's shared Binder).
	Binder *bindcore.Binder
}

// Dial connects to address with the default Dialer: see Dialer.DialContext.
func Dial(network, address string) (net.Conn, error) {
	var d Dialer
	return d.DialContext(context.Background(), network, address)
}

// Dial is DialContext without a context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext binds a socket (LocalAddr, or the route's source address
// and port 0) and connects it to address, a listening rdmabind socket;
// network is "rdma", "rdma4", "rdma6", or "tcp", "tcp4", "tcp6" meaning
// the same over RDMA. The Conn owns the socket: its Close frees the port.
//
// Errors: a *net.OpError with Op "dial": net.UnknownNetworkError, a
// *net.AddrError (address does not parse, wrong family), the spec's codes
// of WSPBind for LocalAddr (wsa.ErrAddrNotAvail when it is not the host's
// or no RDMA device serves it, wsa.ErrAddrInUse), unix.ENETUNREACH when
// no route leads to the peer, and qp.Dial's (unix.ECONNREFUSED: nothing
// listens there; unix.ETIMEDOUT, ctx.Err()).
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var local *Addr
	fail := func(remote net.Addr, err error) (net.Conn, error) {
		var src net.Addr
		if local != nil {
			src = local
		}
		return nil, &net.OpError{Op: "dial", Net: network, Source: src, Addr: remote, Err: netErr(err)}
	}
	f, err := dialNetwork(network)
	if err != nil {
		return fail(nil, err)
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	remote, err := resolve(ctx, f, address, false)
	if err != nil {
		return fail(nil, err)
	}
	ra := newAddr(remote)
	var from netip.AddrPort
	if d.LocalAddr != nil {
		ap, ok := addrPortOf(d.LocalAddr)
		if !ok {
			return fail(ra, &net.AddrError{Err: "local address is not ip:port", Addr: d.LocalAddr.String()})
		}
		from = ap
	}
	if !from.Addr().IsValid() || from.Addr().IsUnspecified() {
		// No LocalAddr, or any address: the route's source, and the
		// port asked for (0: an ephemeral one).
		src, err := RouteSource(remote)
		if err != nil {
			return fail(ra, err)
		}
		from = netip.AddrPortFrom(src.Addr(), from.Port())
	}
	local = newAddr(from)
	if from.Addr().Is4() != remote.Addr().Is4() {
		return fail(ra, &net.AddrError{Err: "local and remote addresses of different families", Addr: local.String()})
	}
	b, err := binderOr(d.Binder)
	if err != nil {
		return fail(ra, err)
	}
	s, err := b.Socket(bindcore.FamilyOf(from.Addr()))
	if err != nil {
		return fail(ra, err)
	}
	if err = s.BindAddrPort(from); err == nil {
		var ep bindcore.Endpoint
		if ep, err = s.Endpoint(); err == nil {
			local = newAddr(ep.Local)
		}
	}
	var c *qp.Conn
	if err == nil {
		c, err = qp.Dial(ctx, s, remote, d.Options)
	}
	if err != nil {
		s.Close()
		return fail(ra, err)
	}
	return newConn(c, network, s), nil
}

// DialSocket connects s, a bound socket, to remote (qp.Dial) and gives the
// connection as a stream: what DialContext does after its bind, for callers
// that made the socket themselves (the C API). The Conn does not own s:
// closing it leaves s bound.
//
// Errors: qp.Dial's, unwrapped.
func DialSocket(ctx context.Context, s *bindcore.Socket, remote netip.AddrPort, o *qp.Options) (*Conn, error) {
	c, err := qp.Dial(ctx, s, remote, o)
	if err != nil {
		return nil, err
	}
	return newConn(c, "rdma", nil), nil
}

// RouteSource is the source address of the kernel's route to remote, port
// 0: what a Dialer without LocalAddr binds. A UDP socket connected to
// remote (no packet is sent) has it as its local address.
//
// Errors: matching unix.ENETUNREACH when no route leads there.
func RouteSource(remote netip.AddrPort) (netip.AddrPort, error) {
	uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("no route to %v: %w", remote.Addr(), unix.ENETUNREACH)
	}
	defer uc.Close()
	src := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	return netip.AddrPortFrom(src.Addr().Unmap(), 0), nil
}
