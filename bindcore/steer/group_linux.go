package steer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultRoot is where Open pins groups unless Options.Root says otherwise.
const DefaultRoot = "/sys/fs/bpf/rdmabind"

// bpffsMount is mounted as bpffs when DefaultRoot is used and it is not one.
const bpffsMount = "/sys/fs/bpf"

// Options tunes Open. The zero value (or nil) uses DefaultRoot.
type Options struct {
	// Root is the directory groups are pinned under; it must be on bpffs.
	// Only with the default is bpffs mounted (at /sys/fs/bpf) when absent.
	Root string
}

// maxAttempts bounds Open's retries when it races with processes creating
// and removing the same group.
const maxAttempts = 64

// errRetry tells Open to start over: the directory it locked was removed or
// replaced meanwhile, or another process won the race to create it.
var errRetry = errors.New("retry")

// Group is one process's handle on a steering group: the pinned program and
// maps, and a shared flock on the group's pin directory that marks the
// process as a member. Methods are safe for concurrent use.
type Group struct {
	mu     sync.Mutex
	key    Key
	dir    string
	dirfd  int // the pin directory, flocked LOCK_SH while open
	lockfd int // its "lock" subdirectory, flocked LOCK_EX around slot changes
	prog   *ebpf.Program
	socks  *ebpf.Map
	active *ebpf.Map
	closed bool
}

// Open joins the steering group of k, creating and pinning its program and
// maps when no process has, and mounting bpffs at /sys/fs/bpf when the
// default root is used and nothing is mounted there. Close the Group when
// done; Release instead to remove the pins if no other process holds the
// group open.
//
// Errors (wrapped with "steer open" and the key):
//   - ErrNotPermitted (with unix.EPERM or unix.EACCES): no CAP_BPF/
//     CAP_NET_ADMIN to load the program, no access to the pin directory
//     (it belongs to another uid), or no privilege to mount bpffs;
//   - ErrNotSupported: the kernel has no bpffs, SK_REUSEPORT programs,
//     REUSEPORT_SOCKARRAY maps or the select-or-migrate attach type (5.14);
//     or Root is not on bpffs;
//   - ErrIncompatible: a group pinned at the path by something else (another
//     layout version, or damaged) is held open by other processes;
//   - unix.EINVAL: k has no netns, address or port;
//   - unix.EAGAIN: Open kept losing races with processes creating and
//     removing the group;
//   - anything else from the bpf(2) and file system calls, wrapped.
func Open(k Key, opts *Options) (*Group, error) {
	if err := k.check(); err != nil {
		return nil, opError("open", k, fmt.Errorf("%v: %w", err, unix.EINVAL))
	}
	root := DefaultRoot
	if opts != nil && opts.Root != "" {
		root = filepath.Clean(opts.Root)
	}
	if root == DefaultRoot {
		if err := ensureBPFFS(bpffsMount); err != nil {
			return nil, opError("open", k, err)
		}
	}
	nsdir := filepath.Join(root, strconv.FormatUint(k.NetNS, 10))
	dir := filepath.Join(nsdir, k.Name())
	for range maxAttempts {
		g, err := join(dir)
		if errors.Is(err, fs.ErrNotExist) {
			g, err = create(root, nsdir, dir)
		}
		switch {
		case err == nil:
			g.key = k
			return g, nil
		case errors.Is(err, errRetry):
			continue
		default:
			return nil, opError("open", k, err)
		}
	}
	return nil, opError("open", k, fmt.Errorf("%s: still being created and removed after %d attempts: %w", dir, maxAttempts, unix.EAGAIN))
}

// join opens the pinned group at dir. It returns an error matching
// fs.ErrNotExist when there is none, errRetry when it was removed while
// join waited for its lock.
func join(dir string) (*Group, error) {
	fd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("flock %s: %w", dir, err)
	}
	if !sameDir(fd, dir) {
		unix.Close(fd)
		return nil, errRetry
	}
	g, err := loadPins(dir)
	if err != nil {
		if !errors.Is(err, errDamaged) {
			unix.Close(fd)
			return nil, err
		}
		// Not ours, or left half-removed by a process that died: replace it
		// if no other process holds it open.
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil && sameDir(fd, dir) {
			rerr := os.RemoveAll(dir)
			unix.Close(fd)
			if rerr != nil {
				return nil, fmt.Errorf("remove damaged group: %w", rerr)
			}
			return nil, errRetry
		}
		unix.Close(fd)
		return nil, fmt.Errorf("%w (in use by another process): %w", ErrIncompatible, err)
	}
	g.dir, g.dirfd = dir, fd
	return g, nil
}

// lockDir is the subdirectory whose flock serializes slot changes between
// processes (bpffs pins cannot be opened, so cannot be locked themselves).
const lockDir = "lock"

// tmpSeq numbers the temporary directories of this process.
var tmpSeq atomic.Uint64

// create builds a new group in a temporary directory next to dir and
// renames it into place, so that dir never holds a partial group. It
// returns errRetry when another process created dir first.
func create(root, nsdir, dir string) (*Group, error) {
	if err := mkdirs(root, nsdir); err != nil {
		return nil, err
	}
	cleanStale(nsdir)
	// The pid, then a number no other create of this process uses (the
	// clock alone is not one: the TCG guest's ticks are coarse enough for
	// two goroutines to read the same nanosecond).
	tmp := filepath.Join(nsdir, fmt.Sprintf("tmp-%s-%d-%d%06d", filepath.Base(dir), os.Getpid(), time.Now().UnixNano(), tmpSeq.Add(1)%1000000))
	if err := unix.Mkdir(tmp, 0o700); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errRetry // nsdir removed by a concurrent Release
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
	fail := func(err error) (*Group, error) {
		os.RemoveAll(tmp)
		unix.Close(fd)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errRetry // tmp removed under us (taken for stale)
		}
		return nil, err
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		return fail(fmt.Errorf("flock %s: %w", tmp, err))
	}
	if err := unix.Mkdir(filepath.Join(tmp, lockDir), 0o700); err != nil {
		return fail(fsError("mkdir", filepath.Join(tmp, lockDir), err))
	}
	g, err := newObjects()
	if err != nil {
		return fail(err)
	}
	if g.lockfd, err = openDir(filepath.Join(tmp, lockDir)); err != nil {
		g.closeObjects()
		return fail(err)
	}
	for name, pin := range map[string]interface{ Pin(string) error }{pinProg: g.prog, pinSocks: g.socks, pinActive: g.active} {
		if err := pin.Pin(filepath.Join(tmp, name)); err != nil {
			g.closeObjects()
			return fail(pinError(tmp, name, err))
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, dir, unix.RENAME_NOREPLACE); err != nil {
		g.closeObjects()
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return fail(errRetry) // another process created dir first
		}
		return fail(fsError("rename", tmp, err))
	}
	g.dir, g.dirfd = dir, fd
	return g, nil
}

// newObjects creates the maps and loads the program.
func newObjects() (*Group, error) {
	g := &Group{lockfd: -1}
	var err error
	if g.socks, err = ebpf.NewMap(socksSpec()); err != nil {
		return nil, bpfError("create REUSEPORT_SOCKARRAY", err)
	}
	if g.active, err = ebpf.NewMap(activeSpec()); err != nil {
		g.closeObjects()
		return nil, bpfError("create array", err)
	}
	if g.prog, err = ebpf.NewProgram(progSpec(g.socks.FD(), g.active.FD())); err != nil {
		g.closeObjects()
		return nil, bpfError("load SK_REUSEPORT program", err)
	}
	return g, nil
}

// errDamaged marks a pinned group join cannot use.
var errDamaged = errors.New("not a group of this version")

// loadPins opens the pinned objects at dir and checks they are the ones
// create makes: the maps' shapes, the program's type and name, and that the
// program uses exactly these maps.
func loadPins(dir string) (*Group, error) {
	g := &Group{lockfd: -1}
	var err error
	bad := func(format string, args ...any) (*Group, error) {
		g.closeObjects()
		return nil, fmt.Errorf("%s: %s: %w", dir, fmt.Sprintf(format, args...), errDamaged)
	}
	load := func(name string, f func(string) error) error {
		p := filepath.Join(dir, name)
		err := f(p)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENOENT):
			return fmt.Errorf("%s missing: %w", name, errDamaged)
		case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
			return with(ErrNotPermitted, err, "open pin %s", p)
		}
		return fmt.Errorf("open pin %s: %w", p, err)
	}
	if err = load(pinSocks, func(p string) (err error) { g.socks, err = ebpf.LoadPinnedMap(p, nil); return }); err != nil {
		return bad("%v", err)
	}
	if err = load(pinActive, func(p string) (err error) { g.active, err = ebpf.LoadPinnedMap(p, nil); return }); err != nil {
		return bad("%v", err)
	}
	if err = load(pinProg, func(p string) (err error) { g.prog, err = ebpf.LoadPinnedProgram(p, nil); return }); err != nil {
		return bad("%v", err)
	}
	for _, c := range []struct {
		m    *ebpf.Map
		spec *ebpf.MapSpec
	}{{g.socks, socksSpec()}, {g.active, activeSpec()}} {
		if c.m.Type() != c.spec.Type || c.m.KeySize() != c.spec.KeySize || c.m.ValueSize() != c.spec.ValueSize || c.m.MaxEntries() != c.spec.MaxEntries {
			return bad("map %s is %v key %d value %d entries %d, want %v %d %d %d", c.spec.Name,
				c.m.Type(), c.m.KeySize(), c.m.ValueSize(), c.m.MaxEntries(),
				c.spec.Type, c.spec.KeySize, c.spec.ValueSize, c.spec.MaxEntries)
		}
	}
	if g.prog.Type() != ebpf.SkReuseport {
		return bad("program is %v", g.prog.Type())
	}
	if g.lockfd, err = openDir(filepath.Join(dir, lockDir)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return bad("%s missing", lockDir)
		}
		g.closeObjects()
		return nil, err
	}
	info, err := g.prog.Info()
	if err != nil {
		g.closeObjects()
		return nil, fmt.Errorf("%s: program info: %w", dir, err)
	}
	if info.Name != progName {
		return bad("program %q, want %q", info.Name, progName)
	}
	ids, ok := info.MapIDs()
	if !ok {
		return g, nil // kernel without map ids in program info (< 4.15)
	}
	var want []ebpf.MapID
	for _, m := range []*ebpf.Map{g.socks, g.active} {
		mi, err := m.Info()
		if err != nil {
			g.closeObjects()
			return nil, fmt.Errorf("%s: map info: %w", dir, err)
		}
		id, _ := mi.ID()
		want = append(want, id)
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(ids), want) {
		return bad("program uses maps %v, not the pinned ones %v", ids, want)
	}
	return g, nil
}

// Key returns the group's key.
func (g *Group) Key() Key { return g.key }

// Dir returns the group's pin directory.
func (g *Group) Dir() string { return g.dir }

// Attach attaches the group's program to the reuseport group of the
// listening socket s with SO_ATTACH_REUSEPORT_EBPF, replacing the group's
// program if it had one. The program then stays with the kernel's
// reuseport group, whichever of its sockets closes, until the last one
// does. Listen calls it; call it directly for a socket that listens
// already.
//
// Attach on a socket that is bound but not listening yet would give it a
// reuseport group of its own, and its listen(2) would then fail with
// EADDRINUSE whenever another socket holds the port: Attach refuses it.
//
// Errors: ErrMPTCP for an MPTCP socket; unix.EPROTOTYPE for one that is not
// TCP; unix.EINVAL for one not listening, or without SO_REUSEPORT;
// ErrClosed; the socket's own Control error (shadow.ErrClosed).
func (g *Group) Attach(s Socket) error {
	return g.do("attach", s, func(fd int) error {
		if err := checkSocket(fd); err != nil {
			return err
		}
		if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
			return fmt.Errorf("socket not listening: %w", unix.EINVAL)
		}
		return g.attach(fd)
	})
}

func (g *Group) attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, g.prog.FD()); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("SO_ATTACH_REUSEPORT_EBPF (socket without SO_REUSEPORT?): %w", err)
		}
		return fmt.Errorf("SO_ATTACH_REUSEPORT_EBPF: %w", err)
	}
	return nil
}

// Listen makes s a listener of the group: it checks s is a TCP socket
// bound to the group's address, listens with the given backlog, and
// attaches the program to the reuseport group s is now in. A new listener
// receives nothing until it is designated (or is the standby and the
// designated slot empties).
//
// When s forms the kernel's reuseport group (no other listener on the
// port), connection requests between listen(2) and the attach, a few
// microseconds, are not steered: they all go to s, the only listener. Every
// listener attaching covers the case where a group forms without the
// library's program.
//
// Errors: those of Attach; unix.EINVAL when s is bound to another address
// than the group's; the errno of listen(2).
func (g *Group) Listen(s Socket, backlog int) error {
	return g.do("listen", s, func(fd int) error {
		if err := checkSocket(fd); err != nil {
			return err
		}
		if err := g.checkAddr(fd); err != nil {
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		return g.attach(fd)
	})
}

// Designate makes s the listener that receives the group's connection
// requests, from the next SYN on. When the designated slot is empty it puts
// s there. Otherwise it puts s in the standby slot (unless s is the standby
// already; a standby of another socket loses its place) and then switches
// the designated slot to it: one map update each, so no request finds both
// slots empty. The previously designated socket becomes the standby until
// it closes; close it after Designate returns and its queued requests
// migrate to s. Designating the designated socket does nothing.
//
// Slot changes of all processes of the group are serialized by a flock on
// the group's lock directory; of concurrent Designate calls the last wins,
// so callers arbitrate who designates (the registry's designated record).
//
// Errors: ErrMPTCP; unix.EPROTOTYPE for a socket that is not TCP;
// unix.EINVAL when s is bound to another address than the group's, or is
// not listening; unix.EBUSY when s is in another map's slot; ErrClosed; the
// socket's Control error.
func (g *Group) Designate(s Socket) error {
	return g.withSlots("designate", s, func(fd int, cookie uint64, st Status) error {
		switch cookie {
		case st.Designated:
			return nil
		case st.Standby:
		default:
			if st.Designated == 0 {
				// The designated slot is empty: fill it, keep the standby.
				return g.put(st.Slot, fd)
			}
			if err := g.put(st.Slot^1, fd); err != nil {
				return err
			}
		}
		if err := g.active.Put(uint32(0), st.Slot^1); err != nil {
			return fmt.Errorf("switch designated slot to %d: %w", st.Slot^1, err)
		}
		return nil
	})
}

// withSlots runs f for the member socket s under the group's slot lock,
// with s's fd, its socket cookie and the slots' status.
func (g *Group) withSlots(op string, s Socket, f func(fd int, cookie uint64, st Status) error) error {
	return g.do(op, s, func(fd int) error {
		if err := g.checkMember(fd); err != nil {
			return err
		}
		cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		if err != nil {
			return fmt.Errorf("SO_COOKIE: %w", err)
		}
		unlock, err := g.lockSlots()
		if err != nil {
			return err
		}
		defer unlock()
		st, err := g.status()
		if err != nil {
			return err
		}
		return f(fd, cookie, st)
	})
}

// lockSlots takes the group's slot lock, shared by every process of the
// group; the returned func releases it.
func (g *Group) lockSlots() (func(), error) {
	if err := flock(g.lockfd, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("flock %s/%s: %w", g.dir, lockDir, err)
	}
	return func() { unix.Flock(g.lockfd, unix.LOCK_UN) }, nil
}

// Standby puts s in the standby slot, replacing the standby there: when the
// designated socket closes or its process dies, the kernel sends the
// group's requests, and migrates the queued ones, to s at once, before any
// process learns of it. TakeOver then makes s the designated one.
//
// Errors: those of Designate; unix.EBUSY when s is the designated socket.
func (g *Group) Standby(s Socket) error {
	return g.withSlots("standby", s, func(fd int, cookie uint64, st Status) error {
		switch cookie {
		case st.Designated:
			return fmt.Errorf("socket is the designated listener: %w", unix.EBUSY)
		case st.Standby:
			return nil
		}
		return g.put(st.Slot^1, fd)
	})
}

func (g *Group) put(slot uint32, fd int) error {
	err := g.socks.Put(slot, uint64(fd))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("put in slot %d (socket not listening?): %w", slot, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("put in slot %d (socket already in a REUSEPORT_SOCKARRAY): %w", slot, err)
	}
	return fmt.Errorf("put in slot %d: %w", slot, err)
}

// Status returns which slot is designated and the cookies of the sockets in
// both slots.
//
// Errors: ErrClosed; the bpf(2) lookup's errno.
func (g *Group) Status() (Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return Status{}, opError("status", g.key, ErrClosed)
	}
	st, err := g.status()
	if err != nil {
		return st, opError("status", g.key, err)
	}
	return st, nil
}

func (g *Group) status() (Status, error) {
	var st Status
	if err := g.active.Lookup(uint32(0), &st.Slot); err != nil {
		return st, fmt.Errorf("lookup designated slot: %w", err)
	}
	st.Slot &= 1
	cookies := [numSlots]uint64{}
	for i := range cookies {
		err := g.socks.Lookup(uint32(i), &cookies[i])
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return st, fmt.Errorf("lookup slot %d: %w", i, err)
		}
	}
	st.Designated, st.Standby = cookies[st.Slot], cookies[st.Slot^1]
	return st, nil
}

// do runs f with s's fd while the group is open, and wraps f's error with op.
func (g *Group) do(op string, s Socket, f func(fd int) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return opError(op, g.key, ErrClosed)
	}
	if err := s.Control(f); err != nil {
		return opError(op, g.key, err)
	}
	return nil
}

func (g *Group) checkMember(fd int) error {
	if err := checkSocket(fd); err != nil {
		return err
	}
	return g.checkAddr(fd)
}

func (g *Group) checkAddr(fd int) error {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	ap := addrPort(sa)
	want := g.key.Addr
	if ap.Addr().Unmap().WithZone("") != want.Addr().Unmap().WithZone("") || ap.Port() != want.Port() {
		return fmt.Errorf("socket bound to %s, not the group's %s: %w", ap, want, unix.EINVAL)
	}
	if ns, err := socketNetNSStrict(fd); err == nil && ns != g.key.NetNS {
		return fmt.Errorf("socket in netns:[%d], not the group's netns:[%d]: %w", ns, g.key.NetNS, unix.EINVAL)
	}
	return nil
}

// Close releases the process's handle on the group: the program and map
// descriptors and the directory lock. It does not remove the pins, nor
// detach the program from the reuseport group, nor take sockets out of the
// map (closing a socket does). It is safe to call more than once.
func (g *Group) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closeLocked()
}

func (g *Group) closeLocked() error {
	if g.closed {
		return nil
	}
	g.closed = true
	err := g.closeObjects()
	if cerr := unix.Close(g.dirfd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return opError("close", g.key, err)
	}
	return nil
}

func (g *Group) closeObjects() error {
	var errs []error
	if g.prog != nil {
		errs = append(errs, g.prog.Close())
	}
	if g.socks != nil {
		errs = append(errs, g.socks.Close())
	}
	if g.active != nil {
		errs = append(errs, g.active.Close())
	}
	if g.lockfd >= 0 {
		errs = append(errs, unix.Close(g.lockfd))
		g.lockfd = -1
	}
	return errors.Join(errs...)
}

// Release closes the group and, if no other process holds it open, removes
// its pins and directory (and the netns directory when that empties). Call
// it when the process leaves the group for good: its listeners of the group
// are closed. It reports whether it removed the pins. Once the pins are gone
// the next Open creates a new program and maps; listeners still in the
// kernel's reuseport group keep the old program until a new one is attached.
// Release after Close, or twice, does nothing.
//
// Processes holding the group open are counted by flock: a process that
// died holds none. Removal takes the directory's lock exclusively (so no
// member holds it); a process opening the group meanwhile finds, once its
// lock is granted, that the directory is gone, and starts over.
//
// Errors: those of removing the files, wrapped; the group is closed anyway.
func (g *Group) Release() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false, nil
	}
	removed := false
	var rerr error
	// A failed non-blocking conversion drops the shared lock too: harmless,
	// the group is being closed.
	if unix.Flock(g.dirfd, unix.LOCK_EX|unix.LOCK_NB) == nil && sameDir(g.dirfd, g.dir) {
		if rerr = os.RemoveAll(g.dir); rerr == nil {
			removed = true
			unix.Rmdir(filepath.Dir(g.dir)) // the netns directory, if empty
		}
	}
	cerr := g.closeLocked()
	if rerr != nil {
		return false, opError("release", g.key, rerr)
	}
	return removed, cerr
}

// staleAge is how old a temporary directory must be before cleanStale
// removes it: a creator takes its lock on it microseconds after making it.
var staleAge = time.Minute

// cleanStale removes temporary directories left by processes that died while
// creating a group: old ones whose creator no longer holds its lock.
func cleanStale(nsdir string) {
	ents, err := os.ReadDir(nsdir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "tmp-") {
			continue
		}
		if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		p := filepath.Join(nsdir, e.Name())
		fd, err := openDir(p)
		if err != nil {
			continue
		}
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil && sameDir(fd, p) {
			os.RemoveAll(p)
		}
		unix.Close(fd)
	}
}

// mkdirs creates root and nsdir (mode 0700) where missing, after checking
// that they are on bpffs (root, or where root would be made).
func mkdirs(root, nsdir string) error {
	var st unix.Statfs_t
	at := root
	err := unix.Statfs(at, &st)
	if errors.Is(err, unix.ENOENT) {
		at = filepath.Dir(root)
		err = unix.Statfs(at, &st)
	}
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return with(ErrNotSupported, err, "statfs %s", at)
		}
		return fsError("statfs", at, err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return with(ErrNotSupported, unix.EXDEV, "%s is not on bpffs", at)
	}
	for _, d := range []string{root, nsdir} {
		if err := unix.Mkdir(d, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fsError("mkdir", d, err)
		}
	}
	return nil
}

func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fsError("open", dir, err)
	}
	return fd, nil
}

// sameDir reports whether the open directory fd is still the one at path.
func sameDir(fd int, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(fd, &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		if err != unix.EINTR {
			return err
		}
	}
}

// fsError wraps a file system errno, adding ErrNotPermitted for EACCES and
// EPERM, and fs.ErrNotExist for ENOENT (errno.Is does that already).
func fsError(op, path string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return with(ErrNotPermitted, err, "%s %s", op, path)
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

func pinError(dir, name string, err error) error {
	if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
		return with(ErrNotPermitted, err, "pin %s/%s", dir, name)
	}
	return fmt.Errorf("pin %s/%s: %w", dir, name, err)
}

// bpfError classifies an error of map creation or program loading.
func bpfError(op string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return with(ErrNotPermitted, err, "%s (needs CAP_BPF and CAP_NET_ADMIN)", op)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.ENOSYS),
		errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, errnoENOTSUPP):
		return with(ErrNotSupported, err, "%s", op)
	case errors.Is(err, unix.EINVAL):
		// An unknown program or map type, or attach type: an old kernel.
		return with(ErrNotSupported, err, "%s (kernel older than 5.14?)", op)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// errnoENOTSUPP is the kernel-internal ENOTSUPP (524) some bpf(2) and
// socket paths leak to user space.
const errnoENOTSUPP = unix.Errno(524)

// ensureBPFFS mounts bpffs at dir unless it is one already. Concurrent
// callers serialize on a flock of the directory underneath and look again
// once they hold it, so bpffs is never mounted twice over itself.
func ensureBPFFS(dir string) error {
	isBPF := func() (bool, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, with(ErrNotSupported, err, "statfs %s", dir)
			}
			return false, fsError("statfs", dir, err)
		}
		return st.Type == unix.BPF_FS_MAGIC, nil
	}
	if ok, err := isBPF(); ok || err != nil {
		return err
	}
	fd, err := openDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("flock %s: %w", dir, err)
	}
	if ok, err := isBPF(); ok || err != nil {
		return err
	}
	err = unix.Mount("bpf", dir, "bpf", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return with(ErrNotPermitted, err, "mount bpffs at %s", dir)
	case errors.Is(err, unix.ENODEV):
		return with(ErrNotSupported, err, "mount bpffs at %s", dir)
	}
	return fmt.Errorf("mount bpffs at %s: %w", dir, err)
}
