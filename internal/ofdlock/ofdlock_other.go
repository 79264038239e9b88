//go:build !linux

package ofdlock

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// The lock types (OFD locks need Linux: every function fails here).
const (
	Read  Type = 0
	Write Type = 1
	None  Type = 2
)

func notSupported(op string) error { return fmt.Errorf("ofdlock: %s: %w", op, ErrNotSupported) }

// Set returns an error matching ErrNotSupported.
func Set(fd int, t Type, off, n int64) error { return notSupported("set") }

// Unlock returns an error matching ErrNotSupported.
func Unlock(fd int, off, n int64) error { return notSupported("unlock") }

// Held returns an error matching ErrNotSupported.
func Held(fd int, t Type, off, n int64) (bool, error) { return false, notSupported("held") }

// Holder returns an error matching ErrNotSupported.
func Holder(fd int, off, n int64) (Type, error) { return None, notSupported("holder") }

// Wait returns an error matching ErrNotSupported.
func Wait(ctx context.Context, fd int, t Type, off, n int64) error { return notSupported("wait") }

// Open returns an error matching ErrNotSupported.
func Open(path string, flag int, perm uint32) (int, unix.Stat_t, error) {
	return -1, unix.Stat_t{}, notSupported("open")
}
