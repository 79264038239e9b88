package rdmacm

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The active and passive sides of a connection: resolve, connect, accept,
// reject, disconnect, and moving an ID to another channel. Each call starts
// an operation whose outcome arrives as an event on the ID's channel
// (EventAddrResolved, EventRouteResolved, EventEstablished, EventRejected,
// ...); none of them waits for it.

// ConnParam is struct rdma_conn_param: what Connect and Accept send.
type ConnParam struct {
	// PrivateData goes with the request or the reply: at most 56 bytes
	// for a connect request and 196 for an accept (RDMA_PS_TCP over IB
	// CM); librdmacm rejects more with EINVAL.
	PrivateData []byte
	// ResponderResources and InitiatorDepth are the RDMA read/atomic
	// depths (0 when only sends and writes are used).
	ResponderResources, InitiatorDepth uint8
	// RetryCount is the transport retry count (0-7), RNRRetryCount the
	// receiver-not-ready retry count (0-7, 7 = retry forever).
	RetryCount, RNRRetryCount uint8
}

// addrArg is an address as the C side takes it.
type addrArg struct {
	ip    netip.Addr
	port  uint16
	scope uint32
}

// connOps is the part of a cm_id that connections use. The C side
// implements it; a test fake need not.
type connOps interface {
	resolveAddr(src, dst addrArg, timeoutMs int) error
	resolveRoute(timeoutMs int) error
	connect(p ConnParam) error
	accept(p ConnParam) error
	reject(priv []byte) error
	disconnect() error
	migrate(to channelOps) error
	peerAddr() netip.AddrPort
}

func (id *ID) conn(op string, fn func(connOps) error) error {
	err := id.do(func(o idOps) error {
		c, ok := o.(connOps)
		if !ok {
			return unix.EOPNOTSUPP
		}
		return fn(c)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

func toArg(ap netip.AddrPort) (addrArg, error) {
	if !ap.IsValid() {
		return addrArg{}, nil
	}
	scope, err := scopeID(ap.Addr())
	if err != nil {
		return addrArg{}, err
	}
	return addrArg{ip: ap.Addr().WithZone(""), port: ap.Port(), scope: scope}, nil
}

func millis(d time.Duration) int {
	if d <= 0 {
		return 2000
	}
	return int(max(d.Milliseconds(), 1))
}

// ResolveAddr starts resolving dst to an RDMA address (rdma_resolve_addr),
// binding the ID to src first if it is valid (port 0: a free rdma_cm port)
// and the ID not bound yet. The result is EventAddrResolved or
// EventAddrError on the channel, within timeout (2 s for 0 or less).
//
// Errors: EINVAL (dst invalid, the ID already resolving), EADDRNOTAVAIL or
// ENODEV for a src that is not an RDMA address of this host, EADDRINUSE,
// ENXIO for an unknown zone, ErrClosed.
func (id *ID) ResolveAddr(src, dst netip.AddrPort, timeout time.Duration) error {
	op := fmt.Sprintf("rdma_resolve_addr %v -> %v", src, dst)
	if !dst.IsValid() {
		return fmt.Errorf("%s: %w", op, unix.EINVAL)
	}
	s, err := toArg(src)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	d, err := toArg(dst)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return id.conn(op, func(c connOps) error { return c.resolveAddr(s, d, millis(timeout)) })
}

// ResolveRoute starts resolving the route to the resolved address
// (rdma_resolve_route): EventRouteResolved or EventRouteError follows.
//
// Errors: EINVAL before EventAddrResolved, ErrClosed.
func (id *ID) ResolveRoute(timeout time.Duration) error {
	return id.conn("rdma_resolve_route", func(c connOps) error { return c.resolveRoute(millis(timeout)) })
}

// Connect sends a connection request (rdma_connect) once the route is
// resolved. With a QP created on the ID (cgo/verbs CreateQPOnID),
// librdmacm moves it to RTR and RTS when the reply comes, and the channel
// reports EventEstablished (its PrivateData is the reply's); otherwise
// EventRejected, EventUnreachable or EventConnectError.
//
// Errors: EINVAL (no route yet, private data too long), ErrClosed.
func (id *ID) Connect(p ConnParam) error {
	return id.conn("rdma_connect", func(c connOps) error { return c.connect(p) })
}

// Accept accepts the connect request the ID was created for (rdma_accept),
// moving its QP to RTR and RTS. EventEstablished follows on the channel.
//
// Errors: EINVAL (not a request's ID, private data too long), ErrClosed.
func (id *ID) Accept(p ConnParam) error {
	return id.conn("rdma_accept", func(c connOps) error { return c.accept(p) })
}

// Reject refuses the connect request the ID was created for (rdma_reject),
// with priv (at most 148 bytes) for the requester's EventRejected. Close the
// ID afterwards.
//
// Errors: EINVAL, ErrClosed.
func (id *ID) Reject(priv []byte) error {
	return id.conn("rdma_reject", func(c connOps) error { return c.reject(priv) })
}

// Disconnect tears the connection down (rdma_disconnect): the ID's QP goes
// to the error state, and both sides get EventDisconnected.
//
// Errors: EINVAL when not connected, ErrClosed.
func (id *ID) Disconnect() error {
	return id.conn("rdma_disconnect", func(c connOps) error { return c.disconnect() })
}

// PeerAddr returns the remote address and port (rdma_get_peer_addr): the
// destination of a resolved ID, the requester of an accepted one. The zero
// AddrPort when there is none.
func (id *ID) PeerAddr() netip.AddrPort {
	var ap netip.AddrPort
	id.conn("peer", func(c connOps) error {
		ap = c.peerAddr()
		return nil
	})
	return ap
}

// Migrate moves the ID to the channel to (rdma_migrate_id): from its return
// on, the ID's events arrive there, and the ID keeps to alive instead of its
// old channel. A connection takes its ID off a shared channel (the listener's)
// this way, so that its own events reach it alone. Events already read from
// the old channel stay there.
//
// Errors: ErrClosed (the ID, or either channel, closed), the errno of
// rdma_migrate_id.
func (id *ID) Migrate(to *EventChannel) error {
	const op = "rdma_migrate_id"
	nc := to.core()
	if nc == nil || id == nil || id.s == nil {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	defer runtime.KeepAlive(to)
	nc.life.RLock()
	defer nc.life.RUnlock()
	if nc.isClosing() {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	st := id.s
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ops == nil {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	c, ok := st.ops.(connOps)
	if !ok {
		return fmt.Errorf("%s: %w", op, unix.EOPNOTSUPP)
	}
	oc := st.core
	if oc == nc {
		return nil
	}
	if err := c.migrate(nc.ops); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	oc.mu.Lock()
	ent := oc.ids[st.key]
	delete(oc.ids, st.key)
	oc.mu.Unlock()
	nc.mu.Lock()
	nc.ids[st.key] = idEntry{st: st, w: ent.w}
	nc.mu.Unlock()
	st.core = nc
	id.ch.Store(to)
	return nil
}
