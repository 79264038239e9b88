package rdmacm

import (
	"runtime"

	"github.com/rdmabind/rdmabind/internal/netns"
)

// onLockedThread runs fn on a locked OS thread. With nsfd < 0 that is the
// caller's own thread, in whatever namespace it is. With nsfd >= 0 it is a
// thread inside the network namespace nsfd, which internal/netns.Do
// provides (and returns to its own namespace, or discards).
func onLockedThread(nsfd int, fn func() error) error {
	if nsfd < 0 {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return fn()
	}
	return netns.Do(nsfd, fn)
}
