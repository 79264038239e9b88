/*
 * rdmabind.h: the C API of rdmabind, the Windows Sockets Direct service
 * provider functions it implements, over Linux RDMA (librdmabind.so).
 *
 * C99; usable from C++. Link with `pkg-config --cflags --libs rdmabind`.
 * Every function sets *lpErrno on failure (a WSA code below) when lpErrno is
 * not NULL, and returns SOCKET_ERROR (or INVALID_SOCKET). A SOCKET that was
 * never returned, or was closed, is WSAENOTSOCK. docs/capi.md has the
 * details, and what a Go runtime inside a C process means (threads,
 * signals, fork).
 */
#ifndef RDMABIND_H
#define RDMABIND_H

#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RDMABIND_VERSION_MAJOR 0
#define RDMABIND_VERSION_MINOR 1

typedef uintptr_t SOCKET;
#define INVALID_SOCKET ((SOCKET)(~0))
#define SOCKET_ERROR (-1)

/* The WSA codes rdmabind returns, by their Windows names and numbers. */
#define WSAEINTR 10004
#define WSAEFAULT 10014
#define WSAEALREADY 10037
#define WSAEINVAL 10022
#define WSAEMFILE 10024
#define WSAENOTSOCK 10038
#define WSAEPROTONOSUPPORT 10043
#define WSAESOCKTNOSUPPORT 10044
#define WSAEOPNOTSUPP 10045
#define WSAEAFNOSUPPORT 10047
#define WSAEADDRINUSE 10048
#define WSAEADDRNOTAVAIL 10049
#define WSAENETDOWN 10050
#define WSAENETUNREACH 10051
#define WSAECONNABORTED 10053
#define WSAECONNRESET 10054
#define WSAENOBUFS 10055
#define WSAEISCONN 10056
#define WSAENOTCONN 10057
#define WSAETIMEDOUT 10060
#define WSAECONNREFUSED 10061
#define WSAEHOSTUNREACH 10065

/* A socket of family af (AF_INET or AF_INET6), type SOCK_STREAM, protocol
 * 0 (or IPPROTO_TCP). */
SOCKET WSPSocket(int af, int type, int protocol, int *lpErrno);

/* WSPBind: associates a local address with the socket, exactly as the
 * spec says. 0, or SOCKET_ERROR with WSAEFAULT (name NULL, namelen too
 * small, name not of the socket's family), WSAEADDRNOTAVAIL (not an address
 * of this host, or no RDMA device serves it), WSAEINVAL (already bound),
 * WSAENOBUFS, WSAENOTSOCK, WSAENETDOWN (no RDMA subsystem), WSAEADDRINUSE
 * (the port is held by another user or a program outside rdmabind). */
int WSPBind(SOCKET s, const struct sockaddr *name, int namelen, int *lpErrno);

/* Listens on a bound socket. Several sockets (in any processes) may listen
 * on one address and port: one receives the connections, the next takes
 * over when it closes. */
int WSPListen(SOCKET s, int backlog, int *lpErrno);

/* Waits for a connection on a listening socket and returns its socket;
 * addr (if not NULL) receives the peer's address, *addrlen its length.
 * WSPCloseSocket of s from another thread ends the wait (WSAENOTSOCK). */
SOCKET WSPAccept(SOCKET s, struct sockaddr *addr, int *addrlen, int *lpErrno);

/* Connects to a listening rdmabind socket (over rdma_cm); an unbound socket
 * is bound first to the source address of the route to name, port 0. At
 * most 30 s; WSPCloseSocket from another thread ends it (WSAEINTR), a
 * second WSPConnect meanwhile is WSAEALREADY. */
int WSPConnect(SOCKET s, const struct sockaddr *name, int namelen, int *lpErrno);

/* A byte stream, the same as rdmabind.Dial and Listen give Go programs:
 * WSPSend sends all len bytes and returns len; WSPRecv returns the bytes
 * that arrived (at most len), 0 after the peer's orderly close. */
int WSPSend(SOCKET s, const void *buf, int len, int *lpErrno);
int WSPRecv(SOCKET s, void *buf, int len, int *lpErrno);

/* The local and the peer's address; *namelen is the buffer's size on entry
 * and the address's length on return. */
int WSPGetSockName(SOCKET s, struct sockaddr *name, int *namelen, int *lpErrno);
int WSPGetPeerName(SOCKET s, struct sockaddr *name, int *namelen, int *lpErrno);

/* Closes the socket: its connection, its listening, its binding. */
int WSPCloseSocket(SOCKET s, int *lpErrno);

/* Closes every socket and releases what the library holds (its registry
 * handle, its rdma_cm event channel), as WSPCleanup does at the end of a
 * Winsock program; a later WSPSocket starts again. */
int WSPCleanup(int *lpErrno);

/* The RDMA device, port and GID index serving a bound socket. */
int rdmabind_endpoint(SOCKET s, char *device, int devlen, int *port, int *gid_index, int *lpErrno);

/* How many SOCKETs are open (for leak checks). */
int rdmabind_open_sockets(void);

/* Benchmark: n WSPSocket/WSPBind/WSPCloseSocket cycles of sockaddr name done
 * inside the library, in Go (bindcore's Socket, Bind, Close), with no cgo
 * crossing per call; the median cycle in nanoseconds, or -1 with *lpErrno. */
int64_t rdmabind_bench_go_bind(const struct sockaddr *name, int namelen, int n, int *lpErrno);

#ifdef __cplusplus
}
#endif

#endif /* RDMABIND_H */
