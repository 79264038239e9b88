// Package ofdlock is rdmabind's one wrapper of Linux open file description
// locks (fcntl F_OFD_SETLK, F_OFD_SETLKW, F_OFD_GETLK): take, drop and test
// a byte-range lock, wait for one until a context ends, and open a lock file
// that may be trusted. The port registry (bindcore/registry: claims, waits,
// reclaims) and the listener election (bindcore's listen locks) both lock
// the registry file through it.
//
// An OFD lock belongs to the open file description, not to the process: two
// open(2)s of one file in one process conflict like two processes do, every
// dup of an fd shares its description's locks, and the kernel drops a lock
// when the last fd of its description is closed or its process dies
// (SIGKILL included). That is what makes a lock a liveness signal.
//
// Who locks which bytes of the registry file (the registry's header and
// record ranges; the listen locks past 2^62: port flags, the IPv4 and the
// hashed IPv6 election and standby locks, the rdma_cm locks) is specified
// once, in
// docs/registry.md, "Lock map".
//
// # Errors
//
// The functions are thin: Set, Unlock, Held and Holder return the raw errno of
// fcntl(2) (unix.EAGAIN for a conflict), with nothing allocated, so that a
// claim's fast path pays for one system call and no more; callers wrap it
// once, with what they were doing. Wait returns the errno of its failing
// call, or ctx.Err(). Open returns the errno of open(2) or fstat(2), or an
// error matching ErrUntrusted. Off Linux every function returns an error
// matching ErrNotSupported and unix.EOPNOTSUPP.
//
// # The wait, and why its cancellation works
//
// F_OFD_SETLKW blocks an OS thread in the kernel, and closing its fd does
// not wake it (the call holds its own reference to the file). Wait makes its
// request from a locked OS thread, through a duplicate of the caller's fd
// (the same description, so a granted lock is the caller's). To cancel, it:
//
//  1. replaces the duplicate, with dup3(2), by an O_PATH descriptor, on
//     which every lock request fails with EBADF; the fd number stays
//     occupied, so it cannot be reused under the blocked call;
//  2. sends the blocked thread SIGURG with tgkill(2), every millisecond until
//     the call has returned. Go installs its signal handlers with
//     SA_RESTART, so the kernel restarts the fcntl after the handler; the
//     restarted call looks the fd number up again, finds the O_PATH
//     descriptor, and fails with EBADF.
//
// SIGURG is the signal the Go runtime itself uses to preempt goroutines; it
// ignores stray ones. A program that watches SIGURG with signal.Notify sees
// these. A lock granted just as the wait was cancelled is dropped again, so
// a cancelled Wait leaves no lock and no fd behind.
//
// # Lifetime
//
// The package owns no fd beyond a call: the caller's fd stays the caller's,
// and Wait closes its duplicate and its O_PATH descriptor before it returns.
package ofdlock
