package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// poolMax bounds the open file descriptions a Registry keeps for reuse by
// later claims (each live claim has its own; a released one's goes back to
// the pool unlocked, sparing the next claim an open(2)).
const poolMax = 16

// settleTimeout bounds how long a scan waits for a live writer to finish a
// record (a write takes well under a microsecond; only a stopped or long
// descheduled process takes longer). Claims write concurrently with scans,
// so it is generous.
var settleTimeout = time.Second

// Registry is an open registry file: the port registry of one network
// namespace, shared with every other process that opens the same file.
// Its methods are safe for concurrent use.
type Registry struct {
	path   string
	netns  uint64
	count  int
	groups int // index groups
	ixOff  int // offset of the index
	uid    uint32
	pid    uint32
	start  uint64
	dev    uint64
	ino    uint64

	// rw is held shared by every operation that touches the mapping and
	// exclusively by Close, which unmaps it.
	rw     sync.RWMutex
	closed atomic.Bool
	res    *resources
	// cache holds, per slot, the last record this process validated and
	// the word 0 (sequence and checksum) it was validated at; guarded by
	// cacheMu, which a scan takes with TryLock (see readScan).
	cacheMu sync.Mutex
	cache   []cached
	// clock is the base of claimTime.
	clock atomic.Pointer[wallBase]
}

// wallBase is a wall-clock reading with its monotonic one.
type wallBase struct {
	t    time.Time
	wall int64
}

// claimTime returns the wall-clock time for a record's Claimed field, in
// Unix nanoseconds: a reading taken at most a second ago plus the monotonic
// time since (one clock read where time.Now makes two). It is off by at
// most the wall clock's adjustments within that second.
func (r *Registry) claimTime() int64 {
	if b := r.clock.Load(); b != nil {
		if d := time.Since(b.t); d >= 0 && d < time.Second {
			return b.wall + int64(d)
		}
	}
	t := time.Now()
	r.clock.Store(&wallBase{t: t, wall: t.UnixNano()})
	return t.UnixNano()
}

type cached struct {
	w0  uint64
	rec Record
}

// resources are what Close (or, as a safety net, a cleanup after the
// Registry became unreachable) gives back. Nothing here points at the
// Registry.
type resources struct {
	fd  int // the registry's own open file description: registry lock at Open, probes
	mem mem

	// lockFD is the lock description: the open file description through
	// which every claim of the Registry holds its slot lock. One for all
	// the claims keeps the kernel's list of the file's locks short (the
	// locks of adjacent slots merge into one), and every fcntl on the file
	// walks that list. -1 until setup.
	lockFD int

	// kept holds, as slot+1 (0: empty), free slots whose lock the lock
	// description kept at a release, for the next claim.
	kept [poolMax]atomic.Int32

	// pool holds open file descriptions that hold no lock, as fd+1 (0:
	// empty). Lock-free: a claim takes one and a release gives it back;
	// Close (which excludes both, through Registry.rw) empties it.
	pool [poolMax]atomic.Int32

	// claims are the slots the lock description holds or is about to take,
	// with their claims: a claim stores itself (compare-and-swap from nil)
	// before it asks for the slot's lock, a kept slot holds the marker
	// kept, and a release that drops the lock clears it. Close (which
	// excludes claims and releases) releases the claims left.
	claims []atomic.Pointer[claimState]

	waitMu sync.Mutex
	waits  map[*waiter]struct{}

	once sync.Once
}

func (res *resources) free() {
	res.once.Do(func() {
		for i := range res.claims {
			cs := res.claims[i].Swap(nil)
			if cs == nil {
				continue
			}
			cs.mu.Lock()
			cs.released = true
			cs.mu.Unlock()
		}
		if res.lockFD >= 0 {
			unix.Close(res.lockFD) // drops every claim's lock
		}
		res.waitMu.Lock()
		ws := res.waits
		res.waits = nil
		res.waitMu.Unlock()
		for w := range ws {
			w.finish()
		}
		for i := range res.pool {
			if v := res.pool[i].Swap(0); v != 0 {
				unix.Close(int(v - 1))
			}
		}
		if res.mem != nil {
			unix.Munmap(res.mem)
			res.mem = nil
		}
		unix.Close(res.fd)
	})
}

// Open opens the registry file of a network namespace, creating it (mode
// 0600, initialized under the registry lock) if it does not exist.
//
// The file is opened with O_NOFOLLOW and trusted only if it is a regular
// file, owned by this process's effective uid or by root, and not writable
// by group or others. Errors wrap:
//
//   - ErrPermission: a symbolic link, not a regular file, owned by another
//     uid, group- or world-writable, or open(2) refused (EACCES); or, with
//     Options.Dir "", no directory of this user could be trusted or made
//     (DefaultDir);
//   - ErrCorrupt: not an rdmabind registry, a damaged header, a size that
//     does not match the header (truncated), the registry of another
//     network namespace, or an erased header while claims are live;
//   - ErrVersion: a registry of another format version;
//   - ErrInvalid: Options.Records out of range;
//   - the errno of a failing call otherwise (e.g. unix.ENOENT for a
//     missing Dir).
func Open(opts Options) (*Registry, error) {
	netns := opts.Netns
	if netns == 0 {
		var err error
		if netns, err = CurrentNetns(); err != nil {
			return nil, err
		}
	}
	path := opts.Path
	if path == "" {
		dir := opts.Dir
		if dir == "" {
			var err error
			if dir, err = DefaultDir(); err != nil {
				return nil, err
			}
		}
		path = filepath.Join(dir, FileName(netns, uint32(os.Geteuid())))
	}
	n := opts.Records
	if n == 0 {
		n = DefaultRecords
	}
	if n < 1 || n > MaxRecords {
		return nil, fmt.Errorf("registry: open %s: %w: %d records, want 1..%d", path, ErrInvalid, n, MaxRecords)
	}
	start, _ := StartTime(os.Getpid()) // diagnostics only: 0 without /proc
	var r *Registry
	for try := 0; ; try++ {
		fd, st, err := openOrCreate(path)
		if err != nil {
			return nil, err
		}
		r = &Registry{
			path:  path,
			netns: netns,
			uid:   uint32(os.Geteuid()),
			pid:   uint32(os.Getpid()),
			start: start,
			res:   &resources{fd: fd, lockFD: -1, waits: map[*waiter]struct{}{}},
		}
		err = r.setup(n, &st)
		if err == nil {
			break
		}
		r.res.free()
		if errors.Is(err, errReplaced) && try == 0 {
			continue // the idle file of another version is gone: create ours
		}
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	var err error
	if r.res.lockFD, err = r.openFD(); err != nil {
		r.res.free()
		return nil, err
	}
	runtime.AddCleanup(r, func(res *resources) { res.free() }, r.res)
	return r, nil
}

// openOrCreate opens the registry file at path, or creates it (0600,
// exactly), through ofdlock.Open, which trusts only a regular file of this
// user (or root) that group and others cannot write.
func openOrCreate(path string) (int, unix.Stat_t, error) {
	for try := 0; ; try++ {
		fd, st, err := ofdlock.Open(path, unix.O_RDWR, 0)
		if err == nil {
			return fd, st, nil
		}
		if err != unix.ENOENT || try == 8 {
			return -1, st, openError(path, err)
		}
		fd, st, err = ofdlock.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err == nil {
			// umask may have taken bits: the file is 0600, exactly.
			if err := unix.Fchmod(fd, 0o600); err != nil {
				unix.Close(fd)
				return -1, st, fmt.Errorf("registry: create %s: fchmod: %w", path, err)
			}
			return fd, st, nil
		}
		if err != unix.EEXIST {
			return -1, st, openError(path, err)
		}
		// Somebody created it between our two opens: open theirs.
	}
}

// openError wraps a failed ofdlock.Open of the registry file at path.
func openError(path string, err error) error {
	switch {
	case errors.Is(err, ofdlock.ErrUntrusted):
		return fmt.Errorf("registry: open %s: %w: %w", path, ErrPermission, err)
	case err == unix.ELOOP:
		return fmt.Errorf("registry: open %s: %w: it is a symbolic link: %w", path, ErrPermission, err)
	case err == unix.EACCES, err == unix.EPERM:
		return fmt.Errorf("registry: open %s: %w: the file belongs to another user (it is created 0600; the default Options.Dir is a directory of each user's own): %w", path, ErrPermission, err)
	case err == unix.EISDIR, err == unix.ENXIO, err == unix.ENODEV:
		return fmt.Errorf("registry: open %s: %w: not a regular file: %w", path, ErrPermission, err)
	}
	return fmt.Errorf("registry: open %s: %w", path, err)
}

// setup initializes the file if needed, checks it, and maps it, under the
// registry lock. st is the file's stat from its (trusted) open.
func (r *Registry) setup(n int, st *unix.Stat_t) error {
	fd := r.res.fd
	r.dev, r.ino = st.Dev, st.Ino
	if err := ofdlock.Wait(context.Background(), fd, ofdlock.Write, 0, HeaderSize); err != nil {
		return fmt.Errorf("registry lock: wait: %w", err)
	}
	defer ofdlock.Unlock(fd, 0, HeaderSize)
	if err := unix.Fstat(fd, st); err != nil { // the size, now stable
		return err
	}
	var head [HeaderSize]byte
	if st.Size > 0 {
		if _, err := unix.Pread(fd, head[:min(st.Size, HeaderSize)], 0); err != nil {
			return err
		}
	}
	if st.Size == 0 || allZero(head[:8]) {
		// Never initialized, or its creator died before writing the magic.
		if err := r.initialize(n, st.Size); err != nil {
			return err
		}
	} else {
		if st.Size < HeaderSize {
			return fmt.Errorf("%w: size %d, shorter than the header: truncated", ErrCorrupt, st.Size)
		}
		h, err := DecodeHeader(head[:])
		if errors.Is(err, ErrCorrupt) {
			// A damaged high-water word alone is repaired below.
			if h2, err2 := headerWithHighWaterReset(head); err2 == nil {
				h, err = h2, nil
			}
		}
		if errors.Is(err, ErrVersion) {
			return r.replaceIdle(err)
		}
		if err != nil {
			return err
		}
		if st.Size != h.FileSize() {
			return fmt.Errorf("%w: size %d, a registry of %d records has %d: truncated or extended", ErrCorrupt, st.Size, h.Records, h.FileSize())
		}
		m, err := unix.Mmap(fd, 0, int(h.FileSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			return fmt.Errorf("mmap: %w", err)
		}
		r.res.mem = m
		r.count = int(h.Records)
		r.groups, r.ixOff = int(h.Groups), indexOff(r.count)
		if h.Netns != r.netns {
			return fmt.Errorf("%w: the file is the registry of network namespace %d, not %d", ErrCorrupt, h.Netns, r.netns)
		}
	}
	r.res.claims = make([]atomic.Pointer[claimState], r.count)
	if hw, ok := r.res.mem.highWater(); !ok || int(hw) > r.count {
		r.repairHighWater()
	}
	return nil
}

// errReplaced: setup removed the file, the idle registry of another
// format version; Open creates a new one.
var errReplaced = errors.New("registry of another version replaced")

// replaceIdle removes the registry file of another format version (verr
// says which) when none of its claims is live: nobody holds a lock on its
// records (the caller holds the header's). It unlinks the file rather
// than rewriting it, so that a process of the other version that still
// has it mapped goes on undisturbed on its own copy. With live claims it
// returns verr: the processes of the other version must go first.
func (r *Registry) replaceIdle(verr error) error {
	held, err := ofdlock.Held(r.res.fd, ofdlock.Write, HeaderSize, 0)
	if err != nil {
		return err
	}
	if held {
		return fmt.Errorf("%w; its claims are live: stop the processes of that rdmabind first", verr)
	}
	var st unix.Stat_t
	if err := unix.Lstat(r.path, &st); err != nil || st.Dev != r.dev || st.Ino != r.ino {
		return verr // replaced under us: let the caller report it
	}
	if err := unix.Unlink(r.path); err != nil {
		return fmt.Errorf("%w; removing it: %w", verr, err)
	}
	return errReplaced
}

// headerWithHighWaterReset decodes a header as if its high-water word were
// valid: a damaged mark alone is no reason to refuse the file (setup
// recomputes it from the records).
func headerWithHighWaterReset(head [HeaderSize]byte) (Header, error) {
	var w Header
	copy(head[hHighWater:hMutableEnd], w.Encode()[hHighWater:hMutableEnd])
	return DecodeHeader(head[:])
}

// initialize writes a fresh registry of n records over a file of size
// bytes. The caller holds the registry lock.
func (r *Registry) initialize(n int, size int64) error {
	fd := r.res.fd
	if size > 0 {
		// A header without its magic: refuse if anybody holds a lock beyond
		// it (live claims of a registry whose header was erased).
		held, err := ofdlock.Held(fd, ofdlock.Write, HeaderSize, 0)
		if err != nil {
			return err
		}
		if held {
			return fmt.Errorf("%w: the header has no magic but records are locked by live claims", ErrCorrupt)
		}
		if err := unix.Ftruncate(fd, 0); err != nil {
			return fmt.Errorf("ftruncate: %w", err)
		}
	}
	h := Header{
		Version:    Version,
		HeaderSize: HeaderSize,
		RecordSize: RecordSize,
		Records:    uint32(n),
		Groups:     IndexGroups(n),
		Netns:      r.netns,
		CreatorUID: r.uid,
		Created:    time.Now().UnixNano(),
	}
	if err := unix.Ftruncate(fd, h.FileSize()); err != nil {
		return fmt.Errorf("ftruncate: %w", err)
	}
	m, err := unix.Mmap(fd, 0, int(h.FileSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	r.res.mem = m
	r.count = n
	r.groups, r.ixOff = int(h.Groups), indexOff(n)
	// The records and the index are zeros, which are free records and
	// empty groups: the file stays sparse until claims write it.
	r.res.mem.writeHeader(h.Encode()) // the magic last
	return nil
}

// repairHighWater recomputes a damaged high-water mark from every record
// (see lowerHighWater).
func (r *Registry) repairHighWater() {
	hw := 0
	var b [RecordSize]byte
	for i := 0; i < r.count; i++ {
		ok := r.res.mem.snapshot(i, &b)
		if !ok {
			hw = i + 1
			continue
		}
		if rec, err := DecodeRecord(b[:]); err != nil || rec.State != StateFree {
			hw = i + 1
		}
	}
	r.lowerHighWater(hw)
}

// lowerHighWater lowers the high-water mark to target, or as close above it
// as the records allow, or repairs a damaged mark. Claims raise the mark
// with a compare-and-swap, before they publish, and never lower it; this
// lowers it safely without a registry-wide lock: it takes the write locks
// of every slot it gives up, as one byte range through an open file
// description of its own, so that no claim can take one of them meanwhile;
// checks that they are free; and swaps the mark only if nobody changed it
// in between. Best effort: when a slot of the range is locked (a claim, a
// waiter) it does nothing.
func (r *Registry) lowerHighWater(target int) {
	m := r.res.mem
	w := m.highWaterWord()
	hw, ok := splitHighWater(w)
	top := int(hw)
	if !ok || top > r.count {
		top, ok = r.count, false
	}
	target = max(target, 0)
	if target >= top {
		if !ok {
			m.casHighWater(w, uint32(top))
		}
		return
	}
	fd, err := r.takeFD()
	if err != nil {
		return
	}
	off, _ := slotRange(target)
	n := int64(top-target) * RecordSize
	if err := ofdlock.Set(fd, ofdlock.Write, off, n); err != nil {
		r.putFD(fd)
		return
	}
	defer func() {
		if v := recover(); v != nil {
			unix.Close(fd) // drops the range
			panic(v)
		}
	}()
	newHW := target
	var b [RecordSize]byte
	for i := top - 1; i >= target; i-- {
		m.copyOwn(i, &b) // we hold its lock: nobody writes it
		if rec, err := DecodeRecord(b[:]); err != nil || rec.State != StateFree {
			newHW = i + 1
			break
		}
	}
	if newHW < top || !ok {
		m.casHighWater(w, uint32(newHW))
	}
	if err := ofdlock.Unlock(fd, off, n); err != nil {
		unix.Close(fd)
		return
	}
	r.putFD(fd)
}

// Path returns the registry file's path.
func (r *Registry) Path() string { return r.path }

// Netns returns the inode of the network namespace the registry is for.
func (r *Registry) Netns() uint64 { return r.netns }

// Records returns the file's record count.
func (r *Registry) Records() int { return r.count }

// Close releases every live claim made through r (as Release does), cancels
// r's pending Waits (they return ErrClosed), and closes r's file
// descriptors and mapping. It is safe to call twice; the second call does
// nothing and returns nil.
func (r *Registry) Close() error {
	r.rw.Lock()
	defer r.rw.Unlock()
	if r.closed.Swap(true) {
		return nil
	}
	res := r.res
	for i := range res.claims {
		cs := res.claims[i].Swap(nil)
		if cs == nil {
			continue
		}
		if cs == kept {
			continue
		}
		cs.mu.Lock()
		if !cs.released {
			r.releaseLocked(cs, false)
		}
		cs.mu.Unlock()
	}
	res.free()
	return nil
}

func (r *Registry) closedErr(op string) error {
	return fmt.Errorf("registry: %s %s: %w", op, r.path, ErrClosed)
}

// faultGuard turns a fault on the mapping (the file truncated under it by
// a process of the same user) into an error instead of a crash. Use as
//
//	defer faultGuard(debug.SetPanicOnFault(true), &err)
func faultGuard(old bool, errp *error) {
	debug.SetPanicOnFault(old)
	if v := recover(); v != nil {
		if f, ok := v.(interface{ Addr() uintptr }); ok {
			*errp = fmt.Errorf("%w: memory fault at %#x reading the mapped registry (was the file truncated?): %v", ErrCorrupt, f.Addr(), v)
			return
		}
		panic(v)
	}
}

// OpenFile opens the registry's file again: a new open file description
// (for locks of its own, such as package election's), opened as Open opens
// it (O_NOFOLLOW, a regular file of this user or root that others cannot
// write) and refused unless it is still the file Open opened (device and
// inode). The caller closes the fd.
//
// Errors wrap ErrPermission (not trusted, or replaced since Open), or the
// errno of open(2).
func (r *Registry) OpenFile() (int, error) { return r.openFD() }

// openFD opens a new open file description of the registry file (trusted,
// as Open's) and checks it is the file r opened.
func (r *Registry) openFD() (int, error) {
	fd, st, err := ofdlock.Open(r.path, unix.O_RDWR, 0)
	if err != nil {
		return -1, openError(r.path, err)
	}
	if st.Dev != r.dev || st.Ino != r.ino {
		unix.Close(fd)
		return -1, fmt.Errorf("registry: %s: %w: the file was replaced since Open", r.path, ErrPermission)
	}
	return fd, nil
}

// takeFD returns an open file description for a claim: a pooled one, or a
// new one.
func (r *Registry) takeFD() (int, error) {
	for i := range r.res.pool {
		p := &r.res.pool[i]
		if v := p.Load(); v != 0 && p.CompareAndSwap(v, 0) {
			return int(v - 1), nil
		}
	}
	return r.openFD()
}

// putFD gives back an fd that holds no lock.
func (r *Registry) putFD(fd int) {
	if !r.closed.Load() {
		for i := range r.res.pool {
			p := &r.res.pool[i]
			if p.Load() == 0 && p.CompareAndSwap(0, int32(fd+1)) {
				return
			}
		}
	}
	unix.Close(fd)
}

// scanLimit returns how many slots hold every used record: the high-water
// mark, or the whole table when the mark is damaged (the next claim
// repairs it).
func (r *Registry) scanLimit() int {
	hw, ok := r.res.mem.highWater()
	if !ok || int(hw) > r.count {
		return r.count
	}
	return int(hw)
}

// read returns a slot's record, or an error wrapping ErrCorrupt when it is
// torn (a writer inside it, or one that died there) or fails its checks.
func (r *Registry) read(slot int) (Record, bool, error) {
	return r.readInto(slot, new([RecordSize]byte))
}

// readInto is read through the buffer b.
func (r *Registry) readInto(slot int, b *[RecordSize]byte) (Record, bool, error) {
	if !r.res.mem.snapshot(slot, b) {
		return Record{Slot: slot}, true, fmt.Errorf("slot %d: %w: a write is in progress, or its writer died in it", slot, ErrCorrupt)
	}
	rec, err := DecodeRecord(b[:])
	rec.Slot = slot
	if err != nil {
		return rec, false, fmt.Errorf("slot %d: %w", slot, err)
	}
	return rec, false, nil
}

// cacheUse is a scan's use of the decoded-record cache: not tried yet,
// held (the scan holds r.cacheMu), or busy (another goroutine of this
// process holds it; the scan decodes for itself).
type cacheUse int8

const (
	cacheUntried cacheUse = iota
	cacheHeld
	cacheBusy
)

// done releases the cache if the scan holds it.
func (c *cacheUse) done(r *Registry) {
	if *c == cacheHeld {
		r.cacheMu.Unlock()
	}
	*c = cacheUntried
}

// readScan is readInto for scans. It copies the record and checks its
// checksum, as read does. A free record needs nothing else. For a used
// one it takes the cache if it can (TryLock, kept until cu.done): when the
// copy's word 0 (sequence and checksum) is the one this process last
// decoded the record at, the record is that one, and decoding is skipped.
// Every write through the protocol changes the sequence; a byte changed
// outside it fails the checksum. So every scan still verifies every record
// it looks at.
func (r *Registry) readScan(slot int, b *[RecordSize]byte, cu *cacheUse) (Record, bool, error) {
	if !r.res.mem.snapshot(slot, b) {
		return Record{Slot: slot}, true, fmt.Errorf("slot %d: %w: a write is in progress, or its writer died in it", slot, ErrCorrupt)
	}
	w0 := binary.LittleEndian.Uint64(b[:8])
	crcOK := recordSum(b[:]) == uint32(w0>>32)
	if crcOK && b[rState] == byte(StateFree) && b[rFlags]&flagPending == 0 && allZero(b[rTicket:rTicket+8]) {
		// A free slot (a process that churns claims rewrites one all the
		// time): a scan needs its sequence only.
		return Record{Slot: slot, Seq: uint32(w0), Generation: binary.LittleEndian.Uint64(b[rGen:])}, false, nil
	}
	if *cu == cacheUntried {
		*cu = cacheBusy
		if r.cacheMu.TryLock() {
			*cu = cacheHeld
		}
	}
	cache := *cu == cacheHeld
	if cache && crcOK && slot < len(r.cache) && r.cache[slot].w0 == w0 {
		return r.cache[slot].rec, false, nil
	}
	rec, err := DecodeRecord(b[:])
	rec.Slot = slot
	if err != nil {
		return rec, false, fmt.Errorf("slot %d: %w", slot, err)
	}
	if !cache {
		return rec, false, nil
	}
	if slot >= len(r.cache) {
		r.cache = append(r.cache, make([]cached, min(r.count, max(2*slot+1, 64))-len(r.cache))...)
	}
	r.cache[slot] = cached{w0: w0, rec: rec}
	return rec, false, nil
}

// storeImage writes the record image b, which the caller (the slot's lock
// holder) made from the slot's current image with crcPatch, and returns the
// new sequence.
func (r *Registry) storeImage(slot int, b *[RecordSize]byte) uint32 {
	return r.res.mem.write(slot, b)
}

// freeImage turns the image of a used record into the image of the slot
// freed: state free, no ticket, not pending. The other fields stay as they
// were (they mean nothing in a free record), so that freeing a slot, and
// the next claim of it, store few words.
func freeImage(b *[RecordSize]byte) {
	crcPatch(b, rState, byte(StateFree))
	crcPatch(b, rFlags, b[rFlags]&^flagPending)
	crcPatch64(b, rTicket, 0)
}

// held reports whether a slot's claim is live: whether some open file
// description holds a write lock on its range.
func (r *Registry) held(slot int) (bool, error) {
	off, n := slotRange(slot)
	held, err := ofdlock.Held(r.res.fd, ofdlock.Read, off, n)
	if err != nil {
		return false, fmt.Errorf("registry: %s: slot %d: F_OFD_GETLK: %w", r.path, slot, err)
	}
	return held, nil
}

// reclaim rewrites as free a slot whose claim is over, if it still holds
// what the caller saw: want is the stale record, or nil for an unreadable
// one. It first takes the slot's write lock (through a pooled open file
// description), so that it is the record's only writer, and begins the
// write at once; it drops the lock when done. When the lock is taken (a
// live claim, a waiter) it does nothing.
func (r *Registry) reclaim(slot int, want *Record) error {
	fd, err := r.takeFD()
	if err != nil {
		return err
	}
	off, n := slotRange(slot)
	if err := ofdlock.Set(fd, ofdlock.Write, off, n); err != nil {
		r.putFD(fd)
		if isBusy(err) {
			return nil
		}
		return fmt.Errorf("registry: %s: slot %d: F_OFD_SETLK: %w", r.path, slot, err)
	}
	defer func() {
		if v := recover(); v != nil {
			unix.Close(fd) // drops the lock
			panic(v)
		}
	}()
	m := r.res.mem
	s, _ := m.begin(slot)
	b := new([RecordSize]byte)
	m.copyOwn(slot, b)
	cur, derr := DecodeRecord(b[:])
	gen := m.load64(recOff(slot) + rGen)
	switch {
	case derr != nil && want == nil: // still unreadable: free, in a new generation
		gen++
	case derr == nil && want != nil && sameClaim(cur, *want): // still the stale claim
	default: // changed meanwhile: leave it as it is
		m.finish(slot, b, s)
		r.unlockPut(fd, slot)
		return nil
	}
	free := Record{Slot: slot, Generation: gen}
	*b = [RecordSize]byte{}
	free.encodeTo(b)
	m.finish(slot, b, s)
	r.unlockPut(fd, slot)
	return nil
}

// unlockPut drops fd's lock on slot and gives fd back to the pool (or
// closes it, if the unlock failed).
func (r *Registry) unlockPut(fd, slot int) {
	off, n := slotRange(slot)
	if err := ofdlock.Unlock(fd, off, n); err != nil {
		unix.Close(fd)
		return
	}
	r.putFD(fd)
}

// settle resolves an unreadable record (firstErr is why) without writing
// it. stale: its lock is free, so its claim is over (its writer died inside
// it, or it was damaged); the caller may reclaim it. Otherwise it rereads
// the record while a live writer is inside, and fails with an error
// wrapping ErrCorrupt (the last reread's, which supersedes firstErr) when
// the record stays unreadable while its claim is live.
func (r *Registry) settle(slot int, firstErr error) (rec Record, stale bool, err error) {
	deadline := time.Now().Add(settleTimeout)
	for {
		held, herr := r.held(slot)
		if herr != nil {
			return Record{}, false, herr
		}
		if !held {
			return Record{Slot: slot}, true, nil
		}
		rec, torn, rerr := r.read(slot)
		if rerr == nil {
			return rec, false, nil
		}
		err = rerr
		if !torn || time.Now().After(deadline) {
			return Record{}, false, fmt.Errorf("registry: %s: %w (its claim is live: the record is reclaimed when its holder exits)", r.path, err)
		}
		time.Sleep(20 * time.Microsecond)
	}
}
