//go:build linux

package ofdlock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// fcntlRaw is fcntl(2) without telling the Go scheduler: for the calls that
// never block (F_OFD_SETLK, F_OFD_GETLK), which then cost 30-70 ns less
// (about 1 µs less under TCG). On 32-bit systems, where unix.Flock_t goes
// with fcntl64(2), it is unix.FcntlFlock.
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
