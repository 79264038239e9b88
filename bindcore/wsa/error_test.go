package wsa

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCodesMatchSentinelAndErrno(t *testing.T) {
	want := map[Code]struct {
		name     string
		num      int
		errno    unix.Errno
		sentinel error
	}{
		WSAEFAULT:        {"WSAEFAULT", 10014, unix.EFAULT, ErrFault},
		WSAEINVAL:        {"WSAEINVAL", 10022, unix.EINVAL, ErrInvalid},
		WSAENOTSOCK:      {"WSAENOTSOCK", 10038, unix.ENOTSOCK, ErrNotSock},
		WSAEADDRINUSE:    {"WSAEADDRINUSE", 10048, unix.EADDRINUSE, ErrAddrInUse},
		WSAEADDRNOTAVAIL: {"WSAEADDRNOTAVAIL", 10049, unix.EADDRNOTAVAIL, ErrAddrNotAvail},
		WSAENETDOWN:      {"WSAENETDOWN", 10050, unix.ENETDOWN, ErrNetDown},
		WSAENOBUFS:       {"WSAENOBUFS", 10055, unix.ENOBUFS, ErrNoBufs},
	}
	if len(Codes()) != len(want) {
		t.Fatalf("Codes() has %d codes, want %d", len(Codes()), len(want))
	}
	for _, c := range Codes() {
		w := want[c]
		if c.String() != w.name || int(c) != w.num || c.Errno() != w.errno {
			t.Errorf("%d: got %s %d %v, want %s %d %v", int(c), c, int(c), c.Errno(), w.name, w.num, w.errno)
		}
		err := fmt.Errorf("outer: %w", New(c, "bind", "10.0.0.9:5000", "because %d", 1))
		if !errors.Is(err, w.sentinel) || !errors.Is(err, w.errno) {
			t.Errorf("%s: wrapped error does not match its sentinel and errno", c)
		}
		for _, other := range Codes() {
			if other != c && (errors.Is(err, want[other].sentinel) || errors.Is(err, want[other].errno)) {
				t.Errorf("%s matches %s", c, other)
			}
		}
		if got, ok := CodeOf(err); !ok || got != c {
			t.Errorf("CodeOf = %v %v", got, ok)
		}
	}
}

func TestErrorMessageAndCause(t *testing.T) {
	err := Wrap(WSAEADDRNOTAVAIL, "bind", "10.0.0.9:5000", unix.ENODEV, "10.0.0.9 is not an address of this host")
	const want = "WSAEADDRNOTAVAIL (10049): bind 10.0.0.9:5000: 10.0.0.9 is not an address of this host: no such device"
	if err.Error() != want {
		t.Fatalf("got %q\nwant %q", err.Error(), want)
	}
	if !errors.Is(err, unix.ENODEV) || !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Fatal("cause or errno not matched")
	}
	if errors.Is(err, unix.Errno(0)) {
		t.Fatal("matched errno 0")
	}
	if s := Code(1).String(); s != "WSA(1)" {
		t.Fatalf("unknown code: %q", s)
	}
	if _, ok := CodeOf(unix.EINVAL); ok {
		t.Fatal("CodeOf a plain errno")
	}
}
