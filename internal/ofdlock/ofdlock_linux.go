package ofdlock

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// The lock types, as fcntl(2) has them; None is no lock (Holder).
const (
	Read  Type = unix.F_RDLCK
	Write Type = unix.F_WRLCK
	None  Type = unix.F_UNLCK
)

// Set takes a lock of type t on the bytes [off, off+n) through fd's open
// file description, without waiting (F_OFD_SETLK). n = 0 means from off to
// the end of the file and beyond. A lock of the description on those bytes
// is replaced (a read lock becomes a write lock, or back). It is made with
// a raw system call: it never blocks.
//
// Errors (raw, not wrapped): unix.EAGAIN when another open file description
// holds a conflicting lock (EACCES, which POSIX allows for a conflict, is
// reported as EAGAIN; EINTR is retried); otherwise the errno of fcntl(2),
// e.g. unix.EBADF, unix.EINVAL, unix.ENOLCK.
func Set(fd int, t Type, off, n int64) error {
	lk := unix.Flock_t{Type: int16(t), Whence: 0, Start: off, Len: n}
	for {
		err := fcntlRaw(fd, unix.F_OFD_SETLK, &lk)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EACCES {
			return unix.EAGAIN
		}
		return err
	}
}

// Unlock drops the locks fd's open file description holds on [off, off+n)
// (n = 0: to the end and beyond); bytes it holds no lock on are no error.
//
// Errors (raw): the errno of fcntl(2), e.g. unix.EBADF.
func Unlock(fd int, off, n int64) error {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: off, Len: n}
	for {
		err := fcntlRaw(fd, unix.F_OFD_SETLK, &lk)
		if err != unix.EINTR {
			return err
		}
	}
}

// Held reports whether another open file description holds a lock on
// [off, off+n) that would conflict with a lock of type t
// (F_OFD_GETLK): with Read, whether anybody holds a write lock there; with
// Write, whether anybody holds any lock. fd's own description's locks never
// count.
//
// Errors (raw): the errno of fcntl(2), e.g. unix.EBADF.
func Held(fd int, t Type, off, n int64) (bool, error) {
	typ, err := getlk(fd, t, off, n)
	return typ != None, err
}

// Holder returns the type of a lock another open file description holds on
// [off, off+n) (F_OFD_GETLK with a write probe, which every lock blocks):
// Write, Read, or None when there is none. Where one description holds a
// write lock no other holds any, so Read means read locks only.
//
// Errors (raw): the errno of fcntl(2), e.g. unix.EBADF.
func Holder(fd int, off, n int64) (Type, error) { return getlk(fd, Write, off, n) }

// getlk asks F_OFD_GETLK about a lock of type t on [off, off+n): the type
// of a conflicting lock of another description, or None.
func getlk(fd int, t Type, off, n int64) (Type, error) {
	lk := unix.Flock_t{Type: int16(t), Whence: 0, Start: off, Len: n}
	for {
		err := fcntlRaw(fd, unix.F_OFD_GETLK, &lk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return None, err
		}
		return Type(lk.Type), nil
	}
}

// Wait takes a lock of type t on [off, off+n) through fd's open file
// description, waiting for it (F_OFD_SETLKW) until it is granted or ctx
// ends. The wait blocks an OS thread, the caller's, locked to it meanwhile;
// the request is made through a duplicate of fd, so the lock, once
// granted, is the description's like the ones Set takes. Cancellation is
// real, and leaves no lock, no fd and no thread behind (see the package
// documentation for how and why). fd must stay open until Wait returns,
// and its description should hold no lock on the range yet: a lock granted
// just as ctx ended is given back with Unlock of the whole range.
//
// Errors: ctx.Err() when ctx ends first; otherwise the raw errno of the
// failing dup (F_DUPFD_CLOEXEC), open(2) of the O_PATH descriptor, or
// fcntl(2).
func Wait(ctx context.Context, fd int, t Type, off, n int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	pfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	returned := make(chan struct{}) // closed once the request returned
	kicked := make(chan struct{})   // closed once the canceller is done
	stop := context.AfterFunc(ctx, func() {
		defer close(kicked)
		cancelWait(pfd, dfd, tid, returned)
	})
	lk := unix.Flock_t{Type: int16(t), Whence: 0, Start: off, Len: n}
	for {
		err = unix.FcntlFlock(uintptr(dfd), unix.F_OFD_SETLKW, &lk)
		if err != unix.EINTR || ctx.Err() != nil {
			break
		}
	}
	close(returned)
	if stop() {
		return err // never cancelled: granted, or a real error
	}
	<-kicked // no signal is sent after this, and dfd is the O_PATH fd
	if err == nil {
		// Granted just before the cancel: give it back (through fd: dfd
		// is no longer the description).
		Unlock(fd, off, n)
	}
	return ctx.Err()
}

// cancelWait makes the lock request blocked in thread tid on dfd fail: it
// puts the O_PATH descriptor pfd in dfd's place, then signals the thread
// every millisecond until the request has returned.
func cancelWait(pfd, dfd, tid int, returned <-chan struct{}) {
	for {
		err := unix.Dup3(pfd, dfd, unix.O_CLOEXEC)
		if err != unix.EINTR && err != unix.EBUSY {
			break
		}
	}
	pid := unix.Getpid()
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	for {
		unix.Tgkill(pid, tid, unix.SIGURG)
		select {
		case <-returned:
			return
		case <-t.C:
			t.Reset(time.Millisecond)
		}
	}
}

// Open opens the lock file at path, with flag (unix.O_RDWR, with
// unix.O_CREAT|unix.O_EXCL and perm to create it) and always
// O_NOFOLLOW|O_CLOEXEC|O_NOCTTY|O_NONBLOCK (O_NONBLOCK so that a FIFO planted
// at the path cannot block it), and returns its fd and its fstat(2), taken
// through the fd. It trusts the file only if it is a regular file, owned by
// this process's effective uid or by root, and not writable by group or
// others; otherwise it closes it.
//
// Errors: the raw errno of open(2) (unix.ELOOP for a symbolic link,
// unix.EACCES, unix.ENOENT, unix.EEXIST, unix.EISDIR, ...) or fstat(2); an
// error matching ErrUntrusted saying why the file is not trusted.
func Open(path string, flag int, perm uint32) (int, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Open(path, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NOCTTY|unix.O_NONBLOCK, perm)
	if err != nil {
		return -1, st, err
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	if err := check(st.Mode, st.Uid, uint32(unix.Geteuid())); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}
