package registry

import (
	"fmt"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// Claim is a live claim of an address and port: a used record of the
// registry and the write lock on it, held through the Registry's lock
// description (one open file description for all the claims of a
// Registry). It stays live until Release (or Close of its Registry, or the
// death of its process). Its methods are safe for concurrent use.
type Claim struct {
	r  *Registry
	cs *claimState // &st
	st claimState
}

type claimState struct {
	mu       sync.Mutex
	rec      Record
	pos      int        // its index entry's position
	entry    IndexEntry // its index entry
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
	c = &Claim{r: r}
	c.cs = &c.st
	c.st.rec.Slot = -1
	defer func() {
		if v := recover(); v != nil { // a fault on the mapping: give the slot up
			if slot := c.st.rec.Slot; slot >= 0 {
				off, n := slotRange(slot)
				if ofdlock.Unlock(r.res.lockFD, off, n) == nil {
					r.res.claims[slot].Store(nil)
				}
			}
			panic(v)
		}
	}()
	rec, err := r.claim(c.cs, req)
	if err != nil {
		return nil, err
	}
	c.st.rec = rec
	c.st.entry = newEntry(rec.Slot, rec.Port, rec.Generation)
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
// read) and what the first scan saw of each record of the claim's port, so
// that the second one rereads only those that changed since.
type scanState struct {
	buf  [RecordSize]byte
	seen []seenEntry
}

// seenEntry is what the first scan saw of one entry of the claim's port.
type seenEntry struct {
	at   int32  // its place in the lookup: d*8+k, group d after the home, word k
	slot int32  // its slot
	seq  uint32 // the even sequence at which the record was irrelevant (no conflict, or stale); odd: read it again
}

var scanPool = sync.Pool{New: func() any { return new(scanState) }}

// firstScan is what the first scan found.
type firstScan struct {
	tickets uint64 // the ticket counter before the scan
	stale   int    // a slot of the port whose claim is over, for the claim to take (-1: none)
}

// claim runs the claim protocol for cs, through the lock description. On
// success the description holds the new record's write lock, res.claims
// names cs at its slot, and cs.buf holds the record's image and cs.pos its
// index entry's position. On error the claim holds no slot.
//
//  1. Look up the port in the index and read the records of its entries:
//     fail at once on a committed live claim the request conflicts with;
//     note a slot of the port whose claim is over.
//  2. Take a slot's write lock (F_OFD_SETLK) and open its write (odd
//     sequence) at once; put the claim's entry into the index; raise the
//     high-water mark above the slot.
//  3. Publish the record: used, pending, ticket 0.
//  4. Take a ticket (fetch-add on the header's counter) and store it.
//  5. Look the port up again and check the records of its entries (or only
//     those the first scan left to this check, when no other ticket was
//     handed out since it began). A conflicting live claim that is
//     committed, or pending with an earlier ticket that then commits,
//     makes this claim back out; one with a later ticket is ignored (it
//     backs out itself); one without a ticket yet is waited for.
//  6. Commit: clear the pending flag.
func (r *Registry) claim(cs *claimState, req ClaimRequest) (Record, error) {
	m := r.res.mem
	img, pos := &cs.buf, &cs.pos
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
	slot, s, torn, err := r.takeSlot(cs, req, &pre)
	if err != nil {
		return Record{}, err
	}
	if hook != nil {
		hook(r, stepLocked)
	}
	// Ours to read since the lock. A claimant that died inside the record
	// (torn) may have put the next generation into an index entry without
	// storing it in the record: skip it, so that no dead entry has the
	// value of this claim's.
	gen := m.load64(recOff(slot)+rGen) + 1
	if torn {
		gen++
	}
	e := newEntry(slot, req.Port, gen)
	if *pos = r.insertEntry(e); *pos < 0 {
		// Only dead entries can fill an index twice the table's size.
		if _, err = r.sweepIndex(slot); err == nil {
			if *pos = r.insertEntry(e); *pos < 0 {
				err = fmt.Errorf("registry: claim %s: %w: the index of %s is full", netip.AddrPortFrom(req.Addr, req.Port), ErrFull, r.path)
			}
		}
		if err != nil {
			m.finish(slot, r.ownImage(slot, img), s)
			r.unlockSlot(slot)
			return Record{}, err
		}
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
		Generation: gen,
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
	if err := r.postScan(req, &rec, e, sc, recheckOnly); err != nil {
		r.backOut(slot, img, *pos, e)
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
	r.tidyHighWater(slot + 1)
	return rec, nil
}

// ownImage copies the record of a slot the caller holds the lock of into
// img (with an even sequence) and returns img, to end an open write
// without changing the record.
func (r *Registry) ownImage(slot int, img *[RecordSize]byte) *[RecordSize]byte {
	r.res.mem.copyOwn(slot, img)
	return img
}

// conflicts reports whether the claim req must not coexist with the live
// claim rec.
func (r *Registry) conflicts(req ClaimRequest, rec Record) bool {
	return Conflicts(rec, req.Addr, req.Port, req.DualStack, req.Share, r.uid) ||
		req.Fresh && rec.State == StateUsed && rec.Port == req.Port && Overlap(rec.Addr, rec.DualStack, req.Addr, true)
}

// preScan is step 1 of claim: the lookup of the request's port in the
// index, and the reading of its entries' records. It removes the dead
// entries it meets and lowers the home group's reach when no entry needs
// it any more.
func (r *Registry) preScan(req ClaimRequest, sc *scanState) (firstScan, error) {
	// The counter first, then the index and the records: a claim whose
	// ticket is at most this one published (and put its entry in the
	// index) before the scan reads them.
	p := firstScan{tickets: r.res.mem.tickets(), stale: -1}
	sc.seen = sc.seen[:0]
	h := portHome(req.Port, r.groups)
	w, reach := r.reachOf(h)
	far := 0 // the farthest group holding an entry of a port whose home is h
	// The decoded-record cache is this process's; a claim that finds it in
	// use by another goroutine decodes for itself.
	var cu cacheUse
	defer cu.done(r)
	for d := 0; d <= reach; d++ {
		g := (h + d) & (r.groups - 1)
		for k := 1; k <= IndexEntries; k++ {
			pos := g*8 + k
			e := r.entryAt(pos)
			if e == 0 {
				continue
			}
			if e.Port() != req.Port {
				if d > far && portHome(e.Port(), r.groups) == h {
					far = d
				}
				continue
			}
			far = d
			i := e.Slot()
			if i < 0 || i >= r.count { // damaged: names no record
				r.dropEntry(pos, e)
				continue
			}
			rec, _, err := r.readScan(i, &sc.buf, &cu)
			if err != nil {
				var stale bool
				if rec, stale, err = r.settle(i, err); err != nil {
					return p, err
				}
				if stale { // an unreadable record nobody holds: take it first
					r.dropEntry(pos, e)
					if p.stale < 0 {
						p.stale = i
					}
					continue
				}
			}
			if !e.matches(rec) { // the entry's claim is over
				r.dropEntry(pos, e)
				continue
			}
			se := seenEntry{at: int32(d*8 + k), slot: int32(i), seq: rec.Seq}
			if r.conflicts(req, rec) {
				live, changed, err := r.probe(i, rec)
				if err != nil {
					return p, err
				}
				switch {
				case changed: // the check after publishing looks again
					se.seq = 1
				case !live: // its claim is over: take its slot first, which cleans it
					if p.stale < 0 {
						p.stale = i
					}
				case rec.Pending: // a claim in progress: the check after publishing decides
					se.seq = 1
				default:
					return p, r.conflictError(req, rec, "")
				}
			}
			sc.seen = append(sc.seen, se)
		}
	}
	r.lowerReach(h, w, far)
	return p, nil
}

// takeSlot is step 2 of claim: it takes the write lock of a slot through
// the lock description for cs and begins the slot's write at once,
// returning the odd sequence, and whether the record was torn before (its
// last writer died inside it). It tries the stale slot the scan found, then
// a slot whose lock this Registry kept at a release (no fcntl), then the
// slots from the free-slot hint up to the mark that look free, then the
// slots above the mark (free: every used record is below it), then every
// other slot below the mark (the lock of a used one is free exactly when
// its claim is over).
//
// The lock description does not conflict with itself: res.claims[slot],
// set (compare-and-swap from nil) before the fcntl, keeps two claims of
// this Registry off one slot.
func (r *Registry) takeSlot(cs *claimState, req ClaimRequest, p *firstScan) (int, uint32, bool, error) {
	m := r.res.mem
	take := func(i int) (bool, error) {
		if !r.res.claims[i].CompareAndSwap(nil, cs) {
			return false, nil // a claim of this Registry, or a kept slot
		}
		off, n := slotRange(i)
		err := ofdlock.Set(r.res.lockFD, ofdlock.Write, off, n)
		if err == nil {
			return true, nil
		}
		r.res.claims[i].Store(nil)
		if isBusy(err) { // a live claim, a releaser between its write and its unlock, a waiter
			return false, nil
		}
		return false, fmt.Errorf("registry: %s: slot %d: F_OFD_SETLK: %w", r.path, i, err)
	}
	got := func(i int) (int, uint32, bool, error) {
		cs.rec.Slot = i
		s, torn := m.begin(i) // others see a write in progress from now on
		return i, s, torn, nil
	}
	if p.stale >= 0 {
		if ok, err := take(p.stale); err != nil || ok {
			if err != nil {
				return 0, 0, false, err
			}
			return got(p.stale)
		}
	}
	if i, ok := r.takeKept(cs); ok {
		return got(i)
	}
	hw := r.scanLimit()
	hint := m.freeHint()
	for i := int(hint); i < hw; i++ {
		if !m.looksFree(i) {
			continue
		}
		ok, err := take(i)
		if err != nil {
			return 0, 0, false, err
		}
		if ok {
			m.casFreeHint(hint, uint32(i+1))
			return got(i)
		}
	}
	// Every slot from the hint to the mark was used (or locked) when the
	// loop looked: the next claim need not look there.
	m.casFreeHint(hint, uint32(hw))
	for i := hw; i < r.count; i++ {
		if ok, err := take(i); err != nil || ok {
			if err != nil {
				return 0, 0, false, err
			}
			return got(i)
		}
	}
	for i := 0; i < hw && i < r.count; i++ { // full: sweep for claims that are over
		if i == p.stale {
			continue
		}
		if ok, err := take(i); err != nil || ok {
			if err != nil {
				return 0, 0, false, err
			}
			return got(i)
		}
	}
	return 0, 0, false, fmt.Errorf("registry: claim %s: %w: all %d records of %s hold live claims (expected a free or stale record; Options.Records sets the size when the file is created)",
		netip.AddrPortFrom(req.Addr, req.Port), ErrFull, r.count, r.path)
}

// postScan is step 5 of claim: the lookup of the port again (after the
// ticket was taken), and the check of its entries' records against own,
// which is published with its ticket and whose entry is ownEntry. With
// recheckOnly (own's ticket directly follows the counter the first scan
// started from) it checks only the records the first scan left to it:
// every other claim whose ticket is earlier than own's took it before the
// first scan began, so it had published (and put its entry in the index)
// before, and the first scan found it (and failed, or marked it); the
// claims it did not see have later tickets, and defer to own.
func (r *Registry) postScan(req ClaimRequest, own *Record, ownEntry IndexEntry, sc *scanState, recheckOnly bool) error {
	if recheckOnly {
		for _, se := range sc.seen {
			if se.seq&1 == 0 || int(se.slot) == own.Slot {
				continue
			}
			if err := r.check(req, own, int(se.slot), &sc.buf); err != nil {
				return err
			}
		}
		return nil
	}
	m := r.res.mem
	h := portHome(req.Port, r.groups)
	_, reach := r.reachOf(h)
	cur := 0
	for d := 0; d <= reach; d++ {
		g := (h + d) & (r.groups - 1)
		for k := 1; k <= IndexEntries; k++ {
			pos := g*8 + k
			e := r.entryAt(pos)
			if e == 0 || e.Port() != req.Port || e == ownEntry {
				continue
			}
			i := e.Slot()
			if i < 0 || i >= r.count {
				continue
			}
			if i == own.Slot { // an older claim of own's slot: dead
				r.dropEntry(pos, e)
				continue
			}
			at := int32(d*8 + k)
			for cur < len(sc.seen) && sc.seen[cur].at < at {
				cur++
			}
			if cur < len(sc.seen) {
				if se := sc.seen[cur]; se.at == at && int(se.slot) == i && se.seq&1 == 0 && m.seq(i) == se.seq {
					continue // irrelevant to the first scan, and unchanged since
				}
			}
			if err := r.check(req, own, i, &sc.buf); err != nil {
				return err
			}
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

// backOut withdraws a pending record, whose image is img and whose index
// entry e is at pos: it writes it free, removes the entry and drops its
// lock.
func (r *Registry) backOut(slot int, img *[RecordSize]byte, pos int, e IndexEntry) {
	freeImage(img)
	r.storeImage(slot, img)
	r.dropEntry(pos, e)
	r.unlockSlot(slot)
}

// keepSlots lets Release keep slots; tests and benchmarks turn it off (before
// any claim) to measure and exercise the path with an fcntl.
var keepSlots = true

// kept marks, in res.claims, a free slot whose lock the lock description
// still holds (see releaseLocked).
var kept = &claimState{released: true}

// unlockSlot drops the lock description's lock on slot (whose record is
// free), gives the slot up in res.claims and makes it the free-slot hint if
// it is lower. An unlock that fails (the kernel may have to split a lock
// to drop part of it) leaves the slot locked and free until the Registry
// closes: it stays marked kept, out of the way of this Registry's claims.
func (r *Registry) unlockSlot(slot int) {
	off, n := slotRange(slot)
	if err := ofdlock.Unlock(r.res.lockFD, off, n); err != nil {
		r.res.claims[slot].Store(kept)
		return
	}
	r.res.claims[slot].Store(nil)
	r.res.mem.lowerFreeHint(uint32(slot))
}

// keep puts a free slot, whose lock the lock description holds, among the
// kept ones for the next claim of this Registry, if there is room.
func (r *Registry) keep(slot int) bool {
	r.res.claims[slot].Store(kept)
	for i := range r.res.kept {
		p := &r.res.kept[i]
		if p.Load() == 0 && p.CompareAndSwap(0, int32(slot+1)) {
			return true
		}
	}
	return false
}

// takeKept takes a kept slot for cs, if there is one.
func (r *Registry) takeKept(cs *claimState) (int, bool) {
	for i := range r.res.kept {
		p := &r.res.kept[i]
		if v := p.Load(); v != 0 && p.CompareAndSwap(v, 0) {
			slot := int(v - 1)
			r.res.claims[slot].Store(cs)
			return slot, true
		}
	}
	return 0, false
}

// lowerSlack is how many free slots below the high-water mark a claim
// leaves before it lowers the mark (lowering costs two fcntl calls).
const lowerSlack = 16

// tidyHighWater repairs a damaged high-water mark, or lowers one that is
// well above want (one past a used slot) when the top slot below it looks
// free (a used one would make the lowering fail).
func (r *Registry) tidyHighWater(want int) {
	m := r.res.mem
	hw, ok := m.highWater()
	if ok && int(hw) <= r.count && (int(hw)-want < lowerSlack || int(hw)-want < int(hw)/4 || !m.looksFree(int(hw)-1)) {
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
	r.releaseLocked(cs, true)
	return nil
}

// Close is Release.
func (c *Claim) Close() error { return c.Release() }

// releaseLocked frees cs's record and removes its index entry; the caller
// holds cs.mu and r.rw (shared or exclusive). With keep, and room among
// the kept slots, the lock description keeps the slot's lock, so that the
// next claim of this Registry takes the slot without an fcntl; otherwise
// it drops the lock.
func (r *Registry) releaseLocked(cs *claimState, keep bool) {
	cs.released = true
	slot := cs.rec.Slot
	freeImage(&cs.buf)
	r.storeImage(slot, &cs.buf)
	r.dropEntry(cs.pos, cs.entry)
	if keep && keepSlots && r.keep(slot) {
		return
	}
	r.unlockSlot(slot)
}
