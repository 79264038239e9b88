//go:build !linux

package steer

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where Open pins groups on Linux.
const DefaultRoot = "/sys/fs/bpf/rdmabind"

// Options tunes Open.
type Options struct {
	Root string
}

// Group is a steering group. Off Linux, Open never returns one.
type Group struct{ key Key }

var errPlatform = fmt.Errorf("listener steering needs Linux: %w (%w)", ErrNotSupported, unix.EOPNOTSUPP)

// Open returns an error matching ErrNotSupported (and unix.EOPNOTSUPP) off
// Linux.
func Open(k Key, opts *Options) (*Group, error) { return nil, opError("open", k, errPlatform) }

// KeyOf returns an error matching ErrNotSupported off Linux.
func KeyOf(s Socket) (Key, error) { return Key{}, fmt.Errorf("steer key: %w", errPlatform) }

// NetNS returns an error matching ErrNotSupported off Linux.
func NetNS() (uint64, error) { return 0, errPlatform }

// CloseIdle does nothing off Linux.
func CloseIdle() error { return nil }

// WatchProcess returns an error matching ErrNotSupported off Linux.
func WatchProcess(pid int) (Watch, error) { return nil, errPlatform }

func (g *Group) Key() Key                                              { return g.key }
func (g *Group) Dir() string                                           { return "" }
func (g *Group) Attach(s Socket) error                                 { return errPlatform }
func (g *Group) Listen(s Socket, backlog int) error                    { return errPlatform }
func (g *Group) Designate(s Socket) error                              { return errPlatform }
func (g *Group) Standby(s Socket) error                                { return errPlatform }
func (g *Group) Status() (Status, error)                               { return Status{}, errPlatform }
func (g *Group) Close() error                                          { return nil }
func (g *Group) Release() (bool, error)                                { return false, nil }
func (g *Group) TakeOver(ctx context.Context, w Watch, s Socket) error { return errPlatform }
