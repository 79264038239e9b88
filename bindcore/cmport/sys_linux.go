package cmport

import "golang.org/x/sys/unix"

// The anchor's inotify doorbell watch, named once so that the package
// builds elsewhere (sys_other.go). Here they are x/sys/unix's, unchanged.

func inotifyInit() (int, error) { return unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC) }

func inotifyWatchAttrib(fd int, path string) (int, error) {
	return unix.InotifyAddWatch(fd, path, unix.IN_ATTRIB|unix.IN_DONT_FOLLOW)
}
