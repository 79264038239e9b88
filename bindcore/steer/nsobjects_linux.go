package steer

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// nsObjects is one process's handle on the per-netns objects: the program
// and the three maps every group of the network namespace shares, pinned in
// <root>/<netns>/steer2/. Open Groups of the netns share it (nsCache), and
// it stays open when the last one closes, so that the next Open of the
// netns does not load the objects from their pins again (four object gets
// by path: 140 µs on the host, 2 ms in the TCG guest). A process keeps at
// most maxIdle such idle handles; CloseIdle closes them.
type nsObjects struct {
	ck        nsCacheKey
	refs      int       // under nsCache.mu
	idleSince time.Time // under nsCache.mu, when refs is 0

	dir   string // <root>/<netns>/steer2
	dirfd int    // flocked LOCK_EX around group creation and removal
	mu    sync.Mutex

	prog   *ebpf.Program
	socks  *ebpf.Map
	groups *ebpf.Map
	state  *ebpf.Map
	mem    []byte // state, memory-mapped

}

type nsCacheKey struct {
	root string
	ns   uint64
}

var nsCache struct {
	mu sync.Mutex
	m  map[nsCacheKey]*nsObjects
}

// acquireNS returns the process's handle on the per-netns objects of ns
// under root, loading them from their pins, or creating and pinning them
// when no process has (mounting bpffs at /sys/fs/bpf first if mount is set
// and it is not there). Release it with releaseNS.
func acquireNS(root string, ns uint64, mount bool) (*nsObjects, error) {
	ck := nsCacheKey{root, ns}
	nsCache.mu.Lock()
	defer nsCache.mu.Unlock()
	if o := nsCache.m[ck]; o != nil {
		// This package never removes the directory; should it be removed
		// by hand, making a group in it fails (ENOENT) and Open calls
		// forgetNS.
		o.refs++
		return o, nil
	}
	if mount {
		if err := ensureBPFFS(bpffsMount); err != nil {
			return nil, err
		}
	}
	nsdir := filepath.Join(root, strconv.FormatUint(ns, 10))
	dir := filepath.Join(nsdir, nsDirName)
	for range maxAttempts {
		o, err := loadNS(dir)
		if errors.Is(err, fs.ErrNotExist) {
			o, err = createNS(root, nsdir, dir)
		}
		switch {
		case err == nil:
			o.ck, o.refs = ck, 1
			if nsCache.m == nil {
				nsCache.m = map[nsCacheKey]*nsObjects{}
			}
			nsCache.m[ck] = o
			return o, nil
		case errors.Is(err, errRetry):
			continue
		case errors.Is(err, errDamaged):
			if err := removeDamagedNS(dir); err != nil {
				return nil, err
			}
			continue
		default:
			return nil, err
		}
	}
	return nil, fmt.Errorf("%s: still being created and removed after %d attempts: %w", dir, maxAttempts, unix.EAGAIN)
}

// forgetNS drops o from the cache, so that the next acquireNS loads the
// netns objects afresh; the last releaseNS of o closes it.
func forgetNS(o *nsObjects) {
	nsCache.mu.Lock()
	defer nsCache.mu.Unlock()
	if nsCache.m[o.ck] == o {
		delete(nsCache.m, o.ck)
	}
}

// maxIdle is how many handles on netns objects no open Group uses a
// process keeps; beyond it, the one idle longest is closed.
const maxIdle = 8

// releaseNS drops a reference taken by acquireNS. An unreferenced handle
// stays in the cache, idle, unless forgetNS dropped it from there.
func releaseNS(o *nsObjects) error {
	nsCache.mu.Lock()
	defer nsCache.mu.Unlock()
	o.refs--
	if o.refs > 0 {
		return nil
	}
	if nsCache.m[o.ck] != o {
		return o.close()
	}
	o.idleSince = time.Now()
	var idle []*nsObjects
	for _, c := range nsCache.m {
		if c.refs == 0 {
			idle = append(idle, c)
		}
	}
	if len(idle) <= maxIdle {
		return nil
	}
	oldest := idle[0]
	for _, c := range idle[1:] {
		if c.idleSince.Before(oldest.idleSince) {
			oldest = c
		}
	}
	delete(nsCache.m, oldest.ck)
	return oldest.close()
}

// CloseIdle closes the process's handles on network namespaces' steering
// programs and maps that no open Group uses. Open keeps such a handle (the
// program's and three maps' descriptors, the netns directory's, and a
// 128 KiB mapping of the state map) after the last Group of the namespace
// closes, at most 8 of them, so that the next Open there does not load
// them from their pins again; a long-lived process that is done steering,
// or a test counting descriptors, can close them. The pins stay. Safe to
// call at any time.
//
// Errors: those of closing the descriptors and unmapping, joined.
func CloseIdle() error {
	nsCache.mu.Lock()
	defer nsCache.mu.Unlock()
	var errs []error
	for ck, o := range nsCache.m {
		if o.refs == 0 {
			delete(nsCache.m, ck)
			errs = append(errs, o.close())
		}
	}
	return errors.Join(errs...)
}

func (o *nsObjects) close() error {
	var errs []error
	if o.mem != nil {
		errs = append(errs, unix.Munmap(o.mem))
		o.mem = nil
	}
	for _, c := range []interface{ Close() error }{o.prog, o.socks, o.groups, o.state} {
		if c != nil && !isNilCloser(c) {
			errs = append(errs, c.Close())
		}
	}
	if o.dirfd >= 0 {
		errs = append(errs, unix.Close(o.dirfd))
		o.dirfd = -1
	}
	return errors.Join(errs...)
}

func isNilCloser(c interface{ Close() error }) bool {
	switch c := c.(type) {
	case *ebpf.Program:
		return c == nil
	case *ebpf.Map:
		return c == nil
	}
	return false
}

// loadNS opens the pinned per-netns objects at dir and checks their types
// and shapes. The directory is made whole (createNS renames it into place),
// so its program uses its maps. It returns an error matching fs.ErrNotExist
// when there is no such directory, errDamaged when it is not a whole set of
// this layout.
func loadNS(dir string) (*nsObjects, error) {
	fd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	o := &nsObjects{dir: dir, dirfd: fd}
	load := func(name string, f func(string) error) error {
		p := filepath.Join(dir, name)
		err := f(p)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("%s: %s missing: %w", dir, name, errDamaged)
		case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
			return with(ErrNotPermitted, err, "open pin %s", p)
		}
		return fmt.Errorf("open pin %s: %w", p, err)
	}
	loadMap := func(name string, m **ebpf.Map, spec *ebpf.MapSpec) error {
		if err := load(name, func(p string) (err error) { *m, err = ebpf.LoadPinnedMap(p, nil); return }); err != nil {
			return err
		}
		if c := *m; c.Type() != spec.Type || c.KeySize() != spec.KeySize || c.ValueSize() != spec.ValueSize ||
			c.MaxEntries() != spec.MaxEntries || c.Flags()&spec.Flags != spec.Flags {
			return fmt.Errorf("%s: map %s is %v key %d value %d entries %d flags %#x, want %v %d %d %d %#x: %w", dir, name,
				c.Type(), c.KeySize(), c.ValueSize(), c.MaxEntries(), c.Flags(),
				spec.Type, spec.KeySize, spec.ValueSize, spec.MaxEntries, spec.Flags, errDamaged)
		}
		return nil
	}
	err = loadMap(pinSocks, &o.socks, socksSpec())
	if err == nil {
		err = loadMap(pinGroups, &o.groups, groupsSpec())
	}
	if err == nil {
		err = loadMap(pinState, &o.state, stateSpec())
	}
	if err == nil {
		err = load(pinProg, func(p string) (err error) { o.prog, err = ebpf.LoadPinnedProgram(p, nil); return })
	}
	if err == nil && o.prog.Type() != ebpf.SkReuseport {
		err = fmt.Errorf("%s: program is %v: %w", dir, o.prog.Type(), errDamaged)
	}
	if err == nil {
		err = o.mmap()
	}
	if err != nil {
		o.close()
		return nil, err
	}
	return o, nil
}

// stateStride is the distance between the state map's elements in its
// memory (the kernel's round_up(value_size, 8)).
const stateStride = 8

func (o *nsObjects) mmap() error {
	mem, err := unix.Mmap(o.state.FD(), 0, stateStride*MaxGroups, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s/%s: %w", o.dir, pinState, err)
	}
	o.mem = mem
	return nil
}

// createNS creates the maps, loads the program (through the verifier),
// pins them in a temporary directory next to dir and renames it into
// place, so that dir never holds a partial set. It returns errRetry when
// another process created dir first.
func createNS(root, nsdir, dir string) (*nsObjects, error) {
	if err := mkdirs(root, nsdir); err != nil {
		return nil, err
	}
	cleanStale(nsdir)
	tmp := filepath.Join(nsdir, fmt.Sprintf("tmp-%s-%d-%d%06d", nsDirName, os.Getpid(), time.Now().UnixNano(), tmpSeq.Add(1)%1000000))
	if err := unix.Mkdir(tmp, 0o700); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errRetry
		}
		return nil, fsError("mkdir", tmp, err)
	}
	fd, err := openDir(tmp)
	if err != nil {
		unix.Rmdir(tmp)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errRetry
		}
		return nil, err
	}
	o := &nsObjects{dir: dir, dirfd: fd}
	fail := func(err error) (*nsObjects, error) {
		os.RemoveAll(tmp)
		o.close()
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errRetry // tmp removed under us (taken for stale)
		}
		return nil, err
	}
	// Held until the rename: cleanStale leaves a locked directory alone.
	if err := flock(fd, unix.LOCK_SH); err != nil {
		return fail(fmt.Errorf("flock %s: %w", tmp, err))
	}
	if o.socks, err = ebpf.NewMap(socksSpec()); err != nil {
		return fail(bpfError("create REUSEPORT_SOCKARRAY", err))
	}
	if o.groups, err = ebpf.NewMap(groupsSpec()); err != nil {
		return fail(bpfError("create hash", err))
	}
	if o.state, err = ebpf.NewMap(stateSpec()); err != nil {
		return fail(bpfError("create array", err))
	}
	if o.prog, err = ebpf.NewProgram(progSpec(o.socks.FD(), o.groups.FD(), o.state.FD())); err != nil {
		return fail(bpfError("load SK_REUSEPORT program", err))
	}
	for name, pin := range map[string]interface{ Pin(string) error }{pinProg: o.prog, pinSocks: o.socks, pinGroups: o.groups, pinState: o.state} {
		if err := pin.Pin(filepath.Join(tmp, name)); err != nil {
			return fail(pinError(tmp, name, err))
		}
	}
	if err := o.mmap(); err != nil {
		return fail(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fail(errRetry) // another process created dir first
		}
		return fail(fsError("rename", tmp, err))
	}
	unix.Flock(fd, unix.LOCK_UN)
	return o, nil
}

// removeDamagedNS removes a per-netns directory that is not a whole set of
// this layout (a hand-made one, or one damaged by hand), unless a group in
// it is held open: then it is ErrIncompatible.
func removeDamagedNS(dir string) error {
	fd, err := openDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	if err := flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("flock %s: %w", dir, err)
	}
	if o, err := loadNS(dir); err == nil {
		o.close() // repaired meanwhile
		return nil
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		gfd, err := openDir(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		free := unix.Flock(gfd, unix.LOCK_EX|unix.LOCK_NB) == nil
		unix.Close(gfd)
		if !free {
			return fmt.Errorf("%s: %w (group %s in use by another process)", dir, ErrIncompatible, e.Name())
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove damaged %s: %w", dir, err)
	}
	return nil
}

// lock takes the netns lock (group creation and removal, index allocation),
// shared by every process of the netns; unlock releases it.
func (o *nsObjects) lock() error {
	o.mu.Lock()
	if err := flock(o.dirfd, unix.LOCK_EX); err != nil {
		o.mu.Unlock()
		return fmt.Errorf("flock %s: %w", o.dir, err)
	}
	return nil
}

func (o *nsObjects) unlock() {
	unix.Flock(o.dirfd, unix.LOCK_UN)
	o.mu.Unlock()
}

// openGroupDir opens the group directory name.
func (o *nsObjects) openGroupDir(name string) (int, error) {
	fd, err := unix.Openat(o.dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fsError("open", filepath.Join(o.dir, name), err)
	}
	return fd, nil
}

// sameDir reports whether the open directory fd is still the one named
// name.
func (o *nsObjects) sameDir(fd int, name string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Fstatat(o.dirfd, name, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// removeGroupDir removes the group directory name (with anything in it:
// a directory made by hand may hold some).
func (o *nsObjects) removeGroupDir(name string) error {
	err := unix.Unlinkat(o.dirfd, name, unix.AT_REMOVEDIR)
	switch {
	case err == nil || errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOTEMPTY):
		return os.RemoveAll(filepath.Join(o.dir, name))
	}
	return fsError("remove", filepath.Join(o.dir, name), err)
}

// lookupIndex returns the index of pk, and whether there is one.
func (o *nsObjects) lookupIndex(pk progKey) (uint32, bool, error) {
	var idx uint32
	err := o.groups.Lookup(pk, &idx)
	switch {
	case err == nil:
		if idx >= MaxGroups {
			return 0, false, fmt.Errorf("%s/%s: index %d out of range: %w", o.dir, pinGroups, idx, errDamaged)
		}
		return idx, true, nil
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("lookup group index: %w", err)
}

// alloc finds a free index for pk, marks it allocated and maps pk to it.
// When pk is mapped already it returns that index, and stale: the caller
// decides whether it is a live group's or one left by a process that died.
// The caller holds the netns lock.
func (o *nsObjects) alloc(pk progKey) (idx uint32, stale bool, err error) {
	h := fnv.New32a()
	h.Write(pk[:])
	start := h.Sum32() % MaxGroups
	idx, ok := o.probe(start)
	if !ok {
		if err := o.collect(); err != nil {
			return 0, false, err
		}
		if idx, ok = o.probe(start); !ok {
			return 0, false, fmt.Errorf("all %d group indexes of the netns in use: %w", MaxGroups, unix.ENOSPC)
		}
	}
	o.word(idx).Store(stInUse)
	err = o.groups.Update(pk, idx, ebpf.UpdateNoExist)
	if err == nil {
		return idx, false, nil
	}
	o.word(idx).Store(0)
	if errors.Is(err, ebpf.ErrKeyExist) {
		old, ok, err := o.lookupIndex(pk)
		if err != nil || !ok {
			return 0, false, errors.Join(err, errRetry)
		}
		return old, true, nil
	}
	return 0, false, fmt.Errorf("insert group index: %w", err)
}

func (o *nsObjects) probe(start uint32) (uint32, bool) {
	for i := range uint32(MaxGroups) {
		idx := (start + i) % MaxGroups
		if o.word(idx).Load()&stInUse == 0 {
			return idx, true
		}
	}
	return 0, false
}

// collect frees the indexes no key maps to: left by a process that died
// while creating or removing a group. The caller holds the netns lock.
func (o *nsObjects) collect() error {
	var used [MaxGroups]bool
	var pk progKey
	var idx uint32
	it := o.groups.Iterate()
	for it.Next(&pk, &idx) {
		if idx < MaxGroups {
			used[idx] = true
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("iterate group indexes: %w", err)
	}
	for i := range uint32(MaxGroups) {
		if !used[i] && o.word(i).Load()&stInUse != 0 {
			o.clearSlots(i)
			o.word(i).Store(0)
		}
	}
	return nil
}

// clearSlots empties both slots of index idx.
func (o *nsObjects) clearSlots(idx uint32) error {
	var errs []error
	for s := range uint32(numSlots) {
		if err := o.socks.Delete(numSlots*idx + s); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("clear slot %d: %w", numSlots*idx+s, err))
		}
	}
	return errors.Join(errs...)
}

// free unmaps pk and frees its index idx. The caller holds the netns lock.
func (o *nsObjects) free(pk progKey, idx uint32) error {
	err := o.groups.Delete(pk)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete group index: %w", err)
	}
	err = o.clearSlots(idx)
	o.word(idx).Store(0)
	return err
}

// slotCookie returns the cookie of the socket in slot (0 when empty).
func (o *nsObjects) slotCookie(slot uint32) (uint64, error) {
	var c uint64
	err := o.socks.Lookup(slot, &c)
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, fmt.Errorf("lookup slot %d: %w", slot, err)
	}
	return c, nil
}
