package sentinel

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSentinelMatchesItselfAndErrno(t *testing.T) {
	a := New("a", unix.ENETDOWN)
	b := New("b", unix.ENETDOWN)
	err := fmt.Errorf("op input: %w: detail: %w", a, unix.ENOENT)
	if !errors.Is(err, a) || !errors.Is(err, unix.ENETDOWN) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("%v does not match its sentinel, errno and cause", err)
	}
	if errors.Is(err, b) || errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatalf("%v matches another sentinel or errno", err)
	}
	var errno unix.Errno
	if !errors.As(err, &errno) || errno != unix.ENETDOWN {
		t.Fatalf("errors.As gives %v, want the sentinel's ENETDOWN first", errno)
	}
	if err.Error() != "op input: a: detail: no such file or directory" {
		t.Fatalf("text %q", err)
	}
	if a.Errno() != unix.ENETDOWN {
		t.Fatal(a.Errno())
	}
}
