package rdmacm

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// onLockedThread runs fn on a locked OS thread. With netns < 0 that is the
// caller's own thread, in whatever namespace it is. With netns >= 0 it is the
// thread of a new goroutine that enters netns for the call and then returns
// to its own namespace; if it cannot, the goroutine exits locked so that the
// runtime ends the thread rather than hand it to another goroutine.
func onLockedThread(netns int, fn func() error) error {
	if netns < 0 {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open /proc/thread-self/ns/net: %w", err)
			return
		}
		defer unix.Close(own)
		if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns netns fd %d: %w", netns, err)
			return
		}
		ferr := fn()
		if unix.Setns(own, unix.CLONE_NEWNET) != nil {
			// The thread stays in netns: leave it locked, the runtime
			// discards it when this goroutine returns. fn's result is
			// not affected by which thread runs next.
			errc <- ferr
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
