package qp

import (
	"bytes"
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
		if done, err := setupEvent(ev, want); done {
			return ev, err
		}
	}
}

// setupEvent is what an event means to a setup waiting for want: done with
// the error (nil for want itself), or not done (an event to skip).
func setupEvent(ev rdmacm.Event, want rdmacm.EventType) (bool, error) {
	switch {
	case ev.Type == want:
		return true, nil
	case ev.Type == rdmacm.EventRejected:
		return true, ev.Err()
	case ev.Type == rdmacm.EventUnreachable:
		return true, fmt.Errorf("%v: %w", ev.Type, errors.Join(ev.Err(), unix.EHOSTUNREACH))
	case ev.Err() != nil:
		return true, ev.Err()
	case ev.Type == rdmacm.EventDisconnected, ev.Type == rdmacm.EventDeviceRemoval,
		ev.Type == rdmacm.EventAddrError, ev.Type == rdmacm.EventRouteError,
		ev.Type == rdmacm.EventConnectError:
		return true, fmt.Errorf("%v while waiting for %v: %w", ev.Type, want, unix.ECONNABORTED)
	}
	return false, nil
}

// dialCM connects from the socket's address, with an rdma_cm port of its
// own (the socket's port belongs to the listener of that port when there
// is one, see docs/qp.md), to remote.
func dialCM(ctx context.Context, ep bindcore.Endpoint, remote netip.AddrPort, o Options) (c *Conn, err error) {
	ch, err := rdmacm.NewEventChannel()
	if err != nil {
		return nil, err
	}
	l := &cmLink{ch: ch}
	c = &Conn{mode: ModeCM, local: ep.Local, remote: remote, opts: o, lay: newLayout(o), link: l}
	defer func() {
		if err != nil {
			c.freeSetup()
			c = nil
		}
	}()
	if l.id, err = ch.CreateID(rdmacm.PortSpaceTCP); err != nil {
		return c, err
	}
	src := netip.AddrPortFrom(ep.Local.Addr(), 0)
	if src.Addr().IsUnspecified() {
		src = netip.AddrPort{}
	}
	tmo := timeoutOf(ctx, o)
	if err = l.id.ResolveAddr(src, remote, tmo); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventAddrResolved); err != nil {
		return c, err
	}
	// The id has its device now: its loss ends the setup at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := guardSetup(l.id.DeviceName(), cancel)
	defer g.stop()
	defer func() { err = g.err(err) }()
	if err = l.id.ResolveRoute(tmo); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventRouteResolved); err != nil {
		return c, err
	}
	if err = c.setupQPOnID(l.id); err != nil {
		return c, err
	}
	if err = l.id.Connect(cmConnParam(c.hello(ep.Local.Port()))); err != nil {
		return c, err
	}
	ev, err := waitEvent(ctx, ch, rdmacm.EventEstablished)
	if err != nil {
		// The transport may pad a reject's private data (InfiniBand's
		// REJ carries a fixed 148 bytes): the data starts with the mark.
		switch {
		case ev.Type != rdmacm.EventRejected:
		case bytes.HasPrefix(ev.PrivateData, bindcore.RetryRejectData):
			err = &retryError{err}
		case ev.Status == rejectNoListener:
			err = &refusedError{err}
		}
		return c, err
	}
	peer, err := parseHello(ev.PrivateData)
	if err != nil {
		return c, err
	}
	c.start(peer)
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
	if la := req.ID.LocalAddr(); local.Addr().IsUnspecified() && la.IsValid() {
		// A wildcard listener: the connection's own address.
		local = netip.AddrPortFrom(la.Addr().Unmap(), local.Port())
	}
	c = &Conn{mode: ModeCM, local: local, remote: remote, opts: o, lay: newLayout(o), link: &cmLink{id: req.ID, ch: ch}}
	accepted := false
	parent := ctx // the listener's: done when it closes or the setup times out
	defer func() {
		if err != nil {
			if !accepted && parent.Err() != nil {
				// The listener closes (or the setup ran out of time)
				// before it accepted: the client dials again, and
				// reaches the standby that takes the port over.
				req.ID.Reject(bindcore.RetryRejectData)
			}
			c.freeSetup()
			c = nil
		}
	}()
	// The device's loss ends the setup at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := guardSetup(req.ID.DeviceName(), cancel)
	defer g.stop()
	defer func() { err = g.err(err) }()
	if err = req.ID.Migrate(ch); err != nil {
		return c, err
	}
	if err = c.setupQPOnID(req.ID); err != nil {
		return c, err
	}
	if ctx.Err() != nil {
		return c, ctx.Err()
	}
	accepted = true
	if err = req.ID.Accept(cmConnParam(c.hello(local.Port()))); err != nil {
		return c, err
	}
	if _, err = waitEvent(ctx, ch, rdmacm.EventEstablished); err != nil {
		return c, err
	}
	c.start(peer)
	return c, nil
}

// setupQPOnID allocates the transport on the id's device and creates the
// QP on the id (rdma_create_qp), with every receive buffer posted.
func (c *Conn) setupQPOnID(id *rdmacm.ID) error {
	vctx, err := verbs.ContextOf(id)
	if err != nil {
		return err
	}
	t, err := newVerbsTransport(vctx, c.lay)
	if err != nil {
		return err
	}
	c.setTransport(t)
	if t.qp, err = t.pd.CreateQPOnID(id, t.scq.cq, t.rcq.cq, caps(c.lay)); err != nil {
		return err
	}
	return c.postRecvs()
}

// cmLink is the link of an rdma_cm connection: its id, on an event channel
// of its own. The rendezvous has one too, the id its QP's device hangs
// off (openVerbsQP), only bound, whose one event that matters is
// DEVICE_REMOVAL.
type cmLink struct {
	id  *rdmacm.ID
	ch  *rdmacm.EventChannel
	dev string // the id's device, once device was called
}

func (l *cmLink) device() string {
	if l.dev == "" && l.id != nil {
		l.dev = l.id.DeviceName()
	}
	return l.dev
}

// watch reads the connection's events until its channel closes: a
// disconnect, a device removal or any error breaks the connection. The
// events are acknowledged as they are read (GetEvent), so that destroying
// the id after a DEVICE_REMOVAL never waits for one.
func (l *cmLink) watch(broke func(error)) {
	for {
		ev, err := l.ch.GetEvent(context.Background())
		if err != nil {
			if !errors.Is(err, rdmacm.ErrClosed) {
				broke(fmt.Errorf("rdma_cm events: %w", err))
			}
			return
		}
		if err := establishedEvent(ev, l.dev); err != nil {
			broke(err)
		}
	}
}

// establishedEvent is what an event of an established connection on
// device dev means: nil, or why the connection broke.
func establishedEvent(ev rdmacm.Event, dev string) error {
	switch ev.Type {
	case rdmacm.EventDisconnected:
		return fmt.Errorf("peer disconnected (%v): %w", ev.Type, unix.ECONNRESET)
	case rdmacm.EventDeviceRemoval:
		return &deviceLostError{dev: dev, how: ev.Type.String()}
	case rdmacm.EventTimewaitExit, rdmacm.EventEstablished:
		return nil
	}
	if e := ev.Err(); e != nil {
		return fmt.Errorf("%v: %w", ev.Type, e)
	}
	return nil
}

func (l *cmLink) disconnect() {
	if l.id != nil {
		l.id.Disconnect()
	}
}

// close destroys the id, then the channel (which ends watch).
func (l *cmLink) close() error {
	var errs []error
	if l.id != nil {
		errs = append(errs, l.id.Close())
	}
	if l.ch != nil {
		errs = append(errs, l.ch.Close())
	}
	return errors.Join(errs...)
}

// rejectNoListener is the reject reason of a connect request for which
// the peer's connection manager has no listener (InfiniBand's
// IB_CM_REJ_INVALID_SERVICE_ID, also RoCE's): nothing listens on the port
// in rdma_cm, for good or in a listener's handover.
const rejectNoListener = 8

// refusedError is a dial's reject for want of a listener
// (rejectNoListener), which Dial retries for Options.RefusedRetry. It
// matches unix.ECONNREFUSED.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// retryError is a dial's reject that asks to dial again: the listener was
// closing and its standby takes the port over (bindcore.RetryRejectData).
// It matches unix.ECONNREFUSED.
type retryError struct{ err error }

func (e *retryError) Error() string {
	return e.err.Error() + " (the listener is handing the port over: dial again)"
}
func (e *retryError) Unwrap() error { return e.err }
