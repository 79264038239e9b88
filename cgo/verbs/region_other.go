//go:build !linux

package verbs

import "golang.org/x/sys/unix"

// mmapFlags maps a Region private and anonymous: MAP_POPULATE is Linux's.
// (Off Linux no device can register it: the constructors of this package
// fail with ErrNotSupported without cgo, and libibverbs is Linux's.)
const mmapFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS

// reserveFlags maps a reserved Region (ReserveRegion): nothing populated.
const reserveFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS

// populate faults b's pages in, page by page.
func populate(b []byte) { touch(b) }

func noHugePages([]byte) {}
