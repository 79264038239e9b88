//go:build !linux

package bindcore

import "golang.org/x/sys/unix"

// Off Linux there are no OFD locks, inotify or accept4: each call fails with
// unix.EOPNOTSUPP. No Binder gets that far (registry.Open fails first with
// registry.ErrNotSupported); these exist so that the package builds.

const (
	fOFDSetLk  = 0
	fOFDSetLkW = 0
	fOFDGetLk  = 0
	oPath      = 0
	utimeNow   = 0
)

func ofdFcntl(fd, cmd int, lk *unix.Flock_t) error        { return unix.EOPNOTSUPP }
func gettid() int                                         { return 0 }
func dup3(oldfd, newfd, flags int) error                  { return unix.EOPNOTSUPP }
func tgkill(pid, tid int, sig unix.Signal) error          { return unix.EOPNOTSUPP }
func inotifyInit() (int, error)                           { return -1, unix.EOPNOTSUPP }
func inotifyWatchAttrib(fd int, path string) (int, error) { return -1, unix.EOPNOTSUPP }
func accept4(fd int) (int, unix.Sockaddr, error)          { return -1, nil, unix.EOPNOTSUPP }
