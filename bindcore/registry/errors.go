package registry

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/sentinel"
)

// Sentinels. Errors returned by this package wrap one of them (match with
// errors.Is) together with the path or the address, the operation and,
// where there is one, the errno of the failing call (which errors.Is
// matches too). ErrConflict and ErrFull always match an errno
// (unix.EADDRINUSE, unix.ENOBUFS); which spec (WSA) code they stand for is
// bindcore's business (bindcore/errmap.go), not this package's.
var (
	// ErrConflict: the port is held by a live claim the new one conflicts
	// with (see Conflicts), or an earlier concurrent claim of it won. The
	// message names the holder's pid, uid, address, role and socket.
	// Matches unix.EADDRINUSE.
	ErrConflict error = sentinel.New("conflicting claim", unix.EADDRINUSE)

	// ErrFull: every record of the registry holds a live claim (Claim), or
	// live claims hold every port of the range (FindFreePort). Matches
	// unix.ENOBUFS.
	ErrFull error = sentinel.New("registry full", unix.ENOBUFS)

	// ErrCorrupt: the file is not a registry of this format (wrong magic,
	// bad header checksum, wrong size, truncated), or a record is corrupt
	// while its claim is live, so the conflict check cannot be trusted.
	ErrCorrupt = errors.New("registry corrupt")

	// ErrVersion: the file is a registry of another format version, written
	// by another rdmabind release that may still be running in this network
	// namespace. It is never rewritten.
	ErrVersion = errors.New("registry version mismatch")

	// ErrPermission: the file may not be trusted or opened: a symbolic
	// link, not a regular file, owned by another uid (other than root), or
	// writable by group or others; or open(2) said EACCES/EPERM; or no
	// directory of this user could be trusted or made (DefaultDir).
	ErrPermission = errors.New("registry file not trusted")

	// ErrClosed: the Registry was closed (or, for a Claim, released).
	ErrClosed = errors.New("registry closed")

	// ErrInvalid: a request the registry cannot store: port 0, an invalid
	// address, an unknown role or share policy, a record from elsewhere.
	ErrInvalid = errors.New("invalid registry request")

	// ErrNotSupported: the registry needs Linux (OFD locks, /proc). Errors
	// wrapping it match unix.EOPNOTSUPP too.
	ErrNotSupported = errors.New("registry not supported on this platform")
)
