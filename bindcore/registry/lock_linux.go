package registry

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Open file description locks (fcntl F_OFD_*): owned by the open file
// description, not by the process, so two open(2)s of the file in one
// process conflict with each other like two processes do, and a lock goes
// away exactly when the last fd of its description is closed (or its process
// dies). That makes a lock a claim's liveness: one open(2) per claim.

// ofdSet takes (typ F_RDLCK or F_WRLCK) or drops (F_UNLCK) the lock on
// [off, off+n) through fd. With wait it blocks (F_OFD_SETLKW) until it gets
// the lock; without, a conflicting lock gives unix.EAGAIN.
func ofdSet(fd int, typ int16, off, n int64, wait bool) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: n}
	for {
		var err error
		if wait {
			err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLKW, &lk)
		} else {
			err = fcntlRaw(fd, unix.F_OFD_SETLK, &lk)
		}
		if err == unix.EINTR {
			continue
		}
		if err == unix.EACCES { // POSIX allows EACCES for a conflict
			err = unix.EAGAIN
		}
		return err
	}
}

// fcntlRaw is fcntl(2) without telling the Go scheduler: for the calls that
// never block (F_OFD_SETLK, F_OFD_GETLK), which then cost 30-70 ns less. On
// 32-bit systems, where unix.Flock_t goes with fcntl64(2), it is
// unix.FcntlFlock.
func fcntlRaw(fd int, cmd int, lk *unix.Flock_t) error {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		return unix.FcntlFlock(uintptr(fd), cmd, lk)
	}
	_, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(unsafe.Pointer(lk)))
	if e != 0 {
		return e
	}
	return nil
}

// ofdHeld reports whether another open file description holds a lock on
// [off, off+n) that conflicts with typ: with F_RDLCK, whether anybody holds a
// write lock (a claim); with F_WRLCK, whether anybody holds any lock.
func ofdHeld(fd int, typ int16, off, n int64) (bool, error) {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: n}
	for {
		err := fcntlRaw(fd, unix.F_OFD_GETLK, &lk)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		return lk.Type != unix.F_UNLCK, nil
	}
}

func isBusy(err error) bool { return errors.Is(err, unix.EAGAIN) }

// Lock ranges: the registry lock is the header's byte range, a slot's lock
// its record's byte range.
func slotRange(slot int) (int64, int64) { return int64(recOff(slot)), RecordSize }
