package cmport

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/election"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// MaxQueue bounds the queue of connect requests waiting for a listener's
// Accept, whatever the backlog.
const MaxQueue = 4096

// HeldError is why a Listen gave up on its rdma_cm port: who holds it. It
// matches unix.EADDRINUSE and the last error of rdma_listen.
type HeldError struct {
	Addr netip.AddrPort
	Msg  string // who holds the port, for people
	Err  error  // the last error of rdma_bind_addr or rdma_listen
}

func (e *HeldError) Error() string   { return e.Msg + ": " + e.Err.Error() }
func (e *HeldError) Unwrap() []error { return []error{unix.EADDRINUSE, e.Err} }

// ErrClosed is returned by Listen once the Listener is closed; it matches
// election.ErrClosed and net.ErrClosed.
var ErrClosed = election.ErrClosed

// NewListener returns the rdma_cm half of a listening socket bound to ap,
// for the election to drive (election.RDMAPort): own is the socket's bound
// id if it still has one (Bound.Take), claim its registry record, backlog
// the length of its request queue (at most MaxQueue). Its requests come from
// d, the dispatcher of the anchor's event channel.
func (a *Anchor) NewListener(d *Dispatcher, ap netip.AddrPort, afOnly bool, own *rdmacm.ID, claim *registry.Claim, backlog int) *Listener {
	return &Listener{
		a: a, d: d, ap: ap, afOnly: afOnly, claim: claim, own: own,
		reqs: make(chan Request, max(1, min(backlog, MaxQueue))),
		done: make(chan struct{}),
	}
}

// Requests returns the queue of connect requests that reached the
// listening id. The receiver owns each request's ID.
func (c *Listener) Requests() <-chan Request { return c.reqs }

// Done returns a channel closed by Close.
func (c *Listener) Done() <-chan struct{} { return c.done }

// LastError returns why the last attempt to listen failed (nil once it
// listens).
func (c *Listener) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Listener is the rdma_cm half of a listening socket: the listening id,
// and the queue its connect requests go to. It implements
// election.RDMAPort.
type Listener struct {
	notifier
	a      *Anchor
	d      *Dispatcher
	ap     netip.AddrPort
	afOnly bool
	claim  *registry.Claim
	reqs   chan Request
	done   chan struct{} // closed by Close

	mu      sync.Mutex
	own     *rdmacm.ID // the socket's bound id, until listen uses it or standby closes it
	id      *rdmacm.ID // the listening id
	closed  bool
	lastErr error // why the last attempt to listen failed
	backlog int
	dev     string // the listening id's device, "" for none (device.go)
	lost    string // the device lost, while it does not listen again
	kick    chan struct{}
	// tries and waited: how many rdma_listen calls the last successful
	// listen made, and how long it waited for the port (diagnostics).
	tries  int
	waited time.Duration
}

// Stats returns how many rdma_listen calls the last successful Listen made,
// and how long it waited for the port.
func (c *Listener) Stats() (tries int, waited time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tries, c.waited
}

// ID returns the listening id, nil while it does not listen.
func (c *Listener) ID() *rdmacm.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Listen listens on the socket's address and port: with the socket's own
// bound id if it still had one at Listen, else a new one (bound with REUSEADDR, like
// Bind's). While rdma_cm refuses (EADDRINUSE, EADDRNOTAVAIL: other ids are
// still on the port), it retries, with a growing pause (50 µs to 1 ms),
// ringing the doorbell every 100 ms, until ctx ends. With a deadline on ctx
// (a first Listen) it gives up early when nothing of rdmabind holds the
// port (a program outside rdmabind does), or a designated listener on an
// overlapping address does; without one (a takeover) it goes on until ctx
// is cancelled.
//
// Errors: *HeldError (matching unix.EADDRINUSE) when it gives up; ErrClosed;
// ctx.Err() when cancelled; the errnos of rdma_cm otherwise.
func (c *Listener) Listen(ctx context.Context, backlog int) error {
	ap := c.ap
	_, bounded := ctx.Deadline()
	c.mu.Lock()
	id := c.own
	c.own = nil
	c.mu.Unlock()
	pause := 50 * time.Microsecond
	start := time.Now()
	lastCheck := start
	var last error
	for tries := 1; ; tries++ {
		var err error
		if id == nil {
			id, err = c.a.NewID(ap, c.afOnly)
		}
		if err == nil {
			if err = id.Listen(backlog); err == nil {
				c.mu.Lock()
				if c.closed {
					c.mu.Unlock()
					id.Close()
					return ErrClosed
				}
				c.id = id
				c.lastErr = nil
				c.backlog = backlog
				if c.dev = id.DeviceName(); c.dev != "" {
					c.a.addUser(c)
				}
				c.tries, c.waited = tries, time.Since(start)
				c.d.route(id, c.reqs)
				c.mu.Unlock()
				return nil
			}
		}
		if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			if id != nil {
				id.Close()
			}
			return err
		}
		last = err
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		if time.Since(lastCheck) >= 100*time.Millisecond {
			lastCheck = time.Now()
			election.RingDoorbell(c.a.reg)
			if bounded {
				if err := c.heldElsewhere(ap, last); err != nil {
					if id != nil {
						id.Close()
					}
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			if id != nil {
				id.Close()
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return c.busy(ap, last, time.Since(start))
			}
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Millisecond)
	}
}

// others returns the live claims of the registry that overlap ap, other
// than the socket's own.
func (c *Listener) others(ap netip.AddrPort) []registry.Record {
	recs, _ := c.a.reg.List()
	own := c.claim.Record()
	var out []registry.Record
	for _, r := range recs {
		if r.Slot == own.Slot && r.Generation == own.Generation {
			continue
		}
		if r.Port == ap.Port() && registry.Overlap(r.Addr, r.DualStack, ap.Addr(), false) {
			out = append(out, r)
		}
	}
	return out
}

// heldElsewhere returns the error to give up with, or nil to go on
// waiting: a *HeldError when no other rdmabind socket overlaps the port
// (a program outside rdmabind holds it), or a designated listener on
// another, overlapping address does (rdma_cm lets only one of them listen).
func (c *Listener) heldElsewhere(ap netip.AddrPort, last error) error {
	others := c.others(ap)
	if len(others) == 0 {
		return &HeldError{Addr: ap, Err: last, Msg: fmt.Sprintf(
			"port %d is held in the rdma_cm port space by a program outside rdmabind (no other rdmabind socket of this user holds it)", ap.Port())}
	}
	for _, r := range others {
		if r.Role == registry.RoleDesignated && r.Addr != ap.Addr().Unmap().WithZone("") {
			return &HeldError{Addr: ap, Err: last, Msg: fmt.Sprintf(
				"pid %d listens on %s (socket %#x), which overlaps %s: rdma_cm lets one id listen where a wildcard and a specific address of a port meet",
				r.PID, r.AddrPort(), r.SocketID, ap)}
		}
	}
	return nil
}

// busy is the error of a first Listen that waited in vain.
func (c *Listener) busy(ap netip.AddrPort, last error, waited time.Duration) error {
	var who []string
	for _, r := range c.others(ap) {
		who = append(who, fmt.Sprintf("pid %d (%s on %s, socket %#x)", r.PID, r.Role, r.AddrPort(), r.SocketID))
	}
	holders := "no rdmabind socket (a program outside rdmabind, or ids of a process just gone)"
	if len(who) > 0 {
		holders = strings.Join(who, ", ")
	}
	return &HeldError{Addr: ap, Err: last, Msg: fmt.Sprintf(
		"the rdma_cm port is still held after %v; sharing it: %s (a listener's rdma_cm id must be alone on its port: these did not give theirs up)",
		waited.Round(time.Millisecond), holders)}
}

// Standby closes the socket's bound id: only the designated listener has
// an rdma_cm id on the port.
func (c *Listener) Standby() {
	c.mu.Lock()
	id := c.own
	c.own = nil
	c.mu.Unlock()
	if id != nil {
		id.Close()
	}
}

// Unlisten destroys the listening id (and a bound one the socket still
// had): from then on the port is free in rdma_cm. Requests already queued
// stay queued, for Close to reject, so that the client that retries finds
// the successor listening. Safe twice and with Close.
func (c *Listener) Unlisten() error {
	c.mu.Lock()
	id, own := c.id, c.own
	c.id, c.own = nil, nil
	c.mu.Unlock()
	var errs []error
	if own != nil {
		errs = append(errs, own.Close())
	}
	if id != nil {
		c.d.unroute(id)
		errs = append(errs, id.Close())
	}
	return errors.Join(errs...)
}

// Close stops listening (Unlisten) and rejects the requests nobody
// accepted, with RetryData (the client dials again and reaches the
// standby). Safe twice.
func (c *Listener) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.a.removeUser(c)
	close(c.done)
	err := c.Unlisten()
	for {
		select {
		case r := <-c.reqs:
			// The standby takes the port over: the client tries again.
			r.ID.Reject(RetryData)
			r.ID.Close()
		default:
			return err
		}
	}
}
