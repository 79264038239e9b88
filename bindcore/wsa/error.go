package wsa

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Code is a Windows Sockets error code as WSPBind returns it at lpErrno.
type Code int

// The codes of the WSPBind contract. The numbers are those of winsock2.h.
const (
	WSAEFAULT        Code = 10014
	WSAEINVAL        Code = 10022
	WSAENOTSOCK      Code = 10038
	WSAEADDRINUSE    Code = 10048
	WSAEADDRNOTAVAIL Code = 10049
	WSAENETDOWN      Code = 10050
	WSAENOBUFS       Code = 10055
)

var codeInfo = map[Code]struct {
	name  string
	errno unix.Errno
}{
	WSAEFAULT:        {"WSAEFAULT", unix.EFAULT},
	WSAEINVAL:        {"WSAEINVAL", unix.EINVAL},
	WSAENOTSOCK:      {"WSAENOTSOCK", unix.ENOTSOCK},
	WSAEADDRINUSE:    {"WSAEADDRINUSE", unix.EADDRINUSE},
	WSAEADDRNOTAVAIL: {"WSAEADDRNOTAVAIL", unix.EADDRNOTAVAIL},
	WSAENETDOWN:      {"WSAENETDOWN", unix.ENETDOWN},
	WSAENOBUFS:       {"WSAENOBUFS", unix.ENOBUFS},
}

// Codes lists every code of the contract, in numeric order.
func Codes() []Code {
	return []Code{WSAEFAULT, WSAEINVAL, WSAENOTSOCK, WSAEADDRINUSE, WSAEADDRNOTAVAIL, WSAENETDOWN, WSAENOBUFS}
}

// String returns the spec name, "WSAEFAULT", or "WSA(n)" for a code outside
// the contract.
func (c Code) String() string {
	if i, ok := codeInfo[c]; ok {
		return i.name
	}
	return fmt.Sprintf("WSA(%d)", int(c))
}

// Errno returns the Linux errno the code matches, or 0 for a code outside the
// contract.
func (c Code) Errno() unix.Errno {
	return codeInfo[c].errno
}

// Error is a spec error: which code, for which operation and input, and why.
type Error struct {
	Code  Code   // the WSA code
	Op    string // the operation: "bind", "resolve", "listen", "parse"...
	Input string // the input it is about: an address, "namelen", a socket id
	Msg   string // what was wrong, naming the input and what was expected
	Err   error  // the underlying cause, if any (an errno from the kernel, say)
}

// New returns an *Error. Msg is formatted with args.
func New(code Code, op, input, msg string, args ...any) *Error {
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	return &Error{Code: code, Op: op, Input: input, Msg: msg}
}

// Wrap returns an *Error with cause as its underlying error.
func Wrap(code Code, op, input string, cause error, msg string, args ...any) *Error {
	e := New(code, op, input, msg, args...)
	e.Err = cause
	return e
}

// Error formats as "WSAEADDRNOTAVAIL (10049): bind 10.0.0.9:5000: 10.0.0.9 is
// not an address of this host: <cause>".
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d)", e.Code, int(e.Code))
	if e.Op != "" || e.Input != "" {
		b.WriteString(": ")
		b.WriteString(strings.TrimSpace(e.Op + " " + e.Input))
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's code, another *Error of
// the same code, or e's errno.
func (e *Error) Is(target error) bool {
	switch t := target.(type) {
	case *Error:
		return t.Code == e.Code
	case unix.Errno:
		return t != 0 && t == e.Code.Errno()
	}
	return false
}

// Errno returns the errno e matches.
func (e *Error) Errno() unix.Errno { return e.Code.Errno() }

// Sentinels, one per code: errors.Is(err, wsa.ErrFault) is true for every
// WSAEFAULT error.
var (
	ErrFault        = &Error{Code: WSAEFAULT}
	ErrInvalid      = &Error{Code: WSAEINVAL}
	ErrNotSock      = &Error{Code: WSAENOTSOCK}
	ErrAddrInUse    = &Error{Code: WSAEADDRINUSE}
	ErrAddrNotAvail = &Error{Code: WSAEADDRNOTAVAIL}
	ErrNetDown      = &Error{Code: WSAENETDOWN}
	ErrNoBufs       = &Error{Code: WSAENOBUFS}
)

// CodeOf returns the WSA code of err if err is or wraps an *Error.
func CodeOf(err error) (Code, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Code, true
	}
	return 0, false
}
