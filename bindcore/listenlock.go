package bindcore

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The listen locks: OFD byte-range locks on the registry file, far past its
// end, that elect one designated listener per address and port and tell
// binders where a listener is. The registry's own locks cover the header
// and the records (at most 128 + 128 × 65536 bytes); these ranges start at
// 2^62, so they never meet them, and they change no byte of the file. Like
// the registry's, they belong to an open file description, and the kernel
// drops them when it is closed or its process dies (SIGKILL included). A
// registry file is one user's in one network namespace, which is exactly
// the scope of a port: the locks need no key for either.
//
// Offsets (docs/listen.md):
//
//	2^62 + port                               listener flag of a port: a read lock, held by every designated listener of the port
//	2^62 + 2^48 + 2·(ipv4<<16 | port) + k     election (k=0) and standby (k=1) lock of an IPv4 address and port
//	2^62 + 2^52 + 2·(fnv64(ipv6, port) mod 2^50) + k   the same for IPv6 (zones dropped, as the registry drops them)
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

// lockFile is an open file description of the registry file through which
// listen locks are taken; every listener has its own (OFD locks of one
// description do not conflict with each other), so do probes.
type lockFile struct {
	path string
	mu   sync.Mutex // guards fd against close while a waiter is set up
	fd   int
}

// openLockFile opens the registry file at path for listen locks. The file
// must be what registry.Open trusts: a regular file of this user (or root),
// not writable by group or others.
func openLockFile(path string) (*lockFile, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("listen locks: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen locks: fstat %s: %w", path, err)
	}
	euid := uint32(unix.Geteuid())
	if st.Mode&unix.S_IFMT != unix.S_IFREG || (st.Uid != euid && st.Uid != 0) || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("listen locks: %s: not a registry file of uid %d (mode %#o, owner %d): %w", path, euid, st.Mode, st.Uid, unix.EACCES)
	}
	return &lockFile{path: path, fd: fd}, nil
}

func flockT(typ int16, off int64) unix.Flock_t {
	return unix.Flock_t{Type: typ, Whence: int16(unix.SEEK_SET), Start: off, Len: 1}
}

// try takes a lock (unix.F_WRLCK or unix.F_RDLCK) at off without waiting; it
// reports false when another open file description holds a conflicting one.
func (l *lockFile) try(typ int16, off int64) (bool, error) {
	lk := flockT(typ, off)
	for {
		err := ofdFcntl(l.fd, fOFDSetLk, &lk)
		switch err {
		case nil:
			return true, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN, unix.EACCES:
			return false, nil
		}
		return false, fmt.Errorf("listen locks: %s: F_OFD_SETLK at %#x: %w", l.path, off, err)
	}
}

// unlock drops the lock at off.
func (l *lockFile) unlock(off int64) error {
	lk := flockT(unix.F_UNLCK, off)
	if err := ofdFcntl(l.fd, fOFDSetLk, &lk); err != nil {
		return fmt.Errorf("listen locks: %s: unlock %#x: %w", l.path, off, err)
	}
	return nil
}

// held reports whether another open file description holds a lock at off
// (any lock: the probe asks for a write lock, which every lock blocks).
func (l *lockFile) held(off int64) (bool, error) {
	lk := flockT(unix.F_WRLCK, off)
	if err := ofdFcntl(l.fd, fOFDGetLk, &lk); err != nil {
		return false, fmt.Errorf("listen locks: %s: F_OFD_GETLK at %#x: %w", l.path, off, err)
	}
	return lk.Type != unix.F_UNLCK, nil
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

// wait takes a write lock at off, waiting for it (F_OFD_SETLKW) until ctx
// ends. The wait blocks an OS thread; cancellation is real (as
// registry.Wait's): the waiting thread's request is made on a duplicate of
// the description, which cancel replaces with dup3(2) by an O_PATH fd (on
// which the restarted request fails with EBADF) before it sends the thread
// SIGURG (the Go runtime's own preemption signal; its handler is
// SA_RESTART, so the kernel restarts the fcntl, which looks the fd up
// again). The lock, once granted, belongs to the description l, like the
// ones try takes.
//
// Errors: ctx.Err() when ctx ends first; an errno otherwise.
func (l *lockFile) wait(ctx context.Context, off int64) error {
	l.mu.Lock()
	if l.fd < 0 {
		l.mu.Unlock()
		return fmt.Errorf("listen locks: %s: closed: %w", l.path, unix.EBADF)
	}
	// A dup shares the open file description: a lock granted through it
	// is l's.
	dfd, err := unix.FcntlInt(uintptr(l.fd), unix.F_DUPFD_CLOEXEC, 0)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("listen locks: %s: dup: %w", l.path, err)
	}
	pfd, err := unix.Open("/", oPath|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(dfd)
		return fmt.Errorf("listen locks: open O_PATH: %w", err)
	}
	defer unix.Close(pfd)
	defer unix.Close(dfd)
	var tid int
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		tid = gettid()
		close(started)
		lk := flockT(unix.F_WRLCK, off)
		var err error
		for {
			err = ofdFcntl(dfd, fOFDSetLkW, &lk)
			if err != unix.EINTR {
				break
			}
			if ctx.Err() != nil {
				break
			}
		}
		runtime.UnlockOSThread()
		done <- err
	}()
	<-started
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("listen locks: %s: F_OFD_SETLKW at %#x: %w", l.path, off, err)
		}
		return nil
	case <-ctx.Done():
	}
	// Cancel: make the fd one no lock can be taken through, then kick the
	// thread until its request has failed (or been granted meanwhile).
	for {
		err := dup3(pfd, dfd, unix.O_CLOEXEC)
		if err != unix.EINTR && err != unix.EBUSY {
			break
		}
	}
	pid := unix.Getpid()
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for {
		tgkill(pid, tid, unix.SIGURG)
		select {
		case err := <-done:
			if err == nil {
				// Granted just before the cancel: give it back.
				l.mu.Lock()
				if l.fd >= 0 {
					l.unlock(off)
				}
				l.mu.Unlock()
			}
			return ctx.Err()
		case <-t.C:
			t.Reset(time.Millisecond)
		}
	}
}
