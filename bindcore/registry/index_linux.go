package registry

import "sync/atomic"

// The port index (docs/registry.md, "The port index"): groups of
// IndexEntries words after the records. A claim of port p puts an entry
// (slot, port, generation) into the first empty word from p's home group on
// (portHome), and makes the home group's reach at least the distance of the
// group it used; a lookup of p reads the groups from the home to the home
// plus the reach. So a claim reads the entries of its port (and of the few
// ports that share its groups), never the whole table.
//
// Entries are hints that over-approximate: every published claim has one
// (inserted after its slot lock, before its publication), and an entry
// whose slot no longer holds its claim is dead; whoever meets a dead entry
// removes it (a compare-and-swap to 0: a generation is never used twice in a
// slot, so a live entry never has a dead one's value).

// ixWord returns the word k (0: the reach word, 1..IndexEntries: entries)
// of group g.
func (r *Registry) ixWord(g, k int) *uint64 {
	return r.res.mem.u64(r.ixOff + g*IndexGroupSize + 8*k)
}

// reachOf loads the reach word of group h and returns it with the reach,
// which a damaged word (a reach beyond the index) makes the whole index.
func (r *Registry) reachOf(h int) (uint64, int) {
	w := atomic.LoadUint64(r.ixWord(h, 0))
	reach := int(uint32(w))
	if reach >= r.groups {
		reach = r.groups - 1
	}
	return w, reach
}

// insertEntry puts e (of a claim whose slot lock the caller holds, whose
// record is not published yet) into the index, and then makes the reach of
// its port's home group cover it. It returns the entry's word position
// (group*8+k), or -1 when every word of the index is taken.
func (r *Registry) insertEntry(e IndexEntry) int {
	h := portHome(e.Port(), r.groups)
	for d := 0; d < r.groups; d++ {
		g := (h + d) & (r.groups - 1)
		for k := 1; k <= IndexEntries; k++ {
			p := r.ixWord(g, k)
			if atomic.LoadUint64(p) == 0 && atomic.CompareAndSwapUint64(p, 0, uint64(e)) {
				r.coverReach(h, d)
				return g*8 + k
			}
		}
	}
	return -1
}

// coverReach makes the reach of group h at least d. It always changes the
// word (its version counts up), even when the reach already covers d: a
// lowering that read the word before this claim's entry was inserted (and
// so may have missed it) then fails its compare-and-swap.
func (r *Registry) coverReach(h, d int) {
	p := r.ixWord(h, 0)
	for {
		w := atomic.LoadUint64(p)
		reach := max(uint32(w), uint32(d))
		if atomic.CompareAndSwapUint64(p, w, (w>>32+1)<<32|uint64(reach)) {
			return
		}
	}
}

// lowerReach lowers the reach of group h to far, if its word is still w:
// the word read before a lookup that found no entry of the group's ports
// beyond far groups. An insertion since then changed the word.
func (r *Registry) lowerReach(h int, w uint64, far int) {
	if far < int(uint32(w)) {
		atomic.CompareAndSwapUint64(r.ixWord(h, 0), w, (w>>32+1)<<32|uint64(far))
	}
}

// entryAt loads the entry at word position pos.
func (r *Registry) entryAt(pos int) IndexEntry {
	return IndexEntry(atomic.LoadUint64(r.ixWord(pos>>3, pos&7)))
}

// dropEntry removes the entry e at pos, if it is still there.
func (r *Registry) dropEntry(pos int, e IndexEntry) {
	atomic.CompareAndSwapUint64(r.ixWord(pos>>3, pos&7), uint64(e), 0)
}

// sweepIndex removes every dead entry of the index (whose slot is free,
// holds another claim, or a claim that is over), for an insertion that
// found no empty word. own is the slot of the claim that sweeps (its lock
// held, its record being written, its entry not in yet: an entry naming it
// is an older claim's), or -1. It returns how many it removed.
func (r *Registry) sweepIndex(own int) (int, error) {
	var b [RecordSize]byte
	n := 0
	for g := 0; g < r.groups; g++ {
		for k := 1; k <= IndexEntries; k++ {
			pos := g*8 + k
			e := r.entryAt(pos)
			if e == 0 {
				continue
			}
			if e.Slot() == own {
				r.dropEntry(pos, e)
				n++
				continue
			}
			dead, err := r.deadEntry(e, &b)
			if err != nil {
				return n, err
			}
			if dead {
				r.dropEntry(pos, e)
				n++
			}
		}
	}
	return n, nil
}

// deadEntry reports whether e no longer names a claim that may be live: its
// slot is beyond the table, or holds a record e does not match, or one
// whose lock is free (with an unreadable record, its writer died). It never
// waits: an unreadable record whose lock is held keeps its entry.
func (r *Registry) deadEntry(e IndexEntry, b *[RecordSize]byte) (bool, error) {
	i := e.Slot()
	if i < 0 || i >= r.count {
		return true, nil
	}
	rec, _, err := r.readInto(i, b)
	if err != nil {
		// Unreadable: dead if nobody holds its lock; otherwise a writer
		// is inside (another claim, maybe sweeping too: not waited for)
		// and the entry stays.
		held, err := r.held(i)
		return !held, err
	}
	if !e.matches(rec) {
		return true, nil
	}
	live, changed, err := r.probe(i, rec)
	return err == nil && !live && !changed, err
}
