// Package registry is rdmabind's cross-process port registry: one file in
// shared memory per network namespace, in which every process of the
// namespace records the RDMA address and port each of its sockets is bound
// to, and checks a new bind against everybody else's.
//
// The kernel cannot arbitrate this itself: rdma_cm's port space knows
// nothing of WSPBind's sharing (several sockets of one user on one port),
// and a process that dies must not leave its ports taken. The registry does
// both. It is the first thing a bind consults; the kernel TCP reservation
// (package bindcore/shadow) and rdma_cm come after it.
//
// # Use
//
// Open the registry of the calling thread's network namespace (a file
// named rdmabind-netns-<inode>-uid-<uid>.reg in DefaultDir(), this user's
// own directory, created on first use), and
// Claim an address and port for each socket:
//
//	reg, err := registry.Open(registry.Options{})
//	c, err := reg.Claim(registry.ClaimRequest{Addr: addr, Port: 5000, SocketID: cookie})
//	...
//	c.Release()
//
// Claims of one user share an address and port, in one process and across
// processes, as SO_REUSEPORT sockets do; a claim that overlaps a live claim
// of another user, or an Exclusive one, fails with ErrConflict (matching
// unix.EADDRINUSE) naming the holder's pid and uid; a full table gives
// ErrFull (matching unix.ENOBUFS). bindcore turns them into the spec's
// WSAEADDRINUSE and WSAENOBUFS. Overlap follows the kernel's TCP rules: a wildcard covers
// every address of its family, and a dual-stack IPv6 wildcard IPv4 as
// well. For port 0, FindFreePort proposes a port no live claim holds; the
// caller claims it and tries again if it lost a race. List shows the live
// claims, and `rdmabind ls` prints them.
//
// # Liveness
//
// A claim is live exactly while its lock is held: an OFD write lock
// (F_OFD_SETLK) on its record's byte range, held through its Registry's lock
// description (one open file description of the file for all the claims of
// a Registry, so that the kernel's list of the file's locks, which every
// fcntl walks, stays short); the kernel drops that lock when the claim is
// released, when the Registry closes, or when its process dies, SIGKILL
// included. A Registry keeps the locks of a few released slots (free
// records) for its next claims, which then make no system call. A record marked used whose lock can be taken is
// therefore stale: whoever meets it while checking for a conflict,
// listing, allocating or waiting reclaims it. Nothing needs to run after a
// crash, and no pid is ever trusted for liveness (pids are reused); the
// pid, the process start time, the uid, the socket id and the namespace
// inode stay in the record to tell people who holds a port. Every lock is
// taken through internal/ofdlock; which bytes each covers is in
// docs/registry.md, "Lock map".
//
// Wait blocks until a given claim ends, however it ends: it waits for a
// read lock on the claim's record (F_OFD_SETLKW), which the kernel grants the
// moment the claim's write lock goes. A standby listener waits so on the
// designated listener's record to take over when it dies. Wait is
// cancellable through its context.
//
// # Concurrent claims
//
// A claim takes no registry-wide lock: its one system call, at most, is its
// own record's lock. It looks its port up in the file's port index (an
// open-addressing hash table of the claims by port, after the records),
// publishes its record as pending and its index entry, takes a ticket (an
// atomic fetch-and-add on a counter in the file's header), checks the other
// records of its port, and commits. Its cost does not grow with the number
// of live claims of other ports. Of two conflicting claims made at once, the
// one with the later ticket backs out; the protocol and why it is exact
// (no two conflicting claims live at once, exactly one winner of a round of
// conflicting claims, nothing lost to a SIGKILL at any step) are in
// docs/registry.md.
//
// # Lifetime
//
// A Registry owns its file descriptors and its mapping of the file; Close
// releases the claims made through it, cancels its pending Waits and closes
// everything, and is safe to call twice. A Claim owns its lock; Release
// (or Close) is safe twice. A Registry that becomes unreachable without
// Close has its descriptors closed by a cleanup, as a safety net only: its
// claims then die like those of a killed process, stale until reclaimed.
//
// All methods are safe for concurrent use. The registry needs Linux; on
// other systems Open returns an error wrapping ErrNotSupported.
//
// The file format, the locking protocol, the sharing rules and the
// security checks are specified in docs/registry.md. The format's encoder
// and decoder (Encode, Decode and friends) are pure functions of bytes.
package registry
