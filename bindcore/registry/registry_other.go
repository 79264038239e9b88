//go:build !linux

package registry

import (
	"context"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// The registry needs Linux (OFD locks, /proc). Elsewhere every call returns
// an error wrapping ErrNotSupported and unix.EOPNOTSUPP.

// Registry is an open registry file (Linux only).
type Registry struct{}

// Claim is a live claim (Linux only).
type Claim struct{}

func notSupported(op string) error {
	return fmt.Errorf("registry: %s: %w (%w: the registry needs Linux's OFD locks and /proc)", op, ErrNotSupported, unix.EOPNOTSUPP)
}

// Open returns ErrNotSupported.
func Open(Options) (*Registry, error) { return nil, notSupported("open") }

// CurrentNetns returns ErrNotSupported.
func CurrentNetns() (uint64, error) { return 0, notSupported("netns") }

// StartTime returns ErrNotSupported.
func StartTime(int) (uint64, error) { return 0, notSupported("start time") }

// Path returns "".
func (r *Registry) Path() string { return "" }

// Netns returns 0.
func (r *Registry) Netns() uint64 { return 0 }

// Records returns 0.
func (r *Registry) Records() int { return 0 }

// Close returns nil.
func (r *Registry) Close() error { return nil }

// Claim returns ErrNotSupported.
func (r *Registry) Claim(ClaimRequest) (*Claim, error) { return nil, notSupported("claim") }

// List returns ErrNotSupported.
func (r *Registry) List() ([]Record, error) { return nil, notSupported("list") }

// FindFreePort returns ErrNotSupported.
func (r *Registry) FindFreePort(netip.Addr, uint16, uint16) (uint16, error) {
	return 0, notSupported("find free port")
}

// Wait returns ErrNotSupported.
func (r *Registry) Wait(context.Context, Record) error { return notSupported("wait") }

// Record returns the zero Record.
func (c *Claim) Record() Record { return Record{} }

// SetRole returns ErrNotSupported.
func (c *Claim) SetRole(Role) error { return notSupported("set role") }

// Release returns nil.
func (c *Claim) Release() error { return nil }

// Close returns nil.
func (c *Claim) Close() error { return nil }

// OpenFile returns ErrNotSupported.
func (r *Registry) OpenFile() (int, error) { return -1, notSupported("open file") }
