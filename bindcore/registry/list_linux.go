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
	byPort := map[uint16][]Record{}
	hw := r.scanLimit()
	b := new([RecordSize]byte)
	var cu cacheUse
	defer cu.done(r)
	for i := 0; i < hw; i++ {
		rec, _, err := r.readScan(i, b, &cu)
		if err != nil {
			var stale bool
			if rec, stale, err = r.settle(i, err); err != nil {
				return 0, err
			}
			if stale {
				continue
			}
		}
		// A claim in progress (pending) counts: it will most likely win.
		if rec.State == StateUsed && rec.Port >= lo && rec.Port <= hi && Overlap(rec.Addr, rec.DualStack, addr, true) {
			byPort[rec.Port] = append(byPort[rec.Port], rec)
		}
	}
	cu.done(r)
	n := int(hi-lo) + 1
	start := rand.IntN(n)
next:
	for k := 0; k < n; k++ {
		p := lo + uint16((start+k)%n)
		held := byPort[p]
		for _, rec := range held {
			live, changed, err := r.probe(rec.Slot, rec)
			if err != nil {
				return 0, err
			}
			if live || changed { // changed: most likely a new claim
				continue next
			}
		}
		for _, rec := range held { // all stale
			if err := r.reclaim(rec.Slot, &rec); err != nil {
				return 0, err
			}
		}
		return p, nil
	}
	return 0, fmt.Errorf("registry: find free port %s in [%d, %d]: %w: live claims hold every port of the range (registry %s)", addr, lo, hi, ErrFull, r.path)
}
