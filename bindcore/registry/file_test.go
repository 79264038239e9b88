//go:build linux

package registry

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"golang.org/x/sys/unix"
)

// newFile creates a registry file in a fresh directory and returns its path.
func newFile(t *testing.T) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	r, err := Open(Options{Dir: dir, Netns: testNetns, Records: 16})
	if err != nil {
		t.Fatal(err)
	}
	path = r.Path()
	r.Close()
	return dir, path
}

func patch(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesBadFiles(t *testing.T) {
	testutil.CheckFDs(t)
	le := binary.LittleEndian
	u32 := func(v uint32) []byte { return le.AppendUint32(nil, v) }
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, path string)
		want  error
		msg   string
	}{
		{"wrong magic", func(t *testing.T, p string) { patch(t, p, 0, []byte("NOTAREG!")) }, ErrCorrupt, "not an rdmabind registry"},
		// Another version's file is refused while one of its claims is
		// live (a lock on a record); TestOpenReplacesIdleOtherVersion has
		// it without.
		{"wrong version", func(t *testing.T, p string) { patch(t, p, hVersion, u32(Version+1)); liveClaim(t, p) }, ErrVersion, "version 3"},
		{"version 1", func(t *testing.T, p string) { patch(t, p, hVersion, u32(1)); liveClaim(t, p) }, ErrVersion, "file format version 1, this rdmabind reads version 3"},
		{"version 2", func(t *testing.T, p string) { patch(t, p, hVersion, u32(2)); liveClaim(t, p) }, ErrVersion, "file format version 2, this rdmabind reads version 3 (the file of an older rdmabind"},
		{"header checksum", func(t *testing.T, p string) { patch(t, p, hCount, u32(17)) }, ErrCorrupt, "checksum"},
		{"truncated", func(t *testing.T, p string) { os.Truncate(p, HeaderSize+3*RecordSize+5) }, ErrCorrupt, "truncated"},
		{"truncated header", func(t *testing.T, p string) { os.Truncate(p, 100) }, ErrCorrupt, "truncated"},
		{"extended", func(t *testing.T, p string) { os.Truncate(p, HeaderSize+17*RecordSize) }, ErrCorrupt, "size"},
		{"world-writable", func(t *testing.T, p string) { os.Chmod(p, 0o666) }, ErrPermission, "writable by group or others"},
		{"group-writable", func(t *testing.T, p string) { os.Chmod(p, 0o620) }, ErrPermission, "writable by group or others"},
		{"symlink", func(t *testing.T, p string) {
			os.Rename(p, p+".real")
			os.Symlink(p+".real", p)
		}, ErrPermission, "symbolic link"},
		{"directory", func(t *testing.T, p string) { os.Remove(p); os.Mkdir(p, 0o700) }, ErrPermission, "not a regular file"},
		{"fifo", func(t *testing.T, p string) { os.Remove(p); unix.Mkfifo(p, 0o600) }, ErrPermission, "not a regular file"},
		{"other netns", func(t *testing.T, p string) {
			os.Rename(p, filepath.Join(filepath.Dir(p), FileName(7, uint32(os.Geteuid()))))
		}, ErrCorrupt, "network namespace"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, path := newFile(t)
			c.setup(t, path)
			netns := uint64(testNetns)
			if c.name == "other netns" {
				netns = 7
			}
			r, err := Open(Options{Dir: dir, Netns: netns})
			if err == nil {
				r.Close()
				t.Fatal("Open accepted it")
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("error %q, want %v saying %q and naming the path", err, c.want, c.msg)
			}
		})
	}
}

// liveClaim holds a write lock on the first record of the registry at
// path, as a live claim does, until the test ends.
func liveClaim(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := ofdlock.Set(int(f.Fd()), ofdlock.Write, HeaderSize, RecordSize); err != nil {
		t.Fatal(err)
	}
}

// TestOpenReplacesIdleOtherVersion: the registry file an rdmabind of
// another format version left, with no claim of it live, is removed and a
// new one created in its place (a new inode: a process of that version
// still mapping the old one keeps its copy); with a live claim, Open
// refuses it (TestOpenRefusesBadFiles).
func TestOpenReplacesIdleOtherVersion(t *testing.T) {
	testutil.CheckFDs(t)
	for _, v := range []uint32{2, Version + 1} {
		dir, path := newFile(t)
		patch(t, path, hVersion, binary.LittleEndian.AppendUint32(nil, v))
		old, err := os.Open(path) // what a process of that version would hold
		if err != nil {
			t.Fatal(err)
		}
		r, err := Open(Options{Dir: dir, Netns: testNetns, Records: 16})
		if err != nil {
			old.Close()
			t.Fatalf("version %d, idle: %v", v, err)
		}
		r.Close()
		var st unix.Stat_t
		unix.Fstat(int(old.Fd()), &st)
		head := make([]byte, HeaderSize)
		old.ReadAt(head, 0)
		old.Close()
		if st.Nlink != 0 || binary.LittleEndian.Uint32(head[hVersion:]) != v {
			t.Fatalf("version %d, idle: the old file has %d links and version %d; want it unlinked, untouched", v, st.Nlink, binary.LittleEndian.Uint32(head[hVersion:]))
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.ReadAt(head, 0)
		f.Close()
		if h, err := DecodeHeader(head); err != nil || h.Version != Version {
			t.Fatalf("version %d, idle: the new file: version %d, %v; want %d", v, h.Version, err, Version)
		}
	}
}

func TestOpenForeignOwner(t *testing.T) {
	testutil.SkipUnlessRoot(t) // chown needs it
	dir, path := newFile(t)
	// Root trusts only root's files; any user trusts its own and root's.
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{Dir: dir, Netns: testNetns})
	mustErr(t, err, ErrPermission)
	if !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Errorf("message: %v", err)
	}
}

func TestOpenCreatesExactly0600(t *testing.T) {
	dir, dir2 := t.TempDir(), t.TempDir()
	old := unix.Umask(0o077 | 0o100) // takes the owner's x bit too
	defer unix.Umask(old)
	r := openTest(t, dir)
	var st unix.Stat_t
	unix.Stat(r.Path(), &st)
	if st.Mode&0o7777 != 0o600 {
		t.Errorf("mode %#o", st.Mode&0o7777)
	}
	unix.Umask(0o377) // takes the owner's w bit: fchmod restores it
	r2, err := Open(Options{Dir: dir2, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	unix.Stat(r2.Path(), &st)
	if st.Mode&0o7777 != 0o600 {
		t.Errorf("mode %#o under umask 0377", st.Mode&0o7777)
	}
}

// TestOpenRace opens a fresh file from many goroutines at once: one creates
// it (O_EXCL), the others open it, and whoever takes the registry lock first
// initializes it exactly once.
func TestOpenRace(t *testing.T) {
	for round := 0; round < 20; round++ {
		dir := t.TempDir()
		var wg sync.WaitGroup
		regs := make([]*Registry, 8)
		errs := make([]error, 8)
		for i := range regs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				regs[i], errs[i] = Open(Options{Dir: dir, Netns: testNetns})
				if errs[i] == nil {
					_, errs[i] = regs[i].Claim(ClaimRequest{Addr: a4, Port: uint16(1000 + i)})
				}
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d opener %d: %v", round, i, err)
			}
		}
		recs, err := regs[0].List()
		if err != nil || len(recs) != 8 {
			t.Fatalf("round %d: %d records %v, want 8: initialized twice?", round, len(recs), err)
		}
		for _, r := range regs {
			r.Close()
		}
	}
}

// TestOpenUninitialized: a file its creator left empty or without its magic
// (it died before finishing) is initialized by the next Open, unless live
// claims hold records in it.
func TestOpenUninitialized(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName(testNetns, uint32(os.Geteuid())))
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := openTest(t, dir)
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 1}); err != nil {
		t.Fatal(err)
	}
	r.Close()

	_, path = newFile(t)
	patch(t, path, 0, make([]byte, 8)) // magic erased
	r2, err := Open(Options{Path: path, Netns: testNetns})
	if err != nil {
		t.Fatalf("magic erased, no claims: %v", err)
	}
	c, err := r2.Claim(ClaimRequest{Addr: a4, Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	patch(t, path, 0, make([]byte, 8)) // erased under a live claim
	_, err = Open(Options{Path: path, Netns: testNetns})
	mustErr(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "locked by live claims") {
		t.Errorf("message: %v", err)
	}
	c.Release()
	r2.Close()
}

// TestCorruptRecord: a corrupt record whose lock is free is reclaimed; one
// whose claim is live makes the conflict check of a claim of its port (the
// index names it) fail with ErrCorrupt (its address is unknown) and List
// report it. A claim of another port does not read it.
func TestCorruptRecord(t *testing.T) {
	dir, path := newFile(t)
	r := openTest(t, dir)
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 1234})
	if err != nil {
		t.Fatal(err)
	}
	slot := c.Record().Slot
	off := int64(HeaderSize + slot*RecordSize)
	patch(t, path, off+rPort, []byte{0x99}) // checksum no longer matches
	c3, err := r.Claim(ClaimRequest{Addr: a4, Port: 1235})
	if err != nil {
		t.Fatalf("a claim of another port: %v", err)
	}
	c3.Release()
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 1234})
	mustErr(t, err, ErrCorrupt)
	if !strings.Contains(err.Error(), "checksum") || !strings.Contains(err.Error(), "live") {
		t.Errorf("message: %v", err)
	}
	recs, err := r.List()
	mustErr(t, err, ErrCorrupt)
	if len(recs) != 0 {
		t.Errorf("List returned the corrupt record: %v", recs)
	}
	// Its holder goes (here: its fd closes without a Release write).
	dropLock(t, r, c)
	c2, err := r.Claim(ClaimRequest{Addr: a4, Port: 1234, Share: Exclusive})
	if err != nil {
		t.Fatalf("after the holder went: %v", err)
	}
	if c2.Record().Slot != slot {
		t.Errorf("reclaimed slot %d, want %d", c2.Record().Slot, slot)
	}
	if recs, err := r.List(); err != nil || len(recs) != 1 {
		t.Fatalf("List: %v %v", recs, err)
	}
}

// dropLock drops c's slot lock as the death of its holder would, without a
// Release.
func dropLock(t *testing.T, r *Registry, c *Claim) {
	t.Helper()
	slot := c.Record().Slot
	off, n := slotRange(slot)
	if err := unix.FcntlFlock(uintptr(r.res.lockFD), unix.F_OFD_SETLK, &unix.Flock_t{Type: unix.F_UNLCK, Start: off, Len: n}); err != nil {
		t.Fatal(err)
	}
	c.cs.released = true
	r.res.claims[slot].Store(nil)
}

// TestTornRecord: a writer that died inside a record (odd sequence) leaves
// it unreadable; with no lock it is reclaimed.
func TestTornRecord(t *testing.T) {
	dir, path := newFile(t)
	r := openTest(t, dir)
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 77})
	if err != nil {
		t.Fatal(err)
	}
	slot := c.Record().Slot
	seq := c.Record().Seq
	patch(t, path, int64(HeaderSize+slot*RecordSize), binary.LittleEndian.AppendUint32(nil, seq+1))
	// A live writer "inside" for longer than the settle timeout: an error
	// for a claim of its port.
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 77})
	mustErr(t, err, ErrCorrupt)
	dropLock(t, r, c) // the writer dies
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 77, Share: Exclusive}); err != nil {
		t.Fatal(err)
	}
}

// TestHighWaterRepair: a damaged high-water word is not trusted: the whole
// table is scanned (so no live claim is missed) and the mark rewritten.
func TestHighWaterRepair(t *testing.T) {
	dir, path := newFile(t)
	r := openTest(t, dir)
	for i := 0; i < 5; i++ { // five live claims, held until r closes
		if _, err := r.Claim(ClaimRequest{Addr: a4, Port: uint16(50 + i), Share: Exclusive}); err != nil {
			t.Fatal(err)
		}
	}
	patch(t, path, hHighWater, []byte{1, 0, 0, 0}) // "only slot 0 is used", check not updated
	_, err := r.Claim(ClaimRequest{Addr: a4, Port: 54})
	mustErr(t, err, unix.EADDRINUSE) // slot 4 was still seen
	if _, err := r.Claim(ClaimRequest{Addr: a4, Port: 60}); err != nil {
		t.Fatal(err)
	}
	if hw, ok := r.res.mem.highWater(); !ok || hw != 6 {
		t.Errorf("high-water %d %v after repair, want 6", hw, ok)
	}
	// And at Open.
	patch(t, path, hHighWater, []byte{0, 0, 0, 0, 0, 0, 0, 0})
	r2 := openTest(t, dir)
	if hw, ok := r2.res.mem.highWater(); !ok || hw != 6 {
		t.Errorf("high-water %d %v after Open, want 6", hw, ok)
	}
}

// TestTruncatedWhileMapped: a process of the same user truncating the file
// under a live Registry gives errors, not a crash (SIGBUS on the mapping).
func TestTruncatedWhileMapped(t *testing.T) {
	dir, path := newFile(t)
	r := openTest(t, dir)
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err = r.Claim(ClaimRequest{Addr: a4, Port: 2})
	mustErr(t, err, ErrCorrupt)
	_, err = r.List()
	mustErr(t, err, ErrCorrupt)
	mustErr(t, c.Release(), ErrCorrupt)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
