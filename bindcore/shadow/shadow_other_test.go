//go:build !linux

package shadow

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindNotSupported(t *testing.T) {
	_, err := Bind(netip.MustParseAddrPort("127.0.0.1:0"))
	if !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("Bind off Linux: %v, want ErrNotSupported and EOPNOTSUPP", err)
	}
}
