package cerrno

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Of returns err as a unix.Errno when it is one (cgo's two-value calls
// give a syscall.Errno, which is the same type), and EIO when a call
// failed without setting errno (err nil or errno 0).
func Of(err error) error {
	var e unix.Errno
	switch {
	case errors.As(err, &e) && e != 0:
		return e
	case err != nil && !errors.As(err, &e):
		return err
	}
	return unix.EIO
}
