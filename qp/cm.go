package qp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/cgo/verbs"
)

// The rdma_cm side of connections. Each connection has an event channel of
// its own, so its events (ESTABLISHED, DISCONNECTED, DEVICE_REMOVAL, ...)
// reach it alone: a dialled id is created on it, an accepted one is moved
// to it (rdma_migrate_id) off the Binder's channel, where its connect
// request arrived, before it is accepted.

// cmConnParam: transport retries 7, RNR retries forever (the credits make
// RNR rare; a goodbye may still meet one).
func cmConnParam(h hello) rdmacm.ConnParam {
	return rdmacm.ConnParam{PrivateData: h.marshal(), RetryCount: 7, RNRRetryCount: 7}
}

// waitEvent waits for the event want on ch, and turns the error events
// into errors.
func waitEvent(ctx context.Context, ch *rdmacm.EventChannel, want rdmacm.EventType) (rdmacm.Event, error) {
	for {
		ev, err := ch.GetEvent(ctx)
		if err != nil {
			return ev, err
		}
		switch {
		case ev.Type == want:
			return ev, nil
		case ev.Type == rdmacm.EventRejected:
			return ev, ev.Err()
		case ev.Type == rdmacm.EventUnreachable:
			return ev, fmt.Errorf("%v: %w", ev.Type, errors.Join(ev.Err(), unix.EHOSTUNREACH))
		case ev.Err() != nil:
			return ev, ev.Err()
		case ev.Type == rdmacm.EventDisconnected, ev.Type == rdmacm.EventDeviceRemoval,
			ev.Type == rdmacm.EventAddrError, ev.Type == rdmacm.EventRouteError,
			ev.Type == rdmacm.EventConnectError:
			return ev, fmt.Errorf("%v while waiting for %v: %w", ev.Type, want, unix.ECONNABORTED)
		}
	}
}

// dialCM connects from the socket's address, with an rdma_cm port of its
// own (the socket's port belongs to the listener of that port when there
// is one, see docs/qp.md), to remote.
func dialCM(ctx context.Context, ep bindcore.Endpoint, remote netip.AddrPort, o Options) (c *Conn, err error) {
	ch, err := rdmacm.NewEventChannel()
	if err != nil {
		return nil, err
	}
	c = &Conn{mode: ModeCM, local: ep.Local, remote: remote, opts: o, ch: ch}
	defer func() {
		if err != nil {
			c.freeSetup()
			c = nil
		}
	}()
	if c.id, err = ch.CreateID(rdmacm.PortSpaceTCP); err != nil {
		return c, err
	}
	src := netip.AddrPortFrom(ep.Local.Addr(), 0)
	if src.Addr().IsUnspecified() {
		src = netip.AddrPort{}
	}
	tmo := timeoutOf(ctx, o)
	if err = c.id.ResolveAddr(src, remote, tmo); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventAddrResolved); err != nil {
		return c, err
	}
	if err = c.id.ResolveRoute(tmo); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventRouteResolved); err != nil {
		return c, err
	}
	if err = c.setupQPOnID(); err != nil {
		return c, err
	}
	if err = c.id.Connect(cmConnParam(c.hello(ep.Local.Port()))); err != nil {
		return c, err
	}
	ev, err := waitEvent(ctx, ch, rdmacm.EventEstablished)
	if err != nil {
		return c, err
	}
	peer, err := parseHello(ev.PrivateData)
	if err != nil {
		return c, err
	}
	c.init(peer)
	go c.monitorCM()
	return c, nil
}

// acceptCM accepts a connect request: it moves the request's id to a
// channel of its own, creates the QP on it and accepts.
func acceptCM(ctx context.Context, local netip.AddrPort, req bindcore.RDMARequest, o Options) (c *Conn, err error) {
	peer, err := parseHello(req.PrivateData)
	if err != nil {
		req.ID.Reject(nil)
		req.ID.Close()
		return nil, err
	}
	ch, err := rdmacm.NewEventChannel()
	if err != nil {
		req.ID.Close()
		return nil, err
	}
	remote := req.ID.PeerAddr()
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), peer.port)
	c = &Conn{mode: ModeCM, local: local, remote: remote, opts: o, ch: ch, id: req.ID}
	defer func() {
		if err != nil {
			c.freeSetup()
			c = nil
		}
	}()
	if err = req.ID.Migrate(ch); err != nil {
		return c, err
	}
	if err = c.setupQPOnID(); err != nil {
		return c, err
	}
	if err = c.id.Accept(cmConnParam(c.hello(local.Port()))); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventEstablished); err != nil {
		return c, err
	}
	c.init(peer)
	go c.monitorCM()
	return c, nil
}

// setupQPOnID allocates the resources on the id's device and creates the
// QP on the id (rdma_create_qp), with every receive buffer posted.
func (c *Conn) setupQPOnID() error {
	vctx, err := verbs.ContextOf(c.id)
	if err != nil {
		return err
	}
	if c.res, err = newResources(vctx, c.opts); err != nil {
		return err
	}
	if c.res.qp, err = c.res.pd.CreateQPOnID(c.id, c.res.scq, c.res.rcq, c.res.caps()); err != nil {
		return err
	}
	return c.res.postRecvs()
}

func (c *Conn) hello(port uint16) hello {
	return hello{
		mode:      c.mode,
		port:      port,
		recvDepth: uint32(c.res.nrecv - 1), // the extra buffer is the goodbye's
		chunk:     uint32(c.res.chunk),
		ctrlAddr:  c.res.ctrlAddr(),
		ctrlKey:   c.res.mr.RKey(),
		bulk:      uint8(c.res.bulk / bulkUnit),
	}
}

// monitorCM watches the connection's events until its channel closes: a
// disconnect, a device removal or any error breaks the connection.
func (c *Conn) monitorCM() {
	defer close(c.monDone)
	for {
		ev, err := c.ch.GetEvent(context.Background())
		if err != nil {
			if errors.Is(err, rdmacm.ErrClosed) {
				return
			}
			c.fail(fmt.Errorf("rdma_cm events: %w", err))
			return
		}
		switch ev.Type {
		case rdmacm.EventDisconnected:
			c.fail(fmt.Errorf("peer disconnected (%v): %w", ev.Type, unix.ECONNRESET))
		case rdmacm.EventDeviceRemoval:
			c.fail(fmt.Errorf("%v: %w", ev.Type, unix.ENETDOWN))
		case rdmacm.EventTimewaitExit, rdmacm.EventEstablished:
		default:
			if e := ev.Err(); e != nil {
				c.fail(fmt.Errorf("%v: %w", ev.Type, e))
			}
		}
	}
}

// freeSetup frees what a failed setup got, in order.
func (c *Conn) freeSetup() {
	if c.res != nil {
		c.res.free()
	}
	if c.id != nil {
		c.id.Close()
	}
	if c.ch != nil {
		c.ch.Close()
	}
	if c.tcp != nil {
		c.tcp.Close()
	}
}
