//go:build !linux

package verbs

import "golang.org/x/sys/unix"

// mmapFlags maps a Region private and anonymous: MAP_POPULATE is Linux's.
// (Off Linux no device can register it: the constructors of this package
// fail with ErrNotSupported without cgo, and libibverbs is Linux's.)
const mmapFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS
