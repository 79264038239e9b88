package bindcore

import "golang.org/x/sys/unix"

// The Linux system calls of listening (the election's OFD locks and their
// cancellable wait, the anchor's inotify doorbell, the designated listener's
// accept4), named once so that the package builds elsewhere (sys_other.go).
// Here they are x/sys/unix's, unchanged.

const (
	fOFDSetLk  = unix.F_OFD_SETLK
	fOFDSetLkW = unix.F_OFD_SETLKW
	fOFDGetLk  = unix.F_OFD_GETLK
	oPath      = unix.O_PATH
	utimeNow   = unix.UTIME_NOW
)

func ofdFcntl(fd, cmd int, lk *unix.Flock_t) error { return unix.FcntlFlock(uintptr(fd), cmd, lk) }

func gettid() int                                { return unix.Gettid() }
func dup3(oldfd, newfd, flags int) error         { return unix.Dup3(oldfd, newfd, flags) }
func tgkill(pid, tid int, sig unix.Signal) error { return unix.Tgkill(pid, tid, sig) }

func inotifyInit() (int, error) { return unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC) }

func inotifyWatchAttrib(fd int, path string) (int, error) {
	return unix.InotifyAddWatch(fd, path, unix.IN_ATTRIB)
}

func accept4(fd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
}
