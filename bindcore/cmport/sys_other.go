//go:build !linux

package cmport

import "golang.org/x/sys/unix"

// Off Linux there is no inotify: the anchor polls (as it does when inotify
// fails on Linux). No Anchor gets that far (the registry does not open off
// Linux, registry.ErrNotSupported); these exist so that the package builds.

func inotifyInit() (int, error) { return -1, unix.EOPNOTSUPP }

func inotifyWatchAttrib(fd int, path string) (int, error) { return -1, unix.EOPNOTSUPP }
