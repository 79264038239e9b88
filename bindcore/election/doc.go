// Package election decides which listening socket of an address and port
// receives its connection requests.
//
// Sockets of one user may share an address and port (WSPBind), and several
// may listen on it; the spec says that then "only one should receive
// connection requests". Among the listeners of one address and port, in
// every process of the user in one network namespace, the election makes
// exactly one the designated listener (it receives the requests, in TCP
// through the BPF steering of package steer and in rdma_cm through its
// RDMAPort), one the standby (it takes over when the designated listener
// closes or its process dies, at once, with no polling), and queues the
// others.
//
// The election is OFD byte-range locks on the registry file, far past its
// records (lock.go has the offset map; docs/registry.md shows it beside the
// registry's own ranges): the kernel hands a lock to exactly one waiter
// when its holder closes it or dies. The registry record's role says the
// same for people and for other processes.
//
// Join makes a listening socket a Member; Member.Close leaves the election
// with a graceful handover. Probe and RingDoorbell are for package cmport,
// which parks the bound rdma_cm ids of a port once a listener is
// designated there. docs/listen.md has the protocol and its measurements.
//
// Reach for package bindcore (Socket.Listen) rather than this package: it
// ties the election to a socket's claim, kernel TCP socket and rdma_cm id.
package election
