package cmport

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// A device's life, as the ids of a Binder see it. When the RDMA device
// under a port goes (package rdmacm reports it: an RDMA_CM_EVENT_DEVICE_REMOVAL
// on any id of the process, or the device's uverbs node gone), every id of
// the anchor on that device is destroyed at once, so that the kernel can
// finish the removal:
//
//   - a bound socket's id (Bound): the socket keeps its registry claim and
//     kernel TCP reservation; it is "lost" until the device (or another one
//     serving its address) appears, when a new id is bound to its address
//     and port;
//   - a designated listener's listening id (Listener): the TCP side goes on;
//     a new listening id is tried every relistenPeriod (and at once when a
//     device appears) until it listens again or the Listener is closed.
//
// Ids bound to a wildcard address have no device: rdma_cm itself listens
// on a device that appears for a wildcard listener. Each change is told to
// the function set with SetNotify.

// relistenPeriod is how often a lost listener or bound id tries its address
// again, besides when a device appears.
var relistenPeriod = 100 * time.Millisecond

// ErrDeviceLost is the cause of the errors of an id whose device went
// away; it matches unix.ENETDOWN.
var ErrDeviceLost = fmt.Errorf("RDMA device removed: %w", unix.ENETDOWN)

// DeviceEvent is a change of the device under a socket's id.
type DeviceEvent struct {
	// Device is the device lost, or the one the id is on again.
	Device string
	// Lost is true when the device went, false when the id is back.
	Lost bool
}

// devUser is an id of the anchor that lives on a device.
type devUser interface {
	// device is the device the id is on ("" for none).
	device() string
	// lose destroys the id, its device dev being gone.
	lose(dev string)
	// appeared is told that a device appeared.
	appeared(dev string)
}

// deviceEvent is the anchor's rdmacm.WatchDevices subscriber.
func (a *Anchor) deviceEvent(ev rdmacm.DeviceEvent) {
	a.mu.Lock()
	users := make([]devUser, 0, len(a.users))
	for u := range a.users {
		users = append(users, u)
	}
	a.mu.Unlock()
	for _, u := range users {
		if !ev.Lost {
			go u.appeared(ev.Device)
		} else if ev.Device != "" && u.device() == ev.Device {
			go u.lose(ev.Device)
		}
	}
}

func (a *Anchor) addUser(u devUser) {
	a.mu.Lock()
	if a.users == nil {
		a.users = map[devUser]struct{}{}
	}
	a.users[u] = struct{}{}
	a.mu.Unlock()
}

func (a *Anchor) removeUser(u devUser) {
	a.mu.Lock()
	delete(a.users, u)
	a.mu.Unlock()
}

// notifier is the SetNotify part of Bound and Listener.
type notifier struct {
	nmu sync.Mutex
	fn  func(DeviceEvent)
}

// SetNotify sets the function told of each device change (nil: none). It
// is called from a goroutine of the package and must not block.
func (n *notifier) SetNotify(fn func(DeviceEvent)) {
	n.nmu.Lock()
	n.fn = fn
	n.nmu.Unlock()
}

func (n *notifier) notify(ev DeviceEvent) {
	n.nmu.Lock()
	fn := n.fn
	n.nmu.Unlock()
	if fn != nil {
		fn(ev)
	}
}

// Bound as a devUser.

func (b *Bound) device() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dev
}

func (b *Bound) lose(dev string) {
	b.mu.Lock()
	if b.dev != dev || b.lost != "" {
		b.mu.Unlock()
		return
	}
	id := b.id
	b.id = nil
	b.lost = dev
	b.mu.Unlock()
	if id != nil {
		id.Close()
	}
	b.notify(DeviceEvent{Device: dev, Lost: true})
	go b.retry()
}

func (b *Bound) appeared(string) {
	b.mu.Lock()
	kick := b.kick
	b.mu.Unlock()
	poke(kick)
}

// poke wakes the retry loop waiting on kick, if any, without blocking.
func poke(kick chan struct{}) {
	if kick == nil {
		return
	}
	select {
	case kick <- struct{}{}:
	default:
	}
}

// retry binds a new id to the lost socket's address and port, every
// relistenPeriod and when a device appears, until it succeeds or the
// Bound is closed or taken.
func (b *Bound) retry() {
	b.mu.Lock()
	kick := make(chan struct{}, 1)
	b.kick = kick
	b.mu.Unlock()
	for {
		select {
		case <-b.gone:
			return
		case <-kick:
		case <-time.After(relistenPeriod):
		}
		id, err := b.a.NewID(b.ap, b.afOnly)
		parked := false
		if err != nil {
			if (errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EADDRNOTAVAIL)) && listenerCovers(b.a.reg, b.ap) {
				parked = true // a listener has the port now: the socket is served
			} else {
				continue
			}
		}
		b.mu.Lock()
		if b.closedB {
			b.mu.Unlock()
			if id != nil {
				id.Close()
			}
			return
		}
		if id != nil {
			b.dev = id.DeviceName()
		}
		b.id, b.parked = id, parked
		b.lost = ""
		b.kick = nil
		dev := b.dev // the new id's, or (parked) the one that came back
		b.mu.Unlock()
		b.notify(DeviceEvent{Device: dev})
		return
	}
}

// Lost returns the device the socket's id was lost with, "" when it is
// not lost.
func (b *Bound) Lost() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lost
}

// Listener as a devUser.

func (c *Listener) device() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dev
}

func (c *Listener) lose(dev string) {
	c.mu.Lock()
	if c.closed || c.dev != dev || c.lost != "" || c.id == nil {
		c.mu.Unlock()
		return
	}
	id := c.id
	c.id = nil
	c.lost = dev
	c.lastErr = fmt.Errorf("listen %v: device %s: %w", c.ap, dev, ErrDeviceLost)
	kick := make(chan struct{}, 1)
	c.kick = kick
	c.mu.Unlock()
	c.d.unroute(id)
	id.Close()
	c.notify(DeviceEvent{Device: dev, Lost: true})
	go c.relisten(kick)
}

func (c *Listener) appeared(string) {
	c.mu.Lock()
	kick := c.kick
	c.mu.Unlock()
	poke(kick)
}

// relisten listens again on the lost listener's address and port, every
// relistenPeriod and when a device appears, until it listens or the
// Listener is closed.
func (c *Listener) relisten(kick chan struct{}) {
	for {
		select {
		case <-c.done:
			return
		case <-kick:
		case <-time.After(relistenPeriod):
		}
		id, err := c.a.NewID(c.ap, c.afOnly)
		if err == nil {
			if err = id.Listen(c.backlog); err != nil {
				id.Close()
			}
		}
		if err != nil {
			c.mu.Lock()
			c.lastErr = fmt.Errorf("listen %v again after the loss of %s: %w", c.ap, c.lost, err)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			id.Close()
			return
		}
		c.id, c.dev, c.lost, c.lastErr, c.kick = id, id.DeviceName(), "", nil, nil
		c.d.route(id, c.reqs)
		dev := c.dev
		c.mu.Unlock()
		c.notify(DeviceEvent{Device: dev})
		return
	}
}

// Lost returns the device the listening id was lost with, "" when it is
// not lost.
func (c *Listener) Lost() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}
