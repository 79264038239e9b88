//go:build linux && cgo

// Command capi is librdmabind.so, the C API of rdmabind: the Windows
// Sockets Direct service provider functions it implements (WSPSocket,
// WSPBind, WSPListen, WSPAccept, WSPConnect, WSPSend, WSPRecv,
// WSPGetSockName, WSPGetPeerName, WSPCloseSocket) with the spec's
// semantics, for C and C++ programs. It is built with -buildmode=c-shared
// (make capi); include/rdmabind.h is its header, rdmabind.pc.in its
// pkg-config file. docs/capi.md says how to use it and what a Go runtime
// inside a C process means.
//
// A SOCKET is a handle into a table of this package (handles.go), never a
// pointer: a made-up or closed one is WSAENOTSOCK, never a crash. The
// sockets come from one bindcore.Binder for the process; the streams are
// the root package's (rdmabind.Conn), so C and Go peers interoperate.
package main
