// Package netns is rdmabind's one helper for network namespaces: which
// namespace the calling goroutine's OS thread is in (Current), running a
// function on a thread inside another namespace (Do), and making a new
// namespace (New).
//
// A network namespace belongs to a thread, not to a process: setns(2) and
// unshare(2) move the calling thread only. So every function here works on
// a locked OS thread, and Do and New on a thread of their own, which they
// return to its namespace afterwards; when that fails the thread is
// discarded (its goroutine exits locked, and the Go runtime ends the thread
// rather than hand it, still in the other namespace, to another goroutine).
// The caller's thread never changes namespace.
//
// Errors are the errno of the failing call, wrapped with the call. Off
// Linux every function returns an error matching ErrNotSupported and
// unix.EOPNOTSUPP.
package netns
