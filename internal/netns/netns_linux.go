package netns

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// threadSelf names the calling thread's network namespace (Linux 3.17+).
const threadSelf = "/proc/thread-self/ns/net"

// Current returns the inode number of the network namespace of the calling
// goroutine's OS thread, which it locks for the call. The thread, not the
// process: /proc/self/ns/net names the main thread's namespace only. A
// goroutine that has not moved its locked thread elsewhere gets the
// process's namespace. On kernels without /proc/thread-self it reads
// /proc/self/task/<tid>/ns/net.
//
// Errors: the errno of stat(2), wrapped with the path.
func Current() (uint64, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st unix.Stat_t
	err := unix.Stat(threadSelf, &st)
	if err != nil {
		p := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err2 := unix.Stat(p, &st); err2 != nil {
			return 0, fmt.Errorf("stat %s: %w", threadSelf, err)
		}
	}
	return st.Ino, nil
}

// Do runs fn on an OS thread inside the network namespace nsfd (an fd of a
// /proc/<pid>/ns/net file, or of a bind mount of one), and returns fn's
// result. The thread is a new goroutine's, locked to it: it enters nsfd,
// runs fn, and goes back to its own namespace; if it cannot go back, it is
// discarded (see the package documentation). fn must not start goroutines
// that rely on the namespace: they run on other threads.
//
// Errors: fn's; or the errno of opening the thread's own namespace or of
// setns(2) into nsfd (unix.EBADF for a bad fd, unix.EINVAL for an fd that
// is not a network namespace, unix.EPERM without CAP_SYS_ADMIN), wrapped.
func Do(nsfd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open(threadSelf, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open %s: %w", threadSelf, err)
			return
		}
		// own is closed before the result is sent: once Do returns, it
		// holds no descriptor.
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			unix.Close(own)
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns netns fd %d: %w", nsfd, err)
			return
		}
		ferr := fn()
		back := unix.Setns(own, unix.CLONE_NEWNET) == nil
		unix.Close(own)
		if back {
			runtime.UnlockOSThread()
		}
		// Else the thread stays in nsfd: it stays locked, and the runtime
		// ends it when this goroutine returns. fn's result does not
		// depend on which thread runs next.
		errc <- ferr
	}()
	return <-errc
}

// New makes a new network namespace and returns an fd of it (O_CLOEXEC),
// which the caller owns; the namespace lives while an fd, a bind mount or a
// process holds it. No thread stays in it: the one that made it goes back
// to its own namespace, or is discarded.
//
// Errors: the errno of unshare(2) (unix.EPERM without CAP_SYS_ADMIN) or of
// opening the namespaces, wrapped.
func New() (int, error) {
	type result struct {
		fd  int
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open(threadSelf, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			rc <- result{-1, fmt.Errorf("open %s: %w", threadSelf, err)}
			return
		}
		// own is closed before the result is sent, as in Do.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			unix.Close(own)
			runtime.UnlockOSThread()
			rc <- result{-1, fmt.Errorf("unshare CLONE_NEWNET: %w", err)}
			return
		}
		fd, err := unix.Open(threadSelf, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			err = fmt.Errorf("open %s in the new namespace: %w", threadSelf, err)
			fd = -1
		}
		back := unix.Setns(own, unix.CLONE_NEWNET) == nil
		unix.Close(own)
		if back {
			runtime.UnlockOSThread()
		} // else the thread is discarded, as in Do
		rc <- result{fd, err}
	}()
	r := <-rc
	return r.fd, r.err
}
