//go:build linux

package registry

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// portsOfHome returns n ports other than not whose entries start from the
// same index group as not's in r.
func portsOfHome(r *Registry, not uint16, n int) []uint16 {
	h := portHome(not, r.groups)
	var ps []uint16
	for p := uint16(1); len(ps) < n && p != 0; p++ {
		if p != not && portHome(p, r.groups) == h {
			ps = append(ps, p)
		}
	}
	return ps
}

// TestIndexOverflow: the entries of a port's claims spill over into the
// groups after its home once the home is full (of its own claims and of
// other ports sharing the home); the reach covers them, so a conflicting
// claim still finds a claim whose entry lies groups away, and the reach
// comes back down once those claims are gone.
func TestIndexOverflow(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), Netns: testNetns, Records: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const port = 4000
	h := portHome(port, r.groups)
	var cs []*Claim
	for _, p := range portsOfHome(r, port, IndexEntries) { // fill the home group with other ports
		c, err := r.Claim(ClaimRequest{Addr: a4, Port: p})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	// Same user, distinct addresses: these share, and their entries go to
	// the groups after the home.
	var mine []*Claim
	for i := 0; i < 2*IndexEntries; i++ {
		c, err := r.Claim(ClaimRequest{Addr: addr4(10, 1, 0, byte(i+1)), Port: port})
		if err != nil {
			t.Fatal(err)
		}
		mine = append(mine, c)
	}
	if _, reach := r.reachOf(h); reach < 2 {
		t.Fatalf("reach %d after %d entries beyond a full home group", reach, 2*IndexEntries)
	}
	// The last one's entry is farthest from the home: an exclusive claim of
	// its address must find it.
	last := mine[len(mine)-1].Record()
	if last.Slot != mine[len(mine)-1].cs.entry.Slot() || mine[len(mine)-1].cs.pos>>3 == h {
		t.Fatalf("the last claim's entry is in the home group (position %d)", mine[len(mine)-1].cs.pos)
	}
	_, err = r.Claim(ClaimRequest{Addr: last.Addr, Port: port, Share: Exclusive})
	mustErr(t, err, ErrConflict)
	_, err = r.Claim(ClaimRequest{Addr: any4, Port: port, Share: Exclusive})
	mustErr(t, err, ErrConflict)
	if free, err := r.portFree(port, last.Addr, new([RecordSize]byte)); err != nil || free {
		t.Fatalf("portFree of a held port: %v %v", free, err)
	}
	for _, c := range mine {
		c.Release()
	}
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: port, Share: Exclusive})
	if err != nil {
		t.Fatal(err)
	}
	// The lookup lowered the reach to 0, and the new claim's own entry,
	// past the home group (still full of other ports), raised it to 1.
	if _, reach := r.reachOf(h); reach != 1 || c.cs.pos>>3 != (h+1)&(r.groups-1) {
		t.Errorf("reach %d, entry at %d after the claims beyond the home went, want 1 and group %d", reach, c.cs.pos, h+1)
	}
	c.Release()
	for _, c := range cs {
		c.Release()
	}
}

func addr4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// TestIndexDeadEntries: entries whose claims are over (a claimant that died
// between its entry and its publication, a record reclaimed or freed
// without its entry removed) are removed by the next claim of their port,
// and never make it fail.
func TestIndexDeadEntries(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), Netns: testNetns, Records: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const port = 7000
	// A free slot (generation 0) named by an entry of generation 1: a
	// claimant that died after its entry, before its record.
	dead1 := newEntry(3, port, 1)
	p1 := r.insertEntry(dead1)
	// An entry naming a slot beyond the table (a damaged word).
	dead2 := IndexEntry(uint64(dead1)&^(1<<20-1) | 17)
	p2 := r.insertEntry(dead2)
	// A live claim of the port, and an old entry of its slot.
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Record()
	old := newEntry(rec.Slot, port, rec.Generation-1)
	p3 := r.insertEntry(old)
	c2, err := r.Claim(ClaimRequest{Addr: a4, Port: port})
	if err != nil {
		t.Fatalf("a claim among dead entries: %v", err)
	}
	for _, x := range []struct {
		pos int
		e   IndexEntry
	}{{p1, dead1}, {p2, dead2}, {p3, old}} {
		if got := r.entryAt(x.pos); got == x.e {
			t.Errorf("dead entry %#x still at %d", uint64(x.e), x.pos)
		}
	}
	if r.entryAt(c.cs.pos) != c.cs.entry || r.entryAt(c2.cs.pos) != c2.cs.entry {
		t.Error("a live claim's entry was removed")
	}
	// A claimant that goes without releasing (its lock dropped, record and
	// entry left): its entry is dead once another claim reclaims or takes
	// the slot, and a sweep removes it.
	pos, e := c2.cs.pos, c2.cs.entry
	dropLock(t, r, c2)
	if n, err := r.sweepIndex(-1); err != nil || n != 1 || r.entryAt(pos) == e {
		t.Errorf("sweep removed %d entries (%v), want the stale claim's", n, err)
	}
	c.Release()
	if r.entryAt(c.cs.pos) == c.cs.entry {
		t.Error("Release left its entry")
	}

}

// TestKeptSlot: a Release keeps its slot's lock (the record free, the slot
// held), the Registry's next Claim takes that slot, another Registry (as
// another process would) takes another one, a Wait on the released claim
// returns at its reread, and Close drops the kept lock.
func TestKeptSlot(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir)
	other := openTest(t, dir)
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 9000})
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Record()
	done := make(chan error, 1)
	go func() { done <- other.Wait(context.Background(), rec) }()
	time.Sleep(20 * time.Millisecond) // Wait is blocked on the slot's lock
	t0 := time.Now()
	c.Release()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Wait saw the release of a kept slot in %v (reread every %v)", time.Since(t0), waitPoll)
	case <-time.After(2 * time.Second):
		t.Fatal("Wait did not see the release of a kept slot")
	}
	if held, err := r.held(rec.Slot); err != nil || !held {
		t.Fatalf("kept slot %d: held %v (%v), want its lock kept", rec.Slot, held, err)
	}
	if cur, _, err := r.read(rec.Slot); err != nil || cur.State != StateFree {
		t.Fatalf("kept slot's record: %v %v, want free", cur, err)
	}
	c2, err := other.Claim(ClaimRequest{Addr: a4, Port: 9001})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Record().Slot == rec.Slot {
		t.Fatalf("another Registry took the kept slot %d", rec.Slot)
	}
	c3, err := r.Claim(ClaimRequest{Addr: a4, Port: 9002})
	if err != nil {
		t.Fatal(err)
	}
	if c3.Record().Slot != rec.Slot {
		t.Errorf("the next claim took slot %d, want the kept %d", c3.Record().Slot, rec.Slot)
	}
	c3.Release()
	r.Close()
	if held, err := other.held(rec.Slot); err != nil || held {
		t.Errorf("after Close: slot %d held %v (%v), want its lock dropped", rec.Slot, held, err)
	}
}

// TestIndexFull: an index with no empty word is swept of dead entries
// before a claim gives up; with none dead the claim fails with ErrFull and
// leaves its slot as it found it (free, unlocked).
func TestIndexFull(t *testing.T) {
	r, err := Open(Options{Dir: t.TempDir(), Netns: testNetns, Records: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.groups != 1 {
		t.Fatalf("%d index groups, want 1", r.groups)
	}
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Copies of the live claim's entry fill the other words: none is dead.
	for k := 1; k < IndexEntries; k++ {
		if r.insertEntry(c.cs.entry) < 0 {
			t.Fatal("no room for a copy")
		}
	}
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 2})
	mustFull(t, err)
	mustErr(t, err, unix.ENOBUFS)
	if held, err := r.held(1); err != nil || held {
		t.Errorf("slot 1 held %v (%v) after the failed claim", held, err)
	}
	if rec, _, err := r.read(1); err != nil || rec.State != StateFree {
		t.Errorf("slot 1 after the failed claim: %v %v", rec, err)
	}
	// Make the copies dead (a generation slot 1 never had): a claim sweeps
	// them out and gets in.
	for k := 1; k <= IndexEntries; k++ {
		if e := r.entryAt(k); e == c.cs.entry && k != c.cs.pos {
			atomic.StoreUint64(r.ixWord(0, k), uint64(newEntry(1, 3, 99)))
		}
	}
	c2, err := r.Claim(ClaimRequest{Addr: a4, Port: 2})
	if err != nil {
		t.Fatalf("a claim with dead entries filling the index: %v", err)
	}
	for k := 1; k <= IndexEntries; k++ {
		if e := r.entryAt(k); e != 0 && e != c.cs.entry && e != c2.cs.entry {
			t.Errorf("word %d: %#x left after the sweep", k, uint64(e))
		}
	}
}
