//go:build !linux

package qp

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// dialTCPFrom needs Linux (a SO_REUSEPORT socket sharing the shadow's
// port): elsewhere it fails with an error matching ErrNotSupported and
// unix.EOPNOTSUPP.
func dialTCPFrom(ctx context.Context, local, remote netip.AddrPort) (net.Conn, error) {
	return nil, fmt.Errorf("rendezvous dial %v -> %v: %w (%w: needs Linux)", local, remote, ErrNotSupported, unix.EOPNOTSUPP)
}
