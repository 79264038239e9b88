//go:build !linux

package rdmacm

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// onLockedThread runs fn on the caller's locked OS thread. Network
// namespaces are Linux's: with netns >= 0 it fails with an error matching
// ErrNotSupported and unix.EOPNOTSUPP.
func onLockedThread(netns int, fn func() error) error {
	if netns >= 0 {
		return fmt.Errorf("enter netns fd %d: %w (%w: network namespaces need Linux)", netns, ErrNotSupported, unix.EOPNOTSUPP)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return fn()
}
