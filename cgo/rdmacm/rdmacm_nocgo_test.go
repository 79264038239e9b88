//go:build !cgo

package rdmacm

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNoCgo(t *testing.T) {
	ec, err := NewEventChannel()
	if ec != nil || !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("NewEventChannel() = %v, %v; want nil and ErrNotSupported, EOPNOTSUPP", ec, err)
	}
	t.Log(err)
}
