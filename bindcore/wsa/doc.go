// Package wsa is the error contract of rdmabind: the Windows Sockets error
// codes that the WSPBind specification names, as Go errors that also match
// the Linux errno a Go caller expects.
//
// Every error the library returns for a spec condition is an *Error. It
// carries the spec name (WSAEFAULT), the numeric WSA code (10014), the
// operation, the input it is about and a message that names that input. It
// matches its sentinel and its errno with errors.Is:
//
//	errors.Is(err, wsa.ErrFault)   // the sentinel
//	errors.Is(err, unix.EFAULT)    // the errno
//
// and errors.As gives the *Error for its fields. An underlying cause (an
// errno from librdmacm, say) stays reachable through Unwrap.
//
// The table of codes, with the spec sentence behind each, is in
// docs/errors.md. WSAEINPROGRESS is never returned (the spec says the switch
// never issues cancel blocking calls to a SAN provider). WSAEADDRINUSE
// belongs to the switch, not the provider; rdmabind plays both parts and
// returns it only where the port is held by a non-sharing owner.
package wsa
