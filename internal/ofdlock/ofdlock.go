package ofdlock

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Type is the type of a lock request: Read (shared) or Write (exclusive).
// A read lock conflicts only with write locks of other open file
// descriptions, a write lock with every lock of theirs.
type Type int16

var (
	// ErrUntrusted: Open refused the file: not a regular file, owned by
	// another uid than this process's effective uid or root, or writable by
	// group or others. The error's text says which.
	ErrUntrusted = errors.New("lock file not trusted")

	// ErrNotSupported: OFD locks need Linux. Errors matching it match
	// unix.EOPNOTSUPP too.
	ErrNotSupported = fmt.Errorf("OFD locks need Linux: %w", unix.EOPNOTSUPP)
)

// untrusted is why a file is not trusted; it matches ErrUntrusted.
type untrusted struct{ why string }

func (e *untrusted) Error() string        { return e.why }
func (e *untrusted) Is(target error) bool { return target == ErrUntrusted }

// check is the trust rule of a lock file: a regular file, owned by euid or
// by root (who can do anything anyway), not writable by group or others.
func check(mode, uid, euid uint32) error {
	if mode&unix.S_IFMT != unix.S_IFREG {
		return &untrusted{fmt.Sprintf("not a regular file (mode %#o)", mode)}
	}
	if uid != euid && uid != 0 {
		return &untrusted{fmt.Sprintf("owned by uid %d, and this process runs as uid %d: only the owner's (or root's) file is trusted", uid, euid)}
	}
	if mode&0o022 != 0 {
		return &untrusted{fmt.Sprintf("mode %#o is writable by group or others (want 0600)", mode&0o7777)}
	}
	return nil
}
