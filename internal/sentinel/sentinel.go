package sentinel

import "golang.org/x/sys/unix"

// Error is a sentinel error that also matches its errno. Compare with
// errors.Is; the type is internal, packages export their sentinels as error.
type Error struct {
	text  string
	errno unix.Errno
}

// New returns a sentinel with the given text that matches errno (which must
// not be 0) through Unwrap.
func New(text string, errno unix.Errno) *Error {
	if errno == 0 {
		panic("sentinel: errno 0")
	}
	return &Error{text: text, errno: errno}
}

// Error returns the sentinel's text.
func (e *Error) Error() string { return e.text }

// Unwrap returns the errno, so that errors.Is and errors.As find it.
func (e *Error) Unwrap() error { return e.errno }

// Errno returns the errno the sentinel matches.
func (e *Error) Errno() unix.Errno { return e.errno }
