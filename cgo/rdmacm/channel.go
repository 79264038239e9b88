package rdmacm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"weak"

	"golang.org/x/sys/unix"
)

// EventChannel is an rdma_event_channel: the file descriptor on which
// librdmacm reports the communication events of the IDs created on it.
//
// The channel's descriptor is non-blocking and waited on by the Go netpoller,
// so a goroutine waiting in GetEvent holds no OS thread.
//
// An EventChannel is safe for concurrent use. Close it when done; an
// EventChannel that becomes unreachable (with all its IDs) is closed by the
// garbage collector as a safety net only.
type EventChannel struct {
	c *chanCore
}

// chanCore is the state of a channel. It never points back at the
// EventChannel or at an ID (only weakly), so the GC cleanups of those can run.
type chanCore struct {
	ops  channelOps
	file *os.File // a duplicate of ops.fd(), registered with the netpoller
	rc   syscall.RawConn
	sem  chan struct{} // one GetEvent at a time

	// life is held shared while CreateID uses ops, exclusively while Close
	// destroys the channel.
	life sync.RWMutex

	mu      sync.Mutex
	closing bool
	ids     map[uintptr]idEntry

	once     sync.Once
	closeErr error
}

type idEntry struct {
	st *idState
	w  weak.Pointer[ID]
}

// nextKey gives each ID the number librdmacm keeps as its context, by which
// events find their ID. 0 is never used.
var nextKey atomic.Uintptr

// NewEventChannel opens an event channel (rdma_create_event_channel).
//
// Errors: when there is no RDMA device, or no /dev/infiniband/rdma_cm, the
// error matches both unix.ENODEV and ErrNotSupported; built without cgo it
// matches unix.EOPNOTSUPP and ErrNotSupported. Other errnos of librdmacm
// (EPERM for a kernel ABI mismatch, ENOMEM, EMFILE) are returned as they are.
func NewEventChannel() (*EventChannel, error) {
	ops, err := newChannelOps()
	if err != nil {
		if errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("rdma_create_event_channel: %w (%w: no RDMA device on this host%s)",
				err, ErrNotSupported, cdevHint())
		}
		return nil, fmt.Errorf("rdma_create_event_channel: %w", err)
	}
	// Every process that uses rdma_cm lets go of a device that goes
	// (devices.go).
	hub.start()
	return newEventChannel(ops)
}

func cdevHint() string {
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err != nil {
		return ", /dev/infiniband/rdma_cm is absent"
	}
	return ""
}

// newEventChannel puts a channel's fd on the netpoller. It owns ops from here
// on, also on failure.
func newEventChannel(ops channelOps) (*EventChannel, error) {
	fail := func(what string, err error) (*EventChannel, error) {
		ops.destroy()
		return nil, fmt.Errorf("rdma_create_event_channel: %s: %w", what, err)
	}
	fd := ops.fd()
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("set O_NONBLOCK", err)
	}
	// librdmacm closes its fd in rdma_destroy_event_channel, so the
	// netpoller gets a duplicate, which shares the open file (and its
	// O_NONBLOCK and readiness) and which os.File may close.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fail("dup", err)
	}
	file := os.NewFile(uintptr(dup), "rdma_cm")
	if err := file.SetReadDeadline(time.Time{}); err != nil {
		// os.ErrNoDeadline: the netpoller could not take the fd.
		file.Close()
		return fail("poll", err)
	}
	rc, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return fail("poll", err)
	}
	c := &chanCore{
		ops:  ops,
		file: file,
		rc:   rc,
		sem:  make(chan struct{}, 1),
		ids:  make(map[uintptr]idEntry),
	}
	ec := &EventChannel{c: c}
	runtime.AddCleanup(ec, func(c *chanCore) { c.close() }, c)
	return ec, nil
}

func (ec *EventChannel) core() *chanCore {
	if ec == nil {
		return nil
	}
	return ec.c
}

// Close closes the IDs still open on the channel (rdma_destroy_id), then the
// channel itself (rdma_destroy_event_channel): librdmacm requires that order.
// A GetEvent waiting on the channel returns an error matching ErrClosed. Close
// is safe to call more than once and concurrently; later calls return nil.
//
// The error, if any, joins the rdma_destroy_id errors of the IDs it closed;
// the channel is closed regardless.
func (ec *EventChannel) Close() error {
	c := ec.core()
	if c == nil {
		return nil
	}
	err := c.close()
	runtime.KeepAlive(ec)
	return err
}

func (c *chanCore) close() error {
	first := false
	c.once.Do(func() {
		first = true
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		// Wakes a waiting GetEvent, and waits for one inside its
		// callback to finish: after this no event is unacknowledged, so
		// rdma_destroy_id cannot block on one.
		c.file.Close()
		c.life.Lock()
		defer c.life.Unlock()
		c.mu.Lock()
		sts := make([]*idState, 0, len(c.ids))
		for _, e := range c.ids {
			sts = append(sts, e.st)
		}
		c.mu.Unlock()
		var errs []error
		for _, st := range sts {
			if err := st.close(); err != nil {
				errs = append(errs, err)
			}
		}
		c.ops.destroy()
		c.closeErr = errors.Join(errs...)
	})
	if !first {
		return nil
	}
	return c.closeErr
}

func (c *chanCore) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// CreateID creates an ID on the channel (rdma_create_id) in port space ps, in
// the network namespace of the calling thread. The call runs on a locked OS
// thread, so a caller that has locked its goroutine to a thread switched into
// another namespace gets an ID of that namespace; everyone else gets the
// process's.
//
// Errors: unix.EINVAL for an unknown port space, ErrClosed after Close, and
// the errno of rdma_create_id (ENODEV, ENOMEM, ...).
func (ec *EventChannel) CreateID(ps PortSpace) (*ID, error) {
	return ec.createID(ps, -1)
}

// CreateIDInNetns is CreateID in the network namespace that the file
// descriptor netns refers to (an open /proc/PID/ns/net or /run/netns/NAME).
// A cm_id takes the namespace of the thread that creates it, so a fresh
// goroutine locks its OS thread, enters netns with setns(2), creates the ID
// and enters its own namespace again. If that last step fails the goroutine
// exits still locked, and the Go runtime ends the thread instead of reusing
// it: no other goroutine ever runs in netns. The ID stays in netns for its
// whole life; addresses it binds are netns's.
//
// Errors: as CreateID, and those of setns (EINVAL when netns is not a
// network namespace, EPERM without CAP_SYS_ADMIN, EBADF).
func (ec *EventChannel) CreateIDInNetns(ps PortSpace, netns int) (*ID, error) {
	if netns < 0 {
		return nil, fmt.Errorf("rdma_create_id: netns fd %d: %w", netns, unix.EBADF)
	}
	return ec.createID(ps, netns)
}

func (ec *EventChannel) createID(ps PortSpace, netns int) (*ID, error) {
	if !ps.valid() {
		return nil, fmt.Errorf("rdma_create_id: port space %v: %w", ps, unix.EINVAL)
	}
	c := ec.core()
	if c == nil {
		return nil, fmt.Errorf("rdma_create_id: %w", ErrClosed)
	}
	defer runtime.KeepAlive(ec)
	c.life.RLock()
	defer c.life.RUnlock()
	if c.isClosing() {
		return nil, fmt.Errorf("rdma_create_id: %w", ErrClosed)
	}
	key := nextKey.Add(1)
	var ops idOps
	err := onLockedThread(netns, func() error {
		var err error
		ops, err = c.ops.createID(key, ps)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("rdma_create_id %v: %w", ps, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		ops.destroy()
		return nil, fmt.Errorf("rdma_create_id: %w", ErrClosed)
	}
	return c.registerLocked(ec, ops, key, ps), nil
}

// registerLocked wraps a new cm_id in an ID. c.mu is held.
func (c *chanCore) registerLocked(ec *EventChannel, ops idOps, key uintptr, ps PortSpace) *ID {
	st := &idState{core: c, key: key, ps: ps, ops: ops}
	id := &ID{s: st}
	id.ch.Store(ec)
	c.ids[key] = idEntry{st: st, w: weak.Make(id)}
	runtime.AddCleanup(id, func(st *idState) { st.close() }, st)
	return id
}

func (c *chanCore) lookupLocked(key uintptr) *ID {
	if key == 0 {
		return nil
	}
	return c.ids[key].w.Value()
}

func (c *chanCore) deregister(key uintptr) {
	c.mu.Lock()
	delete(c.ids, key)
	c.mu.Unlock()
}

// GetEvent waits for the next communication event on the channel, copies it
// into an Event and acknowledges it (rdma_ack_cm_event), so nothing of
// librdmacm's event outlives the call. Waiting parks the goroutine on the Go
// netpoller; no OS thread blocks in C. ctx bounds the wait: its deadline and
// its cancellation both end it.
//
// Events for IDs that are already closed are acknowledged and skipped.
//
// One GetEvent runs at a time on a channel (others queue, each bounded by its
// own ctx); the usual shape is one goroutine per channel that loops on
// GetEvent and hands the events out.
//
// Errors: ctx.Err() (context.DeadlineExceeded, context.Canceled) when ctx ends
// first, ErrClosed when the channel is closed before or during the wait, and
// the errno of rdma_get_cm_event (ENOMEM, ENODEV after device removal, ...).
func (ec *EventChannel) GetEvent(ctx context.Context) (Event, error) {
	const op = "rdma_get_cm_event"
	c := ec.core()
	if c == nil {
		return Event{}, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	defer runtime.KeepAlive(ec)
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return Event{}, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	defer func() { <-c.sem }()
	if c.isClosing() {
		return Event{}, fmt.Errorf("%s: %w", op, ErrClosed)
	}

	// Errors of SetReadDeadline are those of a closed file, which the Read
	// below reports as well.
	if d, ok := ctx.Deadline(); ok {
		c.file.SetReadDeadline(d)
	}
	if done := ctx.Done(); done != nil {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			c.file.SetReadDeadline(time.Unix(1, 0))
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
			}
			c.file.SetReadDeadline(time.Time{})
		}()
	}

	var (
		ev     Event
		evErr  error
		gotOne bool
	)
	err := c.rc.Read(func(uintptr) bool {
		for {
			raw, err := c.ops.getEvent()
			if err == unix.EAGAIN {
				return false
			}
			if err != nil {
				evErr = err
				return true
			}
			if ev, gotOne = c.dispatch(ec, raw); gotOne {
				return true
			}
		}
	})
	switch {
	case err == nil && evErr == nil:
		return ev, nil
	case err == nil:
		return Event{}, fmt.Errorf("%s: %w", op, evErr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		if ctx.Err() != nil {
			return Event{}, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return Event{}, fmt.Errorf("%s: %w", op, context.DeadlineExceeded)
	case c.isClosing() || errors.Is(err, os.ErrClosed):
		// The file's error is internal/poll's ErrFileClosing.
		return Event{}, fmt.Errorf("%s: %w", op, ErrClosed)
	default:
		return Event{}, fmt.Errorf("%s: %w", op, err)
	}
}

// lostEvent is ev for an id whose device is being removed: the events a
// setup goes on from become their error events, with status -ENETDOWN.
func lostEvent(ev Event) Event {
	switch ev.Type {
	case EventAddrResolved:
		ev.Type = EventAddrError
	case EventRouteResolved:
		ev.Type = EventRouteError
	case EventConnectResponse, EventEstablished:
		ev.Type = EventConnectError
	default:
		return ev
	}
	ev.Status = -int(unix.ENETDOWN)
	return ev
}

// dispatch turns a raw event into an Event and acknowledges it. For a
// connect request it gives the new cm_id its own key and ID first, so that
// the events that follow for it find it. It reports false for an event whose
// ID is gone.
func (c *chanCore) dispatch(ec *EventChannel, raw rawEvent) (Event, bool) {
	ev := Event{Type: raw.typ, Status: raw.status, PrivateData: raw.priv}
	var orphan idOps
	c.mu.Lock()
	if raw.newID != nil {
		ev.Listener = c.lookupLocked(raw.listenKey)
		if ev.Listener != nil {
			key := nextKey.Add(1)
			raw.newID.setKey(key)
			ev.ID = c.registerLocked(ec, raw.newID, key, ev.Listener.s.ps)
		} else {
			orphan = raw.newID
		}
	} else {
		ev.ID = c.lookupLocked(raw.key)
		ev.Listener = c.lookupLocked(raw.listenKey)
	}
	c.mu.Unlock()
	raw.ack()
	if ev.ID != nil {
		// An id gets its device with its address resolved, or with the
		// request it was created for; a removal is the device's loss.
		st := ev.ID.s
		st.mu.Lock()
		var lost error
		if st.ops != nil {
			lost = hub.noteID(st, st.ops)
		}
		dev, ino := st.dev, st.ino
		st.mu.Unlock()
		if lost != nil {
			// The id got a device that is being removed: nothing is made
			// on it. A connect request is refused (its id destroyed); an
			// event that would let a setup go on becomes its error event.
			if raw.newID != nil {
				ev.ID.Close()
				return Event{}, false
			}
			ev = lostEvent(ev)
		}
		if ev.Type == EventDeviceRemoval {
			hub.removal(dev, ino)
		}
	}
	if orphan != nil {
		// The listener was dropped without Close and not yet cleaned up:
		// refuse the connection.
		orphan.destroy()
	}
	return ev, ev.ID != nil
}
