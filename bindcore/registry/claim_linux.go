package registry

import (
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// Claim is a live claim of an address and port: a used record of the
// registry and the write lock on it, held through an open file description
// of its own. It stays live until Release (or Close of its Registry, or the
// death of its process). Its methods are safe for concurrent use.
type Claim struct {
	r  *Registry
	cs *claimState // &st
	st claimState
}

type claimState struct {
	mu       sync.Mutex
	fd       int
	rec      Record
	released bool
	buf      [RecordSize]byte // the image of the record as last written, guarded by mu
}

// Claim claims req.Addr and req.Port for one socket, without any
// registry-wide lock: it takes a record's write lock (its one fcntl),
// publishes the record as pending, takes a ticket from the header's
// counter, checks every other record for a claim the new one conflicts
// with (see Conflicts: another uid on an overlapping address, or an
// Exclusive claim on either side; with req.Fresh, any live claim on an
// overlapping address), and commits. Of two concurrent conflicting claims
// the one with the later ticket backs out: docs/registry.md has the
// protocol and why it is exact.
//
// Errors:
//   - ErrConflict (matches unix.EADDRINUSE) when a live claim of a
//     non-sharing owner holds the port, or an earlier concurrent claim of it
//     won; the message names its pid, uid, address and role;
//   - ErrFull (matches unix.ENOBUFS) when every record holds a live claim;
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
			if fd >= 0 {
				r.putFD(fd)
			}
		}
	}()
	c = &Claim{r: r}
	c.cs = &c.st
	rec, err := r.claim(&fd, req, &c.st.buf)
	if err != nil {
		return nil, err
	}
	c.st.fd, c.st.rec = fd, rec
	r.res.claims[rec.Slot].Store(c.cs)
	done = true
	return c, nil
}

// claimStep names the points of the claim protocol at which claimHook is
// called.
type claimStep int

const (
	stepStart       claimStep = iota // before the first scan
	stepLocked                       // the slot's write lock is taken, its write begun
	stepPublished                    // the record is published, pending, without a ticket
	stepTicketTaken                  // the ticket is taken (fetch-add), not yet in the record
	stepTicketed                     // the ticket is in the record
	stepChecked                      // the conflict check passed; not yet committed
	stepCommitted                    // committed
)

// claimHook, when set (by tests only, before any claim), is called at each
// step of the claim protocol, to order concurrent claims, widen their race
// windows and place SIGKILLs inside them.
var claimHook func(*Registry, claimStep)

// pendingTimeout bounds how long a claim waits for an earlier concurrent
// claim of a conflicting port to finish its check (a check takes
// microseconds; only a stopped process takes longer). The waiting claim
// then backs out with ErrConflict.
var pendingTimeout = time.Second

// scanState is one claim's scratch: a record buffer (crc32 makes every
// buffer it sees escape, so a local one would be an allocation per record
// scanned) and what the first scan saw of each slot, so that the second
// one rereads only the slots that changed since.
type scanState struct {
	buf [RecordSize]byte
	// seen[i] is the even sequence at which slot i was free, or held a
	// record the claim does not conflict with, or a stale one; an odd value
	// means the slot must be read again.
	seen []uint32
}

var scanPool = sync.Pool{New: func() any { return new(scanState) }}

// firstScan is what the first scan found.
type firstScan struct {
	tickets uint64 // the ticket counter before the scan
	hw      int    // the scan's limit (the high-water mark it read)
	last    int    // the highest slot that is not free, or -1
	stale   int    // a slot whose claim is over and that the claim should take (-1: none)
	cand    [8]int // free slots, lowest first
	nc      int
}

// claim runs the claim protocol through *fd, which holds no lock on entry.
// On success *fd holds the new record's write lock, and img the record's
// image. On error *fd holds no lock, or it was closed and set to -1.
//
//  1. Scan the records below the high-water mark: fail at once on a
//     committed live claim the request conflicts with; note free slots and
//     slots of claims that are over.
//  2. Take a slot's write lock (F_OFD_SETLK) and open its write (odd
//     sequence) at once; raise the high-water mark above it.
//  3. Publish the record: used, pending, ticket 0.
//  4. Take a ticket (fetch-add on the header's counter) and store it.
//  5. Check every other record below the mark (or only those the first
//     scan left to this check, when no other ticket was handed out since
//     it began). A conflicting live claim that is committed, or pending
//     with an earlier ticket that then commits, makes this claim back out;
//     one with a later ticket is ignored (it backs out itself); one
//     without a ticket yet is waited for.
//  6. Commit: clear the pending flag.
func (r *Registry) claim(fd *int, req ClaimRequest, img *[RecordSize]byte) (Record, error) {
	m := r.res.mem
	sc := scanPool.Get().(*scanState)
	defer scanPool.Put(sc)
	hook := claimHook
	if hook != nil {
		hook(r, stepStart)
	}
	pre, err := r.preScan(req, sc)
	if err != nil {
		return Record{}, err
	}
	slot, s, err := r.takeSlot(*fd, req, &pre)
	if err != nil {
		return Record{}, err
	}
	if hook != nil {
		hook(r, stepLocked)
	}
	// Before the record is published: a scan that must see it reads the
	// mark after this.
	m.raiseHighWater(uint32(slot+1), r.count)
	rec := Record{
		Slot:       slot,
		State:      StateUsed,
		Addr:       req.Addr,
		Port:       req.Port,
		Role:       req.Role,
		Share:      req.Share,
		DualStack:  req.DualStack,
		Generation: m.load64(recOff(slot)+rGen) + 1, // ours to write since the lock
		SocketID:   req.SocketID,
		UID:        r.uid,
		PID:        r.pid,
		StartTime:  r.start,
		Netns:      r.netns,
		Claimed:    r.claimTime(),
		Pending:    true,
	}
	*img = [RecordSize]byte{}
	rec.encodeTo(img)
	rec.Seq = m.finish(slot, img, s)
	if hook != nil {
		hook(r, stepPublished)
	}
	// The ticket comes after the publication: whoever gets a later ticket
	// reads this record after it was published.
	rec.Ticket = m.nextTicket()
	if hook != nil {
		hook(r, stepTicketTaken)
	}
	crcPatch64(img, rTicket, rec.Ticket)
	rec.Seq = r.storeImage(slot, img)
	if hook != nil {
		hook(r, stepTicketed)
	}
	// No ticket handed out between the first scan and ours: every claim
	// with an earlier ticket published before that scan, which saw it.
	recheckOnly := rec.Ticket == pre.tickets+1
	if err := r.postScan(req, &rec, sc, recheckOnly); err != nil {
		r.backOut(fd, slot, img)
		return Record{}, err
	}
	if hook != nil {
		hook(r, stepChecked)
	}
	rec.Pending = false
	crcPatch(img, rFlags, img[rFlags]&^flagPending)
	rec.Seq = r.storeImage(slot, img)
	if hook != nil {
		hook(r, stepCommitted)
	}
	r.tidyHighWater(max(pre.last, slot) + 1)
	return rec, nil
}

// conflicts reports whether the claim req must not coexist with the live
// claim rec.
func (r *Registry) conflicts(req ClaimRequest, rec Record) bool {
	return Conflicts(rec, req.Addr, req.Port, req.DualStack, req.Share, r.uid) ||
		req.Fresh && rec.State == StateUsed && rec.Port == req.Port && Overlap(rec.Addr, rec.DualStack, req.Addr, true)
}

// preScan is step 1 of claim.
func (r *Registry) preScan(req ClaimRequest, sc *scanState) (firstScan, error) {
	// The counter first, then the mark and the records: a claim whose
	// ticket is at most this one published before the scan reads it.
	p := firstScan{tickets: r.res.mem.tickets(), last: -1, stale: -1}
	p.hw = r.scanLimit()
	if cap(sc.seen) < p.hw {
		sc.seen = make([]uint32, p.hw, max(p.hw, 64))
	}
	sc.seen = sc.seen[:p.hw]
	// The decoded-record cache is this process's; a claim that finds it in
	// use by another goroutine decodes for itself.
	var cu cacheUse
	defer cu.done(r)
	for i := 0; i < p.hw; i++ {
		rec, _, err := r.readScan(i, &sc.buf, &cu)
		if err != nil {
			var stale bool
			if rec, stale, err = r.settle(i, err); err != nil {
				return p, err
			}
			if stale { // an unreadable record nobody holds: take it first
				sc.seen[i] = 1
				p.last = i
				if p.stale < 0 {
					p.stale = i
				}
				continue
			}
		}
		if rec.State == StateFree {
			sc.seen[i] = rec.Seq
			if p.nc < len(p.cand) {
				p.cand[p.nc], p.nc = i, p.nc+1
			}
			continue
		}
		p.last = i
		sc.seen[i] = rec.Seq
		if !r.conflicts(req, rec) {
			continue
		}
		live, changed, err := r.probe(i, rec)
		if err != nil {
			return p, err
		}
		switch {
		case changed: // the check after publishing looks again
			sc.seen[i] = 1
		case !live: // its claim is over: take its slot first, which cleans it
			if p.stale < 0 {
				p.stale = i
			}
		case rec.Pending: // a claim in progress: the check after publishing decides
			sc.seen[i] = 1
		default:
			return p, r.conflictError(req, rec, "")
		}
	}
	return p, nil
}

// takeSlot is step 2 of claim: it takes the write lock of a slot through fd
// and begins the slot's write at once, returning the odd sequence. It tries
// the stale slot the scan found, then its free ones, then the slots above
// the mark (free: every used record is below it), then every other slot
// below the mark (the lock of a used one is free exactly when its claim is
// over).
func (r *Registry) takeSlot(fd int, req ClaimRequest, p *firstScan) (int, uint32, error) {
	take := func(i int) (bool, error) {
		off, n := slotRange(i)
		err := ofdlock.Set(fd, ofdlock.Write, off, n)
		if err == nil {
			return true, nil
		}
		if isBusy(err) { // a live claim, a releaser between its write and its unlock, a waiter
			return false, nil
		}
		return false, fmt.Errorf("registry: %s: slot %d: F_OFD_SETLK: %w", r.path, i, err)
	}
	got := func(i int) (int, uint32, error) {
		return i, r.res.mem.begin(i), nil // others see a write in progress from now on
	}
	tried := func(i int) bool {
		if i == p.stale {
			return true
		}
		for _, c := range p.cand[:p.nc] {
			if c == i {
				return true
			}
		}
		return false
	}
	if p.stale >= 0 {
		if ok, err := take(p.stale); err != nil || ok {
			if err != nil {
				return 0, 0, err
			}
			return got(p.stale)
		}
	}
	for _, i := range p.cand[:p.nc] {
		if ok, err := take(i); err != nil || ok {
			if err != nil {
				return 0, 0, err
			}
			return got(i)
		}
	}
	for i := p.hw; i < r.count; i++ {
		if ok, err := take(i); err != nil || ok {
			if err != nil {
				return 0, 0, err
			}
			return got(i)
		}
	}
	for i := 0; i < p.hw && i < r.count; i++ { // full: sweep for claims that are over
		if tried(i) {
			continue
		}
		if ok, err := take(i); err != nil || ok {
			if err != nil {
				return 0, 0, err
			}
			return got(i)
		}
	}
	return 0, 0, fmt.Errorf("registry: claim %s: %w: all %d records of %s hold live claims (expected a free or stale record; Options.Records sets the size when the file is created)",
		netip.AddrPortFrom(req.Addr, req.Port), ErrFull, r.count, r.path)
}

// postScan is step 5 of claim: the check of every record below the mark
// (read after the ticket was taken) against own, which is published with
// its ticket. With recheckOnly (own's ticket directly follows the counter
// the first scan started from) it checks only the slots the first scan
// left to it: every other claim whose ticket is earlier than own's took it
// before the first scan began, so it had published before, and the first
// scan found it (and failed, or marked its slot); the claims it did not
// see have later tickets, and defer to own.
func (r *Registry) postScan(req ClaimRequest, own *Record, sc *scanState, recheckOnly bool) error {
	m := r.res.mem
	hw := r.scanLimit()
	if recheckOnly {
		hw = len(sc.seen)
	}
	for i := 0; i < hw; i++ {
		if i == own.Slot {
			continue
		}
		if i < len(sc.seen) {
			if v := sc.seen[i]; v&1 == 0 && (recheckOnly || m.seq(i) == v) {
				continue // irrelevant to the first scan, and unchanged since (or later)
			}
		}
		if err := r.check(req, own, i, &sc.buf); err != nil {
			return err
		}
	}
	return nil
}

// check decides whether the record in slot i keeps the claim own (pending,
// with its ticket) from committing. It returns nil when it does not, and
// waits while it cannot tell yet: while the record is an earlier claim in
// progress, or a claim without a ticket.
func (r *Registry) check(req ClaimRequest, own *Record, i int, b *[RecordSize]byte) error {
	var deadline time.Time
	var last Record
	for n := 0; ; n++ {
		if n > 0 {
			if deadline.IsZero() {
				deadline = time.Now().Add(pendingTimeout)
			} else if time.Now().After(deadline) {
				return r.conflictError(req, last, fmt.Sprintf(", and it is still being made after %v", pendingTimeout))
			}
			pause(n)
		}
		rec, _, err := r.readInto(i, b)
		if err != nil {
			var stale bool
			if rec, stale, err = r.settle(i, err); err != nil {
				return err
			}
			if stale {
				return nil
			}
		}
		if rec.State != StateUsed || !r.conflicts(req, rec) {
			return nil
		}
		if rec.Pending && rec.Ticket > own.Ticket {
			return nil // a later claim: it reads own and defers to it
		}
		last = rec
		live, changed, err := r.probe(i, rec)
		if err != nil {
			return err
		}
		if changed {
			continue
		}
		if !live {
			return nil // its claimant died: its record is stale
		}
		if !rec.Pending {
			return r.conflictError(req, rec, "")
		}
		// An earlier claim still checking, or one without its ticket yet:
		// wait for it.
	}
}

// pause is the back-off of a claim waiting for another: yield, then sleep
// a little more each time, up to 200µs.
func pause(n int) {
	if n < 8 {
		runtime.Gosched()
		return
	}
	time.Sleep(min(time.Duration(n)*5*time.Microsecond, 200*time.Microsecond))
}

// probe reports whether the record rec just read from slot i is a live
// claim: its write lock is held, and the record did not change meanwhile
// (changed: read it again). A new holder of the lock begins its write
// right after taking it, so an unchanged record with a held lock is the
// holder's.
func (r *Registry) probe(i int, rec Record) (live, changed bool, err error) {
	held, err := r.held(i)
	if err != nil {
		return false, false, err
	}
	if r.res.mem.seq(i) != rec.Seq {
		return false, true, nil
	}
	return held, false, nil
}

// backOut withdraws a pending record, whose image is img: it writes it free
// and drops its lock. If the unlock fails, *fd is closed (which drops it)
// and set to -1.
func (r *Registry) backOut(fd *int, slot int, img *[RecordSize]byte) {
	freeImage(img)
	r.storeImage(slot, img)
	off, n := slotRange(slot)
	if err := ofdlock.Unlock(*fd, off, n); err != nil {
		unix.Close(*fd)
		*fd = -1
	}
}

// lowerSlack is how many free slots below the high-water mark a claim
// leaves before it lowers the mark (lowering costs two fcntl calls).
const lowerSlack = 16

// tidyHighWater repairs a damaged high-water mark, or lowers one that is
// well above want (one past the highest slot a claim saw used).
func (r *Registry) tidyHighWater(want int) {
	hw, ok := r.res.mem.highWater()
	if ok && int(hw) <= r.count && (int(hw)-want < lowerSlack || int(hw)-want < int(hw)/4) {
		return
	}
	r.lowerHighWater(want) // best effort: a failure leaves a valid mark
}

func (r *Registry) conflictError(req ClaimRequest, held Record, note string) error {
	why := "a claim of another user"
	switch {
	case req.Fresh && held.UID == r.uid && held.Share != Exclusive:
		why = "a claim, and this claim wants a port of its own (port 0)"
	case held.Share == Exclusive:
		why = "an exclusive claim"
	case req.Share == Exclusive:
		why = "a claim, and this claim is exclusive"
	}
	return fmt.Errorf("registry: claim %s: %w: port %d is held by pid %d (uid %d): %s, %s on %s, socket %#x%s, registry %s (this process: pid %d, uid %d)",
		netip.AddrPortFrom(req.Addr, req.Port), ErrConflict,
		req.Port, held.PID, held.UID, why, held.Role, held.AddrPort(), held.SocketID, note, r.path, r.pid, r.uid)
}

// Record returns the claim's record as last written (Slot, Generation and
// SocketID identify it, for Registry.Wait).
func (c *Claim) Record() Record {
	c.cs.mu.Lock()
	defer c.cs.mu.Unlock()
	return c.cs.rec
}

// SetRole changes the claim's role. Only the claim's holder writes its
// record, so this takes no lock. Errors: ErrInvalid for role 0, ErrClosed
// after Release, ErrCorrupt on a mapping fault.
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
	crcPatch(&cs.buf, rRole, byte(role))
	cs.rec.Seq = r.storeImage(cs.rec.Slot, &cs.buf)
	cs.rec.Role = role
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
	r.res.claims[cs.rec.Slot].Store(nil)
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
	freeImage(&cs.buf)
	r.storeImage(cs.rec.Slot, &cs.buf)
	off, n := slotRange(cs.rec.Slot)
	if err := ofdlock.Unlock(cs.fd, off, n); err != nil {
		unix.Close(cs.fd)
		return
	}
	r.putFD(cs.fd)
}
