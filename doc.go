// Package rdmabind gives Go programs RDMA connections through the shape of
// package net: Listen returns a net.Listener and Dial a net.Conn, so that
// net/http, gRPC and anything else written against net.Listener and
// net.Conn run over RDMA unchanged.
//
//	ln, err := rdmabind.Listen("rdma", "10.77.0.2:8080")
//	if err != nil { ... }
//	http.Serve(ln, handler)
//
//	d := &rdmabind.Dialer{Timeout: 5 * time.Second}
//	tr := &http.Transport{DialContext: d.DialContext} // "tcp" dials over RDMA
//	client := &http.Client{Transport: tr}
//
// Underneath, each Listen and Dial binds a socket with the WSPBind
// semantics of package bindcore (address validated and mapped to the RDMA
// device that serves it, the port reserved in the registry shared by the
// processes of the host and in the kernel's TCP port space), and each
// connection is a qp.Conn: a reliable connected queue pair with credit
// flow control, set up over rdma_cm (the default) or the TCP rendezvous.
//
// # Networks and addresses
//
// The networks are "rdma", "rdma4" and "rdma6" (any family, IPv4 only,
// IPv6 only); Dialer.DialContext also takes "tcp", "tcp4" and "tcp6" as the
// same address over RDMA, so that it drops into http.Transport.DialContext
// and grpc.WithContextDialer. Addresses are "host:port" as in package net;
// a host name is looked up (net.DefaultResolver). Listening addresses must
// name an address of the host (or the wildcard) that an RDMA device
// serves; port 0 picks a free port. Addr values print their network as
// "rdma".
//
// A Dialer with no LocalAddr binds the source address the kernel's route
// to the peer uses, port 0 (an ephemeral port reserved like any bound
// port).
//
// # Sharing a port
//
// Several processes (or several Listeners of one process) may Listen on
// one address and port: exactly one of them, the designated listener,
// receives the connections; when it closes or dies the next one takes
// over (package bindcore's election, the eBPF steering of the TCP
// rendezvous, rdma_cm's listening id re-armed by the new designated one).
//
// # Streams
//
// A Conn is a byte stream over qp's messages: Write sends its bytes as
// messages of at most MaxMessage bytes (one RDMA WRITE with immediate data
// or a few SENDs each), Read returns what has arrived, a message at a time
// or part of one. A Read with a buffer of MaxMessage bytes or more
// receives straight into it; a smaller one reads through a buffer taken
// from a pool and given back once its message is read (one copy more, only
// for small reads; an idle Conn holds none). One reader and one writer
// may use a Conn at once. Deadlines work as in package net: past them
// Read and Write fail with a net.Error whose Timeout is true (a deadline
// that passes while part of a message has arrived breaks the connection:
// the rest cannot be told apart from the next message). Read returns
// io.EOF after the peer's orderly Close; a peer that dies gives an error
// matching unix.ECONNRESET; a device that goes away, unix.ENETDOWN. There
// is no CloseWrite: qp's goodbye ends both directions.
//
// # Errors
//
// Every error is a *net.OpError (Op "listen", "dial", "accept", "read",
// "write", "close"; Net the network asked for), as package net returns.
// Its Err matches the spec's codes where they apply (errors.Is(err,
// wsa.ErrAddrNotAvail) for an address that is not the host's,
// wsa.ErrAddrInUse, ...) and the errnos (unix.EADDRNOTAVAIL,
// unix.ECONNREFUSED, ...); an unknown network is a net.UnknownNetworkError
// and an unparsable address a *net.AddrError, as in package net.
//
// # The Binder
//
// The sockets come from a bindcore.Binder: by default one shared by the
// whole process, opened at the first Listen or Dial with the default
// registry (in the user's own directory, /run/rdmabind for root) and kept
// for the life of the process. ListenConfig
// and Dialer take a Binder of their own (another registry directory, a
// network namespace).
package rdmabind
