package steer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// errDamaged marks pinned objects or a group directory Open cannot use.
var errDamaged = errors.New("not a group of this version")

// tmpSeq numbers the temporary directories of this process.
var tmpSeq atomic.Uint64

// errStaleNS tells Open that the netns directory its handle holds was
// removed (by hand: this package never removes it).
var errStaleNS = errors.New("netns directory removed")

// Group is one process's handle on a steering group: its index in the
// per-netns maps, and a shared flock on the group's directory that marks
// the process as a member. Methods are safe for concurrent use.
type Group struct {
	mu      sync.Mutex
	key     Key
	pk      progKey
	ns      *nsObjects
	idx     uint32 // the group's index: slots 2*idx and 2*idx+1, state word idx
	name    string // the directory's name in the netns directory
	dirfd   int    // the group directory, flocked LOCK_SH while open
	checked uint64 // cookie of the socket checkMember last passed
	closed  bool
}

// Open joins the steering group of k, creating its entries in the
// network namespace's maps when no process has, and the program and maps
// of the network namespace when no process has (then loading the program
// through the verifier, once per netns), mounting bpffs at /sys/fs/bpf when
// the default root is used and nothing is mounted there. Close the Group
// when done; Release instead to remove the group's entries if no other
// process holds the group open.
//
// Errors (wrapped with "steer open" and the key):
//   - ErrNotPermitted (with unix.EPERM or unix.EACCES): no CAP_BPF/
//     CAP_NET_ADMIN to load the program, no access to the pin directory
//     (it belongs to another uid), or no privilege to mount bpffs;
//   - ErrNotSupported: the kernel has no bpffs, SK_REUSEPORT programs,
//     REUSEPORT_SOCKARRAY maps or the select-or-migrate attach type (5.14);
//     or Root is not on bpffs;
//   - ErrIncompatible: a group directory, or the netns's objects, at the
//     path are not this package's (another layout, or damaged) and other
//     processes hold them open;
//   - unix.EINVAL: k has no netns, address or port, or a zone on an address
//     that is not link-local IPv6 (or none on one that is);
//   - unix.ENOSPC: MaxGroups groups are open in the netns;
//   - unix.EAGAIN: Open kept losing races with processes creating and
//     removing the group;
//   - anything else from the bpf(2) and file system calls, wrapped.
func Open(k Key, opts *Options) (*Group, error) {
	if err := k.check(); err != nil {
		return nil, opError("open", k, fmt.Errorf("%v: %w", err, unix.EINVAL))
	}
	pk, err := progKeyOf(k)
	if err != nil {
		return nil, opError("open", k, fmt.Errorf("%v: %w", err, unix.EINVAL))
	}
	root := DefaultRoot
	if opts != nil && opts.Root != "" {
		root = filepath.Clean(opts.Root)
	}
	o, err := acquireNS(root, k.NetNS, root == DefaultRoot)
	if err != nil {
		return nil, opError("open", k, err)
	}
	name := k.Name()
	for range maxAttempts {
		g, err := join(o, name, pk)
		if errors.Is(err, fs.ErrNotExist) {
			g, err = create(o, name, pk)
		}
		switch {
		case err == nil:
			g.key = k
			return g, nil
		case errors.Is(err, errRetry):
			continue
		case errors.Is(err, errStaleNS):
			forgetNS(o)
			releaseNS(o)
			if o, err = acquireNS(root, k.NetNS, root == DefaultRoot); err != nil {
				return nil, opError("open", k, err)
			}
			continue
		default:
			releaseNS(o)
			return nil, opError("open", k, err)
		}
	}
	releaseNS(o)
	return nil, opError("open", k, fmt.Errorf("%s/%s: still being created and removed after %d attempts: %w", o.dir, name, maxAttempts, unix.EAGAIN))
}

// join opens the group directory name. It returns an error matching
// fs.ErrNotExist when there is none, errRetry when it was removed while
// join waited for its lock.
func join(o *nsObjects, name string, pk progKey) (*Group, error) {
	fd, err := o.openGroupDir(name)
	if err != nil {
		return nil, err
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("flock %s/%s: %w", o.dir, name, err)
	}
	if !o.sameDir(fd, name) {
		unix.Close(fd)
		return nil, errRetry
	}
	g, err := groupAt(o, fd, name, pk)
	if err == nil || !errors.Is(err, errDamaged) {
		if err != nil {
			unix.Close(fd)
		}
		return g, err
	}
	// Its creator may be halfway (it holds the netns lock), or died
	// halfway, or something else made the directory: look again under
	// the netns lock, and replace it if no other process holds it open.
	if err := o.lock(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	defer o.unlock()
	if !o.sameDir(fd, name) {
		unix.Close(fd)
		return nil, errRetry
	}
	g, err = groupAt(o, fd, name, pk)
	if err == nil || !errors.Is(err, errDamaged) {
		if err != nil {
			unix.Close(fd)
		}
		return g, err
	}
	if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		rerr := o.removeGroupDir(name)
		if idx, ok, _ := o.lookupIndex(pk); ok && rerr == nil {
			rerr = o.free(pk, idx)
		}
		unix.Close(fd)
		if rerr != nil {
			return nil, fmt.Errorf("remove damaged group: %w", rerr)
		}
		return nil, errRetry
	}
	unix.Close(fd)
	return nil, fmt.Errorf("%w (in use by another process): %w", ErrIncompatible, err)
}

// groupAt returns the Group of the directory fd (flocked LOCK_SH) named
// name: the index its key maps to, which must be allocated.
func groupAt(o *nsObjects, fd int, name string, pk progKey) (*Group, error) {
	idx, ok, err := o.lookupIndex(pk)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, fmt.Errorf("%s/%s: no index in %s: %w", o.dir, name, pinGroups, errDamaged)
	case o.word(idx).Load()&stInUse == 0:
		return nil, fmt.Errorf("%s/%s: index %d not allocated: %w", o.dir, name, idx, errDamaged)
	}
	return &Group{pk: pk, ns: o, idx: idx, name: name, dirfd: fd}, nil
}

// create makes the group directory name under the netns lock: an index
// mapped from pk first, then the directory (a process that finds it finds
// the index), and the creator's LOCK_SH. It returns errRetry when another
// process created the directory first.
func create(o *nsObjects, name string, pk progKey) (*Group, error) {
	if err := o.lock(); err != nil {
		return nil, err
	}
	defer o.unlock()
	idx, stale, err := o.alloc(pk)
	if err != nil {
		return nil, err
	}
	if err := unix.Mkdirat(o.dirfd, name, 0o700); err != nil {
		if !stale {
			o.free(pk, idx)
		}
		switch {
		case errors.Is(err, unix.EEXIST):
			return nil, errRetry // created meanwhile: join it
		case errors.Is(err, unix.ENOENT):
			return nil, errStaleNS
		}
		return nil, fsError("mkdir", filepath.Join(o.dir, name), err)
	}
	fail := func(err error) (*Group, error) {
		o.removeGroupDir(name)
		o.free(pk, idx)
		return nil, err
	}
	if stale {
		// pk was mapped, but its directory was gone: a process died
		// between mapping it and making the directory, or while removing
		// the group. Its index is this group's now, with empty slots.
		if err := o.clearSlots(idx); err != nil {
			return fail(err)
		}
		o.word(idx).Store(stInUse)
	}
	fd, err := o.openGroupDir(name)
	if err != nil {
		return fail(err)
	}
	if err := flock(fd, unix.LOCK_SH); err != nil {
		unix.Close(fd)
		return fail(fmt.Errorf("flock %s/%s: %w", o.dir, name, err))
	}
	return &Group{pk: pk, ns: o, idx: idx, name: name, dirfd: fd}, nil
}

// Key returns the group's key.
func (g *Group) Key() Key { return g.key }

// Dir returns the group's directory: <root>/<netns>/steer2/<Key.Name>.
func (g *Group) Dir() string { return filepath.Join(g.ns.dir, g.name) }

// Attach attaches the netns's program to the reuseport group of the
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
// TCP; unix.EINVAL for one not listening, or without SO_REUSEPORT, or bound
// to another address than the group's, or in another netns; ErrClosed; the
// socket's own Control error (shadow.ErrClosed).
func (g *Group) Attach(s Socket) error {
	return g.withCookie("attach", s, func(fd int, cookie uint64) error {
		if err := g.checkMember(fd, cookie); err != nil {
			return err
		}
		if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || acc == 0 {
			return fmt.Errorf("socket not listening: %w", unix.EINVAL)
		}
		return g.attach(fd)
	})
}

func (g *Group) attach(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, g.ns.prog.FD()); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("SO_ATTACH_REUSEPORT_EBPF (socket without SO_REUSEPORT?): %w", err)
		}
		return fmt.Errorf("SO_ATTACH_REUSEPORT_EBPF: %w", err)
	}
	return nil
}

// Listen makes s a listener of the group: it checks s is a TCP socket
// bound to the group's address in the group's netns, listens with the
// given backlog, and attaches the netns's program to the reuseport group s
// is now in. A new listener receives nothing until it is designated (or is
// the standby and the designated slot empties).
//
// When s forms the kernel's reuseport group (no other listener on the
// port), connection requests between listen(2) and the attach, a few
// microseconds, are not steered: they all go to s, the only listener. Every
// listener attaching covers the case where a group forms without the
// library's program.
//
// Errors: those of Attach; the errno of listen(2).
func (g *Group) Listen(s Socket, backlog int) error {
	return g.withCookie("listen", s, func(fd int, cookie uint64) error {
		if err := g.checkMember(fd, cookie); err != nil {
			return err
		}
		if err := unix.Listen(fd, backlog); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		return g.attach(fd)
	})
}

// Designate makes s the listener that receives the group's connection
// requests, from the next SYN on. When s is the standby already, that is
// one compare-and-swap of the group's state word (no lock, no map update).
// When the designated slot is empty it puts s there. Otherwise it puts s in
// the standby slot (a standby of another socket loses its place) and then
// switches the designated slot to it: one map update and one store, so no
// request finds both slots empty. The previously designated socket becomes
// the standby until it closes; close it after Designate returns and its
// queued requests migrate to s. Designating the designated socket does
// nothing.
//
// Slot changes of all processes are serialized by the netns lock (a flock
// on the netns directory); of concurrent Designate calls the last wins, so
// callers arbitrate who designates (the registry's designated record).
//
// Errors: ErrMPTCP; unix.EPROTOTYPE for a socket that is not TCP;
// unix.EINVAL when s is bound to another address than the group's, or is
// not listening; unix.EBUSY when s is in another group's slot; ErrClosed;
// the socket's Control error.
func (g *Group) Designate(s Socket) error {
	return g.withCookie("designate", s, g.designate)
}

func (g *Group) designate(fd int, cookie uint64) error {
	o, w, base := g.ns, g.ns.word(g.idx), numSlots*g.idx
	for range 4 {
		cur := w.Load()
		if cur&stBusy != 0 {
			break // a slot change is under way (or its process died in it)
		}
		a := cur & stSlot
		std, err := o.slotCookie(base + (a ^ 1))
		if err != nil {
			return err
		}
		if std == cookie {
			// The switch to the standby: the word cannot have changed
			// unless a slot did, or another switch happened.
			if w.CompareAndSwap(cur, nextState(cur, a^1)) {
				return nil
			}
			continue
		}
		des, err := o.slotCookie(base + a)
		if err != nil {
			return err
		}
		if w.Load() != cur {
			continue
		}
		if des == cookie {
			return nil
		}
		return g.designateLocked(fd, cookie, cur, std, des)
	}
	return g.designateLocked(fd, cookie, stBusy, 0, 0)
}

// designateLocked puts s (fd, cookie) in a slot under the slot lock. seen,
// std and des are what designate read without the lock: the state word and
// the slots' cookies, still valid if the word has not changed since.
func (g *Group) designateLocked(fd int, cookie uint64, seen uint32, std, des uint64) error {
	if err := g.checkMember(fd, cookie); err != nil {
		return err
	}
	cur, err := g.begin()
	if err != nil {
		return err
	}
	a := cur & stSlot
	if cur != seen {
		if std, des, err = g.slots(a); err != nil {
			g.end(cur, a)
			return err
		}
	}
	switch {
	case cookie == des:
	case cookie == std:
		a ^= 1
	case des == 0:
		// The designated slot is empty: fill it, keep the standby.
		err = g.put(numSlots*g.idx+a, fd)
	default:
		if err = g.put(numSlots*g.idx+(a^1), fd); err == nil {
			a ^= 1
		}
	}
	g.end(cur, a)
	return err
}

// slots returns the cookies of the standby and designated sockets when
// slot a is the designated one.
func (g *Group) slots(a uint32) (std, des uint64, err error) {
	base := numSlots * g.idx
	if std, err = g.ns.slotCookie(base + (a ^ 1)); err != nil {
		return 0, 0, err
	}
	des, err = g.ns.slotCookie(base + a)
	return std, des, err
}

// nextState is state word cur with the designated slot a, one generation
// on, and not busy.
func nextState(cur, a uint32) uint32 {
	return (cur &^ (stGen - 1)) + stGen | cur&stInUse | a
}

// begin takes the slot lock (the netns lock, shared by every process of
// the netns) and marks the group's state word busy, so that a lock-free
// switch (designate's compare-and-swap) cannot happen while slots change.
// It returns the word as it was. A busy word found with the lock held was
// left by a process that died during a change; its slots stand as it left
// them.
func (g *Group) begin() (uint32, error) {
	if err := g.ns.lock(); err != nil {
		return 0, err
	}
	w := g.ns.word(g.idx)
	for {
		cur := w.Load()
		if w.CompareAndSwap(cur, cur|stBusy) {
			return cur &^ stBusy, nil
		}
	}
}

// end stores the state word with designated slot a, one generation on
// from cur, and releases the slot lock.
func (g *Group) end(cur, a uint32) {
	g.ns.word(g.idx).Store(nextState(cur, a))
	g.ns.unlock()
}

// withCookie runs f with s's fd and socket cookie while the group is open.
// A Socket with a Cookie method (*shadow.Socket, which keeps it) spares the
// getsockopt.
func (g *Group) withCookie(op string, s Socket, f func(fd int, cookie uint64) error) error {
	var cookie uint64
	if cs, ok := s.(interface{ Cookie() (uint64, error) }); ok {
		c, err := cs.Cookie()
		if err != nil {
			return opError(op, g.key, err)
		}
		cookie = c
	}
	return g.do(op, s, func(fd int) error {
		if cookie == 0 {
			c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return fmt.Errorf("SO_COOKIE: %w", err)
			}
			cookie = c
		}
		return f(fd, cookie)
	})
}

// Standby puts s in the standby slot, replacing the standby there: when the
// designated socket closes or its process dies, the kernel sends the
// group's requests, and migrates the queued ones, to s at once, before any
// process learns of it. TakeOver then makes s the designated one.
//
// Errors: those of Designate; unix.EBUSY when s is the designated socket.
func (g *Group) Standby(s Socket) error {
	return g.withCookie("standby", s, func(fd int, cookie uint64) error {
		cur, err := g.begin()
		if err != nil {
			return err
		}
		a := cur & stSlot
		defer func() { g.end(cur, a) }()
		std, des, err := g.slots(a)
		switch {
		case err != nil:
			return err
		case cookie == des:
			return fmt.Errorf("socket is the designated listener: %w", unix.EBUSY)
		case cookie == std:
			return nil
		}
		if err := g.checkMember(fd, cookie); err != nil {
			return err
		}
		return g.put(numSlots*g.idx+(a^1), fd)
	})
}

func (g *Group) put(slot uint32, fd int) error {
	err := g.ns.socks.Put(slot, uint64(fd))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("put in slot %d (socket not listening?): %w", slot, err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("put in slot %d (socket already in another slot): %w", slot, err)
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
	w := g.ns.word(g.idx)
	for {
		cur := w.Load()
		a := cur & stSlot
		std, des, err := g.slots(a)
		if err != nil {
			return Status{}, opError("status", g.key, err)
		}
		// A change meanwhile: read again, for a consistent picture (a
		// change left halfway by a dead process leaves the word busy but
		// unchanging).
		if w.Load() == cur {
			return Status{Slot: a, Designated: des, Standby: std}, nil
		}
	}
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

// checkMember checks that fd, of socket cookie cookie, is a TCP socket
// bound to the group's address and port, in the group's netns. The last
// socket that passed is remembered by its cookie (unique for the kernel's
// life, and none of these change for a bound socket): Listen then
// Designate of one socket checks it once.
func (g *Group) checkMember(fd int, cookie uint64) error {
	if cookie == g.checked {
		return nil
	}
	if err := g.checkMemberFD(fd); err != nil {
		return err
	}
	g.checked = cookie
	return nil
}

func (g *Group) checkMemberFD(fd int) error {
	if err := checkSocket(fd); err != nil {
		return err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("getsockname: %w", err)
	}
	ap := addrPort(sa)
	want := g.key.Addr
	if ap.Addr().Unmap().WithZone("") != want.Addr().Unmap().WithZone("") || ap.Port() != want.Port() {
		return fmt.Errorf("socket bound to %s, not the group's %s: %w", ap, want, unix.EINVAL)
	}
	return g.checkNetNS(fd)
}

// checkNetNS checks that fd is in the group's netns (one getsockopt for a
// namespace seen before; see socketNetNSStrict). Without the privilege to
// ask the socket (CAP_NET_ADMIN) its namespace is not checked.
func (g *Group) checkNetNS(fd int) error {
	ns, err := socketNetNSStrict(fd)
	if err != nil {
		return nil
	}
	if ns != g.key.NetNS {
		return fmt.Errorf("socket in netns:[%d], not the group's netns:[%d]: %w", ns, g.key.NetNS, unix.EINVAL)
	}
	return nil
}

// Close releases the process's handle on the group: its directory lock
// and, with the last Group of the netns in the process, the program and
// map descriptors. It does not remove the group's entries, nor detach the
// program from the reuseport group, nor take sockets out of the map
// (closing a socket does). It is safe to call more than once.
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
	err := errors.Join(unix.Close(g.dirfd), releaseNS(g.ns))
	if err != nil {
		return opError("close", g.key, err)
	}
	return nil
}

// Release closes the group and, if no other process holds it open, removes
// its directory and its entries in the netns's maps (its key, its slots;
// its index is free for another group). The netns's program and maps stay
// pinned for the next group. Call it when the process leaves the group for
// good: its listeners of the group are closed. It reports whether it
// removed the group. Listeners still in the kernel's reuseport group keep
// the program, which finds no entry for them any more and refuses their
// connection requests (SK_DROP). Release after Close, or twice, does
// nothing.
//
// Processes holding the group open are counted by flock: a process that
// died holds none. Removal takes the netns lock, then the directory's lock
// exclusively (so no member holds it); a process opening the group
// meanwhile finds, once its lock is granted, that the directory is gone,
// and starts over.
//
// Errors: those of removing the directory and the entries, wrapped; the
// group is closed anyway.
func (g *Group) Release() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false, nil
	}
	removed := false
	var rerr error
	if rerr = g.ns.lock(); rerr == nil {
		// A failed non-blocking conversion drops the shared lock too:
		// harmless, the group is being closed.
		if unix.Flock(g.dirfd, unix.LOCK_EX|unix.LOCK_NB) == nil && g.ns.sameDir(g.dirfd, g.name) {
			if rerr = g.ns.removeGroupDir(g.name); rerr == nil {
				removed = true
				rerr = g.ns.free(g.pk, g.idx)
			}
		}
		g.ns.unlock()
	}
	cerr := g.closeLocked()
	if rerr != nil {
		return removed, opError("release", g.key, rerr)
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
// that they are on bpffs (root, or where root would be made), and checks
// that both are trusted (openDir).
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
		fd, err := openDir(d)
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	return nil
}

// openDir opens a directory of the pins (or the bpffs mount point), with
// O_NOFOLLOW, and trusts it only if fstat shows a directory owned by this
// process's effective uid or by root that group and others cannot write:
// pins found in it are then this user's (or root's), never planted. A
// directory that is not trusted is ErrNotPermitted.
func openDir(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, with(ErrNotPermitted, err, "open %s: a symbolic link or not a directory", dir)
		}
		return -1, fsError("open", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fsError("fstat", dir, err)
	}
	if euid := uint32(unix.Geteuid()); st.Uid != euid && st.Uid != 0 || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, with(ErrNotPermitted, unix.EPERM, "%s not trusted: owned by uid %d, mode %#o (want this user's or root's, not writable by group or others)", dir, st.Uid, st.Mode&0o7777)
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
