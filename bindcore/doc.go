// Package bindcore is the WSPBind engine of rdmabind: it takes a socket
// address as WSPBind does, validates it exactly as the specification says,
// and (with the packages under it) binds it to the RDMA device that serves it.
//
// This file's package holds the sockaddr codec: ParseSockaddr reads a raw
// sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes) as the socket's family
// and answers with the spec's WSAEFAULT for every malformed name, and
// Sockaddr.Encode writes it back byte for byte.
//
// Errors are *wsa.Error values (package bindcore/wsa): each matches both its
// sentinel (wsa.ErrFault) and its errno (unix.EFAULT) with errors.Is. This
// package is the one place where errors become the spec's: the packages
// under it (rdma, registry, shadow, steer, cgo/...) return errnos and
// sentinels of their own, which errmap.go maps to WSA codes (SpecError),
// keeping them as the cause, so errors.Is(err, rdma.ErrAddrNotLocal) holds
// for a Bind's error too. The full table, with the spec sentence behind
// each row, is docs/errors.md.
//
// The package builds on every system x/sys/unix supports; off Linux no
// Binder opens (registry.Open fails with registry.ErrNotSupported).
//
// Related packages: bindcore/wsa (the error contract), rdma (which device
// serves an address), cgo/rdmacm (the librdmacm binding).
package bindcore
