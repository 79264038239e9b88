package election

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// The election locks: OFD byte-range locks on the registry file, far past its
// end, that elect one designated listener per address and port and tell
// binders where a listener is. They start at 2^62, so they never meet the
// registry's own locks (header and records), and they change no byte of the
// file. Like the registry's, they belong to an open file description, and
// the kernel drops them when it is closed or its process dies (SIGKILL
// included). A registry file is one user's in one network namespace, which
// is exactly the scope of a port: the locks need no key for either.
//
// The offsets (the port flags, the IPv4 and the hashed IPv6 election and
// standby locks, the rdma_cm locks) are specified with every other lock of
// the file in docs/registry.md, "Lock map"; flagOffset, listenOffset and
// rdmaOffset compute them.
const (
	lockBase     = int64(1) << 62
	lockFlagBase = lockBase
	lockV4Base   = lockBase + int64(1)<<48
	lockV6Base   = lockBase + int64(1)<<52
)

// lockKind is which lock of an address and port.
type lockKind int64

const (
	lockElect   lockKind = 0 // held (write) by the designated listener
	lockStandby lockKind = 1 // held (write) by the standby listener
)

// rdmaShift moves an election lock's offset to the rdma_cm lock of its
// address and port: past every election and standby lock (they end below
// 2^62 + 2^53), and still inside int64.
const rdmaShift = int64(1) << 56

// flagOffset is the offset of the listener flag of port.
func flagOffset(port uint16) int64 { return lockFlagBase + int64(port) }

// listenOffset is the offset of the election or standby lock of ap.
func listenOffset(ap netip.AddrPort, k lockKind) int64 {
	a := ap.Addr().Unmap().WithZone("")
	if a.Is4() {
		v4 := a.As4()
		key := int64(binary.BigEndian.Uint32(v4[:]))<<16 | int64(ap.Port())
		return lockV4Base + 2*key + int64(k)
	}
	h := fnv.New64a()
	a16 := a.As16()
	h.Write(a16[:])
	h.Write([]byte{byte(ap.Port() >> 8), byte(ap.Port())})
	key := int64(h.Sum64() & (1<<50 - 1))
	return lockV6Base + 2*key + int64(k)
}

// rdmaOffset is the offset of the rdma_cm lock of ap, held by the
// designated listener whose rdma_cm id is on the port: a write lock from
// before its rdma_listen until it listens, a read lock from then until its
// Close has destroyed the id (a killed process's lock may go before its
// id: the successor's Listen retries meanwhile). A successor waits for the
// write lock before it listens, so it listens the moment the old id is
// gone; the closing listener waits for the successor's read lock before
// it rejects its queue and its Close returns.
func rdmaOffset(ap netip.AddrPort) int64 { return listenOffset(ap, lockElect) + rdmaShift }

// lockFile is an open file description of the registry file through which
// listen locks are taken; every listener has its own (OFD locks of one
// description do not conflict with each other), so do probes.
type lockFile struct {
	path string
	mu   sync.Mutex // guards fd against close while a waiter is set up
	fd   int
}

// openLockFile opens reg's file for listen locks, as the registry trusts it
// (registry.OpenFile: a regular file of this user or root, not writable by
// group or others, and still the file reg opened).
func openLockFile(reg *registry.Registry) (*lockFile, error) {
	fd, err := reg.OpenFile()
	if err != nil {
		return nil, fmt.Errorf("listen locks: %w", err)
	}
	return &lockFile{path: reg.Path(), fd: fd}, nil
}

// try takes a one-byte lock (ofdlock.Write or ofdlock.Read) at off without
// waiting; it reports false when another open file description holds a
// conflicting one.
func (l *lockFile) try(typ ofdlock.Type, off int64) (bool, error) {
	switch err := ofdlock.Set(l.fd, typ, off, 1); err {
	case nil:
		return true, nil
	case unix.EAGAIN:
		return false, nil
	default:
		return false, fmt.Errorf("listen locks: %s: F_OFD_SETLK at %#x: %w", l.path, off, err)
	}
}

// unlock drops the lock at off.
func (l *lockFile) unlock(off int64) error {
	if err := ofdlock.Unlock(l.fd, off, 1); err != nil {
		return fmt.Errorf("listen locks: %s: unlock %#x: %w", l.path, off, err)
	}
	return nil
}

// held reports whether another open file description holds a lock at off
// (any lock: the probe asks for a write lock, which every lock blocks).
func (l *lockFile) held(off int64) (bool, error) {
	held, err := ofdlock.Held(l.fd, ofdlock.Write, off, 1)
	if err != nil {
		return false, fmt.Errorf("listen locks: %s: F_OFD_GETLK at %#x: %w", l.path, off, err)
	}
	return held, nil
}

// readHeld reports whether other open file descriptions hold read locks,
// and none a write lock, at off: one probe (ofdlock.Holder), so a write
// lock dropped meanwhile cannot pass for a read lock.
func (l *lockFile) readHeld(off int64) (bool, error) {
	typ, err := ofdlock.Holder(l.fd, off, 1)
	if err != nil {
		return false, fmt.Errorf("listen locks: %s: F_OFD_GETLK at %#x: %w", l.path, off, err)
	}
	return typ == ofdlock.Read, nil
}

// close closes the description, dropping every lock taken through it.
func (l *lockFile) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	err := unix.Close(l.fd)
	l.fd = -1
	return err
}

// wait takes a write lock at off, waiting for it until ctx ends
// (ofdlock.Wait: the wait blocks an OS thread, and its cancellation is
// real). It waits through a dup of the description of its own, so that a
// close meanwhile cannot pull the fd from under it; the lock, once granted,
// belongs to the description l, like the ones try takes.
//
// Errors: ctx.Err() when ctx ends first; an errno otherwise.
func (l *lockFile) wait(ctx context.Context, off int64) error {
	l.mu.Lock()
	if l.fd < 0 {
		l.mu.Unlock()
		return fmt.Errorf("listen locks: %s: closed: %w", l.path, unix.EBADF)
	}
	dfd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("listen locks: %s: dup: %w", l.path, err)
	}
	defer unix.Close(dfd)
	err = ofdlock.Wait(ctx, dfd, ofdlock.Write, off, 1)
	if err == nil || err == ctx.Err() {
		return err
	}
	return fmt.Errorf("listen locks: %s: wait for the lock at %#x: %w", l.path, off, err)
}

// Probe looks at the listener flags of a registry file: whether a
// designated listener of a port may exist. The rdma_cm anchor (package
// cmport) asks it before and after binding an id. Close it when done.
type Probe struct{ lf *lockFile }

// OpenProbe opens a probe of reg's listener flags.
//
// Errors: those of opening the registry file (an errno; EACCES when the
// file is not one this user can trust).
func OpenProbe(reg *registry.Registry) (*Probe, error) {
	lf, err := openLockFile(reg)
	if err != nil {
		return nil, err
	}
	return &Probe{lf: lf}, nil
}

// Flagged reports whether a designated listener of port may exist (its
// flag is held); true when it cannot tell.
func (p *Probe) Flagged(port uint16) bool {
	held, err := p.lf.held(flagOffset(port))
	return held || err != nil
}

// Close closes the probe. Safe twice.
func (p *Probe) Close() error { return p.lf.close() }

// RingDoorbell sets the times of reg's file, which inotify reports
// (IN_ATTRIB) to every process watching it: "a listener was designated,
// look at the registry". A designated listener rings it after taking its
// flag and its role (the order cmport's anchor relies on). The registry
// gives the times no meaning.
func RingDoorbell(reg *registry.Registry) error {
	now := []unix.Timespec{{Nsec: utimeNow}, {Nsec: utimeNow}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, reg.Path(), now, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("listen doorbell: utimensat %s: %w", reg.Path(), err)
	}
	return nil
}
