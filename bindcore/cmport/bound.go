package cmport

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// Bound is a bound socket's rdma_cm id on its address and port: bound with
// REUSEADDR, so sockets of one user share the port, until a listener of
// the port takes it away ("parks" it: the id is closed, the socket keeps
// its registry claim and kernel TCP reservation). Its methods are safe for
// concurrent use.
type Bound struct {
	notifier
	a      *Anchor
	ap     netip.AddrPort
	afOnly bool
	gone   chan struct{} // closed by Take (and so Close)

	mu      sync.Mutex
	id      *rdmacm.ID // nil once parked, taken or lost
	parked  bool
	ent     *anchorEntry // the id's registration as parkable
	dev     string       // the device the id is (was) on, "" for none
	lost    string       // the device lost, while no new id is bound (device.go)
	kick    chan struct{}
	closedB bool
}

// ErrNoChannel is returned by Bind and BindEphemeral of an Anchor without
// an event channel (no RDMA subsystem); it matches unix.ENETDOWN.
var ErrNoChannel = errors.New("no rdma_cm event channel")

// NewID creates an rdma_cm id on the anchor's event channel and binds it to
// ap with REUSEADDR (and, with afOnly, AFONLY: an IPv6 socket is V6ONLY),
// as a Bind does.
//
// Errors: ErrNoChannel (matching unix.ENETDOWN) without a channel; the
// errnos of rdma_create_id, rdma_set_option and rdma_bind_addr.
func (a *Anchor) NewID(ap netip.AddrPort, afOnly bool) (*rdmacm.ID, error) {
	if a.ch == nil {
		return nil, fmt.Errorf("%w: %w", ErrNoChannel, unix.ENETDOWN)
	}
	id, err := a.ch.CreateID(rdmacm.PortSpaceTCP)
	if err != nil {
		return nil, err
	}
	if err = id.SetReuseAddr(true); err == nil && afOnly {
		err = id.SetAFOnly(true)
	}
	if err == nil {
		err = id.Bind(ap)
	}
	if err != nil {
		id.Close()
		return nil, err
	}
	return id, nil
}

// Bind binds an id to ap (NewID) and registers it as parkable. When
// rdma_cm refuses because a designated listener holds the port, the Bound
// has no id (it is parked from the start) and Bind succeeds.
//
// Errors: those of NewID.
func (a *Anchor) Bind(ap netip.AddrPort, afOnly bool) (*Bound, error) {
	// Watch first, then bind, then look at the flag (see anchor.go).
	a.arm()
	b := &Bound{a: a, ap: ap, afOnly: afOnly, gone: make(chan struct{})}
	id, err := a.NewID(ap, afOnly)
	if err != nil {
		if (errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EADDRNOTAVAIL)) && listenerCovers(a.reg, ap) {
			b.parked = true
			return b, nil
		}
		return nil, err
	}
	b.id = id
	b.dev = id.DeviceName()
	if b.dev != "" {
		a.addUser(b)
	}
	b.ent = a.add(ap, b.park, true)
	return b, nil
}

// BindEphemeral binds an id to addr with port 0: rdma_cm's allocator picks
// a port no rdma_cm id holds (Port returns it). The id is parkable before
// the caller claims the port in the registry: the fresh claim that follows
// fails if a designated listener's record holds the port, and a listener
// designated after the claim rings the doorbell, whose scan finds the id
// (the watch was started before the id was bound).
//
// Errors: those of NewID.
func (a *Anchor) BindEphemeral(addr netip.Addr, afOnly bool) (*Bound, error) {
	a.arm()
	id, err := a.NewID(netip.AddrPortFrom(addr, 0), afOnly)
	if err != nil {
		return nil, err
	}
	b := &Bound{a: a, ap: netip.AddrPortFrom(addr, id.LocalAddr().Port()), afOnly: afOnly, id: id, gone: make(chan struct{}), dev: id.DeviceName()}
	if b.dev != "" {
		a.addUser(b)
	}
	b.ent = a.add(b.ap, b.park, false)
	return b, nil
}

// Port returns the bound port (the one rdma_cm chose for BindEphemeral).
func (b *Bound) Port() uint16 { return b.ap.Port() }

// listenerCovers reports whether a live designated listener of the registry
// overlaps ap: a bind whose rdma_bind_addr that listener refuses binds no
// id instead of failing.
func listenerCovers(reg *registry.Registry, ap netip.AddrPort) bool {
	recs, _ := reg.List()
	for _, r := range recs {
		if r.Role == registry.RoleDesignated && r.Port == ap.Port() && registry.Overlap(r.Addr, r.DualStack, ap.Addr(), false) {
			return true
		}
	}
	return false
}

// park closes the id, if there is one: a listener took the port.
func (b *Bound) park() {
	b.mu.Lock()
	id := b.id
	b.id = nil
	b.parked = true
	b.mu.Unlock()
	if id != nil {
		id.Close()
	}
}

// ID returns the id, nil once parked or taken.
func (b *Bound) ID() *rdmacm.ID {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.id
}

// Parked reports whether a listener of the port took the id away.
func (b *Bound) Parked() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.parked
}

// Take takes the id out (no listener parks it any more): nil if it was
// parked or taken. The caller owns it.
func (b *Bound) Take() *rdmacm.ID {
	b.a.remove(b.ent)
	b.a.removeUser(b)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closedB {
		b.closedB = true
		if b.gone != nil {
			close(b.gone)
		}
	}
	id := b.id
	b.id = nil
	return id
}

// Close closes the id, if it is still there. Safe twice.
func (b *Bound) Close() error {
	if id := b.Take(); id != nil {
		return id.Close()
	}
	return nil
}
