package cerrno

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOf(t *testing.T) {
	other := errors.New("other")
	for _, tc := range []struct {
		in   error
		want error
	}{
		{syscall.ENODEV, unix.ENODEV},
		{fmt.Errorf("wrapped: %w", unix.EADDRINUSE), unix.EADDRINUSE},
		{syscall.Errno(0), unix.EIO},
		{nil, unix.EIO},
		{other, other},
	} {
		if got := Of(tc.in); got != tc.want {
			t.Errorf("Of(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
