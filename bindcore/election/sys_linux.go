package election

import "golang.org/x/sys/unix"

// The Linux calls of the election besides its OFD locks (internal/ofdlock):
// the designated listener's accept4 and the doorbell's UTIME_NOW, named once
// so that the package builds elsewhere (sys_other.go). Here they are
// x/sys/unix's, unchanged.

const utimeNow = unix.UTIME_NOW

func accept4(fd int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
}
