package registry

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime/debug"
)

// List returns the live claims, by slot. A used record whose lock is free
// is stale: List reclaims it and leaves it out. A claim still being made
// (pending: published, its conflict check not finished) is left out too;
// it is listed once it commits.
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
	// Lock-free, like a claim: a claim made meanwhile may or may not be
	// listed, as if it came just after.
	hw := r.scanLimit()
	var errs []error
	buf := new([RecordSize]byte)
	for i := 0; i < hw; i++ {
		for try := 0; ; try++ {
			rec, _, rerr := r.readInto(i, buf)
			if rerr != nil {
				var stale bool
				rec, stale, rerr = r.settle(i, rerr)
				if rerr != nil {
					errs = append(errs, rerr)
					break
				}
				if stale {
					if err := r.reclaim(i, nil); err != nil {
						return recs, err
					}
					break
				}
			}
			if rec.State != StateUsed {
				break
			}
			live, changed, err := r.probe(i, rec)
			if err != nil {
				return recs, err
			}
			if changed && try < 8 {
				continue
			}
			switch {
			case !live && !changed:
				if err := r.reclaim(i, &rec); err != nil {
					return recs, err
				}
			case live && !rec.Pending:
				recs = append(recs, rec)
			}
			break
		}
	}
	last := -1
	if len(recs) > 0 {
		last = recs[len(recs)-1].Slot
	}
	r.tidyHighWater(last + 1)
	return recs, errors.Join(errs...)
}

// portFree reports whether no live claim of port p overlaps addr (as a
// dual-stack wildcard, if it is one): it looks p up in the index. A claim
// in progress (pending) counts: it will most likely win. Stale claims of
// the port are reclaimed.
func (r *Registry) portFree(p uint16, addr netip.Addr, b *[RecordSize]byte) (bool, error) {
	h := portHome(p, r.groups)
	_, reach := r.reachOf(h)
	var stale []Record
	for d := 0; d <= reach; d++ {
		g := (h + d) & (r.groups - 1)
		for k := 1; k <= IndexEntries; k++ {
			e := r.entryAt(g*8 + k)
			if e == 0 || e.Port() != p || e.Slot() < 0 || e.Slot() >= r.count {
				continue
			}
			i := e.Slot()
			rec, _, err := r.readInto(i, b)
			if err != nil {
				var st bool
				if rec, st, err = r.settle(i, err); err != nil {
					return false, err
				}
				if st {
					continue
				}
			}
			if !e.matches(rec) || !Overlap(rec.Addr, rec.DualStack, addr, true) {
				continue
			}
			live, changed, err := r.probe(i, rec)
			if err != nil {
				return false, err
			}
			if live || changed { // changed: most likely a new claim
				return false, nil
			}
			stale = append(stale, rec)
		}
	}
	for _, rec := range stale {
		if err := r.reclaim(rec.Slot, &rec); err != nil {
			return false, err
		}
	}
	return true, nil
}

// FindFreePort returns a port in [lo, hi] that no live claim overlapping
// addr holds, whatever its user or policy. The search starts at a random
// port of the range, so that concurrent callers spread out. An IPv6
// wildcard addr is taken as dual-stack (the conservative answer).
//
// It claims nothing: the caller claims the port (and binds the kernel's TCP
// and rdma_cm ports, which may be taken by programs the registry does not
// know), and, since another process may claim it first, tries again on
// ErrConflict.
//
// Errors: ErrInvalid for an invalid addr or range (lo 0, lo > hi);
// ErrFull (matches unix.ENOBUFS) when live claims hold every port of the range;
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
	b := new([RecordSize]byte)
	n := int(hi-lo) + 1
	start := rand.IntN(n)
	for k := 0; k < n; k++ {
		p := lo + uint16((start+k)%n)
		free, err := r.portFree(p, addr, b)
		if err != nil {
			return 0, err
		}
		if free {
			return p, nil
		}
	}
	return 0, fmt.Errorf("registry: find free port %s in [%d, %d]: %w: live claims hold every port of the range (registry %s)", addr, lo, hi, ErrFull, r.path)
}
