package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
	"slices"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// List returns the live claims, by slot. A used record whose lock is free
// is stale: List reclaims it (under the registry lock) and leaves it out.
//
// A record List cannot read while its claim is live is left out too, and
// reported in the error (wrapping ErrCorrupt, one entry per record, joined);
// the readable live records are returned with it. Other errors: ErrClosed
// after Close, an errno for a failing fcntl(2).
func (r *Registry) List() (recs []Record, err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	r.rw.RLock()
	defer r.rw.RUnlock()
	if r.closed.Load() {
		return nil, r.closedErr("list")
	}
	// Without the registry lock: a claim made meanwhile may or may not be
	// listed, as if it came just after.
	hw := r.scanLimit()
	var todo []int // stale or unreadable: settled under the registry lock
	buf := new([RecordSize]byte)
	for i := 0; i < hw; i++ {
		rec, _, rerr := r.readInto(i, buf)
		if rerr != nil {
			todo = append(todo, i)
			continue
		}
		if rec.State != StateUsed {
			continue
		}
		live, err := r.held(i)
		if err != nil {
			return nil, err
		}
		if live {
			recs = append(recs, rec)
		} else {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return recs, nil
	}
	if err := r.lockRegistry(); err != nil {
		return recs, err
	}
	defer r.unlockRegistry()
	var errs []error
	for _, i := range todo {
		rec, _, rerr := r.read(i)
		if rerr != nil {
			if rec, rerr = r.settle(i, rerr); rerr != nil {
				errs = append(errs, rerr)
				continue
			}
		}
		if rec.State != StateUsed {
			continue
		}
		live, err := r.held(i)
		if err != nil {
			return recs, err
		}
		if live {
			recs = append(recs, rec)
		} else {
			r.reclaim(i, rec.Generation)
		}
	}
	slices.SortFunc(recs, func(a, b Record) int { return a.Slot - b.Slot })
	return recs, errors.Join(errs...)
}

// FindFreePort returns a port in [lo, hi] that no live claim overlapping
// addr holds, whatever its user or policy. The search starts at a random
// port of the range, so that concurrent callers spread out. An IPv6
// wildcard addr is taken as dual-stack (the conservative answer).
//
// It claims nothing: the caller claims the port (and binds the kernel's TCP
// and rdma_cm ports, which may be taken by programs the registry does not
// know), and, since another process may claim it first, tries again on
// WSAEADDRINUSE.
//
// Errors: ErrInvalid for an invalid addr or range (lo 0, lo > hi);
// *wsa.Error WSAENOBUFS when live claims hold every port of the range;
// ErrCorrupt for a record unreadable while live; ErrClosed after Close.
func (r *Registry) FindFreePort(addr netip.Addr, lo, hi uint16) (port uint16, err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() || lo == 0 || lo > hi {
		return 0, fmt.Errorf("registry: find free port %s in [%d, %d]: %w", addr, lo, hi, ErrInvalid)
	}
	r.rw.RLock()
	defer r.rw.RUnlock()
	if r.closed.Load() {
		return 0, r.closedErr("find free port")
	}
	if err := r.lockRegistry(); err != nil {
		return 0, err
	}
	defer r.unlockRegistry()
	byPort := map[uint16][]Record{}
	hw := r.scanLimit()
	for i := 0; i < hw; i++ {
		rec, _, err := r.readCached(i)
		if err != nil {
			if rec, err = r.settle(i, err); err != nil {
				return 0, err
			}
		}
		if rec.State == StateUsed && rec.Port >= lo && rec.Port <= hi && Overlap(rec.Addr, rec.DualStack, addr, true) {
			byPort[rec.Port] = append(byPort[rec.Port], rec)
		}
	}
	n := int(hi-lo) + 1
	start := rand.IntN(n)
next:
	for k := 0; k < n; k++ {
		p := lo + uint16((start+k)%n)
		held := byPort[p]
		for _, rec := range held {
			live, err := r.held(rec.Slot)
			if err != nil {
				return 0, err
			}
			if live {
				continue next
			}
		}
		for _, rec := range held { // all stale
			r.reclaim(rec.Slot, rec.Generation)
		}
		return p, nil
	}
	return 0, wsa.New(wsa.WSAENOBUFS, "find free port", addr.String(),
		"live claims hold every port in [%d, %d] (registry %s)", lo, hi, r.path)
}
