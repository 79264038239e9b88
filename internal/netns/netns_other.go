//go:build !linux

package netns

import "fmt"

func notSupported(op string) error { return fmt.Errorf("netns: %s: %w", op, ErrNotSupported) }

// Current returns an error matching ErrNotSupported.
func Current() (uint64, error) { return 0, notSupported("current") }

// Do returns an error matching ErrNotSupported; fn does not run.
func Do(nsfd int, fn func() error) error { return notSupported("do") }

// New returns an error matching ErrNotSupported.
func New() (int, error) { return -1, notSupported("new") }
