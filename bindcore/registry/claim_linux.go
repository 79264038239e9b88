package registry

import (
	"fmt"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"golang.org/x/sys/unix"
)

// Claim is a live claim of an address and port: a used record of the
// registry and the write lock on it, held through an open file description
// of its own. It stays live until Release (or Close of its Registry, or the
// death of its process). Its methods are safe for concurrent use.
type Claim struct {
	r  *Registry
	cs *claimState
}

type claimState struct {
	mu       sync.Mutex
	fd       int
	rec      Record
	released bool
	buf      [RecordSize]byte // Release's record buffer, guarded by mu
}

// Claim claims req.Addr and req.Port for one socket. Under the registry
// lock it looks for a live claim the new one conflicts with (see
// Conflicts: another uid on an overlapping address, or an Exclusive claim on
// either side), reclaiming the stale claims it meets, then takes a free
// record, locks it and writes it.
//
// Errors:
//   - *wsa.Error WSAEADDRINUSE (matches unix.EADDRINUSE) when a live claim
//     of a non-sharing owner holds the port; the message names its pid,
//     uid, address and role;
//   - *wsa.Error WSAENOBUFS (matches unix.ENOBUFS) when every record holds
//     a live claim;
//   - ErrInvalid for a request with no address or port 0;
//   - ErrCorrupt when a record is unreadable while its claim is live (the
//     conflict check cannot be trusted), or the mapping faults;
//   - ErrClosed after Close; an errno for a failing open(2) or fcntl(2).
func (r *Registry) Claim(req ClaimRequest) (c *Claim, err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	ap := netip.AddrPortFrom(req.Addr, req.Port)
	req, err = req.normalize()
	if err != nil {
		return nil, fmt.Errorf("registry: claim %s: %w", ap, err)
	}
	r.rw.RLock()
	defer r.rw.RUnlock()
	if r.closed.Load() {
		return nil, r.closedErr("claim")
	}
	fd, err := r.takeFD()
	if err != nil {
		return nil, err
	}
	done := false
	defer func() {
		if !done {
			if v := recover(); v != nil {
				unix.Close(fd) // it may hold a slot lock
				panic(v)
			}
			r.putFD(fd)
		}
	}()
	if err := r.lockRegistry(); err != nil {
		return nil, err
	}
	defer r.unlockRegistry()
	rec, err := r.allocate(fd, req)
	if err != nil {
		return nil, err
	}
	cs := &claimState{fd: fd, rec: rec}
	r.res.claimsMu.Lock()
	r.res.claims[rec.Slot] = cs
	r.res.claimsMu.Unlock()
	done = true
	return &Claim{r: r, cs: cs}, nil
}

// allocate runs the conflict check and takes a slot, under the registry
// lock. On error fd holds no lock.
func (r *Registry) allocate(fd int, req ClaimRequest) (Record, error) {
	m := r.res.mem
	hw := r.scanLimit()
	_, hwOK := m.highWater()
	var cand [8]int       // free slots seen by the scan
	var candGen [8]uint64 // and their generations
	nc := 0
	last := -1
	for i := 0; i < hw; i++ {
		rec, _, err := r.readCached(i)
		if err != nil {
			if rec, err = r.settle(i, err); err != nil {
				return Record{}, err
			}
		}
		if rec.State == StateFree {
			if nc < len(cand) {
				cand[nc], candGen[nc], nc = i, rec.Generation, nc+1
			}
			continue
		}
		if Conflicts(rec, req.Addr, req.Port, req.DualStack, req.Share, r.uid) ||
			req.Fresh && rec.Port == req.Port && Overlap(rec.Addr, rec.DualStack, req.Addr, true) {
			live, err := r.held(i)
			if err != nil {
				return Record{}, err
			}
			if live {
				return Record{}, r.conflictError(req, rec)
			}
			r.reclaim(i, rec.Generation)
			if nc < len(cand) {
				cand[nc], candGen[nc], nc = i, rec.Generation, nc+1
			}
			continue
		}
		last = i
	}

	slot := -1
	take := func(i int) error {
		off, n := slotRange(i)
		err := ofdSet(fd, unix.F_WRLCK, off, n, false)
		if err == nil {
			slot = i
			return nil
		}
		if isBusy(err) { // a releaser between its write and its unlock, or a waiter
			return nil
		}
		return fmt.Errorf("registry: %s: slot %d: F_OFD_SETLK: %w", r.path, i, err)
	}
	var gen uint64
	for k, i := range cand[:nc] {
		if err := take(i); err != nil {
			return Record{}, err
		}
		if slot >= 0 {
			gen = candGen[k] + 1 // we hold the lock now: nobody else writes it
			break
		}
	}
	for i := hw; slot < 0 && i < r.count; i++ { // free by the high-water invariant
		if err := take(i); err != nil {
			return Record{}, err
		}
	}
	for i := 0; slot < 0 && i < hw; i++ { // full: sweep for stale claims
		rec, _, err := r.readCached(i)
		if err != nil || rec.State != StateUsed {
			continue
		}
		live, err := r.held(i)
		if err != nil {
			return Record{}, err
		}
		if live {
			continue
		}
		r.reclaim(i, rec.Generation)
		if err := take(i); err != nil {
			return Record{}, err
		}
	}
	if slot < 0 {
		return Record{}, wsa.New(wsa.WSAENOBUFS, "claim", netip.AddrPortFrom(req.Addr, req.Port).String(),
			"the registry %s is full: all %d records hold live claims", r.path, r.count)
	}

	// We hold the slot's lock: we are its only writer.
	if gen == 0 { // a slot not among the scan's candidates
		if prev, _, err := r.readCached(slot); err == nil {
			gen = prev.Generation + 1
		} else {
			gen = r.rawGeneration(slot) + 1
		}
	}
	if newHW := max(last, slot) + 1; !hwOK || newHW != hw {
		m.setHighWater(uint32(newHW)) // before the record: every used record stays below the mark
	}
	rec := Record{
		Slot:       slot,
		State:      StateUsed,
		Addr:       req.Addr,
		Port:       req.Port,
		Role:       req.Role,
		Share:      req.Share,
		DualStack:  req.DualStack,
		Generation: gen,
		SocketID:   req.SocketID,
		UID:        r.uid,
		PID:        r.pid,
		StartTime:  r.start,
		Netns:      r.netns,
		Claimed:    time.Now().UnixNano(),
	}
	r.store(&rec, &r.scratch, true)
	return rec, nil
}

func (r *Registry) conflictError(req ClaimRequest, held Record) error {
	why := "a claim of another user"
	switch {
	case req.Fresh && held.UID == r.uid && held.Share != Exclusive:
		why = "a claim, and this claim wants a port of its own (port 0)"
	case held.Share == Exclusive:
		why = "an exclusive claim"
	case req.Share == Exclusive:
		why = "a claim, and this claim is exclusive"
	}
	return wsa.New(wsa.WSAEADDRINUSE, "claim", netip.AddrPortFrom(req.Addr, req.Port).String(),
		"port %d is held by pid %d (uid %d): %s, %s on %s, socket %#x, registry %s (this process: pid %d, uid %d)",
		req.Port, held.PID, held.UID, why, held.Role, held.AddrPort(), held.SocketID, r.path, r.pid, r.uid)
}

// Record returns the claim's record as last written (Slot, Generation and
// SocketID identify it, for Registry.Wait).
func (c *Claim) Record() Record {
	c.cs.mu.Lock()
	defer c.cs.mu.Unlock()
	return c.cs.rec
}

// SetRole changes the claim's role, under the registry lock. Errors:
// ErrInvalid for role 0, ErrClosed after Release, ErrCorrupt on a mapping
// fault.
func (c *Claim) SetRole(role Role) (err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	r, cs := c.r, c.cs
	if role == 0 {
		return fmt.Errorf("registry: set role: %w: role 0", ErrInvalid)
	}
	r.rw.RLock()
	defer r.rw.RUnlock()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.released {
		return fmt.Errorf("registry: set role of slot %d: claim released: %w", cs.rec.Slot, ErrClosed)
	}
	if err := r.lockRegistry(); err != nil {
		return err
	}
	defer r.unlockRegistry()
	rec := cs.rec
	rec.Role = role
	r.store(&rec, &r.scratch, true)
	cs.rec = rec
	return nil
}

// Release ends the claim: it marks the record free, drops its lock and
// gives its open file description back to the registry's pool. It is safe
// to call twice (the second call returns nil) and after Close of the
// Registry (which released it). The only error is ErrCorrupt on a mapping
// fault; the claim has ended all the same.
func (c *Claim) Release() (err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	r, cs := c.r, c.cs
	r.rw.RLock()
	defer r.rw.RUnlock()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.released {
		return nil
	}
	r.res.claimsMu.Lock()
	r.res.claims[cs.rec.Slot] = nil
	r.res.claimsMu.Unlock()
	r.releaseLocked(cs)
	return nil
}

// Close is Release.
func (c *Claim) Close() error { return c.Release() }

// releaseLocked frees cs's record and drops its lock; the caller holds
// cs.mu and r.rw (shared or exclusive).
func (r *Registry) releaseLocked(cs *claimState) {
	cs.released = true
	defer func() {
		if v := recover(); v != nil {
			unix.Close(cs.fd) // drops the lock
			panic(v)
		}
	}()
	free := Record{Slot: cs.rec.Slot, Generation: cs.rec.Generation}
	r.store(&free, &cs.buf, false) // without r.mu: the cache entry just goes stale
	off, n := slotRange(free.Slot)
	if err := ofdSet(cs.fd, unix.F_UNLCK, off, n, false); err != nil {
		unix.Close(cs.fd)
		return
	}
	r.putFD(cs.fd)
}
