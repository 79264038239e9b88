// Package shadow holds rdmabind's kernel TCP reservations: for every bound
// RDMA socket, a real kernel TCP socket bound to the same address and port.
//
// rdma_cm's port space is separate from kernel TCP's, so without a shadow a
// plain TCP program could take a port an RDMA socket is bound to. A shadow is
// created with SO_REUSEPORT (and never SO_REUSEADDR), so:
//
//   - shadows of one user share a port, as WSPBind's sharing needs, and the
//     shadows of one port form one reuseport group (the listener steering of
//     bindcore attaches its eBPF program to that group);
//   - a plain TCP program (net.Listen sets only SO_REUSEADDR) cannot bind the
//     port while a shadow holds it, and another user cannot either: the
//     kernel answers EADDRINUSE;
//   - AF_INET6 shadows are IPV6_V6ONLY, as Windows sockets are by default, so
//     an IPv6 wildcard does not reserve the IPv4 port space.
//
// Shadows are made with socket(2) and IPPROTO_TCP, never MPTCP (Go 1.24+
// makes net.Listen MPTCP where it can, and reuseport eBPF does not work on
// MPTCP sockets). A shadow takes the network namespace of the thread that
// creates it. Close is safe twice.
//
// Shadows need Linux: elsewhere Bind fails with an error matching
// ErrNotSupported and unix.EOPNOTSUPP. Errors of Bind wrap the errno of the
// failing call; bindcore turns them into the spec's codes.
package shadow
