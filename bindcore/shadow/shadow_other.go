//go:build !linux

package shadow

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// notSupported is the error of every call that needs Linux.
func notSupported(op string, ap netip.AddrPort) error {
	return fmt.Errorf("shadow %s %s: %w (%w: shadows need Linux's SO_REUSEPORT rules)", op, ap, ErrNotSupported, unix.EOPNOTSUPP)
}

// Bind returns an error matching ErrNotSupported and unix.EOPNOTSUPP off
// Linux.
func Bind(ap netip.AddrPort) (*Socket, error) { return nil, notSupported("bind", ap) }

// Cookie returns an error matching ErrNotSupported and unix.EOPNOTSUPP off
// Linux.
func (s *Socket) Cookie() (uint64, error) { return 0, notSupported("cookie", s.addr) }
