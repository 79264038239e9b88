// Package qp gives a bound bindcore.Socket its connections: reliable
// connected queue pairs carrying messages, the WSPConnect and WSPAccept
// that follow WSPBind.
//
// Dial connects a bound socket to a listening one, over rdma_cm (ModeCM,
// the default) or over a rendezvous on the socket's own kernel TCP port
// (ModeTCP: QP number, GID and PSN exchanged on a TCP connection from the
// socket's address and port, as perftest does without -R). A Listener on a
// listening socket accepts both at once: both reach the designated listener
// of the port, rdma_cm requests through its listening id and TCP
// connections through the eBPF steering, and a standby takes over both.
// Several sockets bound to one port dial independently.
//
//	c, err := qp.Dial(ctx, s, netip.MustParseAddrPort("10.77.0.2:7470"), nil)
//	if err != nil { ... }
//	defer c.Close()
//	err = c.Send(msg)      // one message, any length
//	n, err := c.Recv(buf)  // io.EOF after the peer's Close
//
// In rdma_cm mode the connecting id has an rdma_cm port of its own on the
// socket's address, never the socket's port, which belongs to the port's
// listener in rdma_cm (docs/qp.md says why); the socket's port travels in
// the connection's hello and is the peer's Conn.RemoteAddr.
//
// # Messages and flow control
//
// A message goes as RDMA SENDs of at most Options.Chunk bytes, the last
// with immediate data; the receiver returns its buffers in the immediate of
// its own messages, or by RDMA WRITE into the sender's credit word, so a
// sender never overruns it. A connection starts with a few small buffers
// and registers more as its traffic keeps them busy. Close sends a
// goodbye first: the peer's Recv returns io.EOF; a peer that dies gives
// unix.ECONNRESET instead (from rdma_cm's DISCONNECTED, or the end of the
// rendezvous TCP connection), within milliseconds.
//
// # Resources and lifetimes
//
// Memory the NIC reads and writes is mmap'd (cgo/verbs Region), never the
// Go heap, reserved whole and registered part by part as used. Waiting for completions parks the goroutine on the Go netpoller
// (the completion channels' fds), after an optional busy-poll
// (Options.Spin). Each connection has an rdma_cm event channel of its own
// (an accepted id is migrated to it), so its events reach it alone. Close
// drains and frees in order (QP, CQs, MR, memory, PD, then the rdma_cm id
// and channel or the TCP connection) and is safe twice. Closing the socket
// does not close its connections. The device contexts are librdmacm's, of
// the connection's rdma_cm id: in the rendezvous too, an id of its own
// bound to the connection's local address (port 0).
//
// # When the device goes
//
// A device being removed (rdma link delete) cannot finish going while the
// process holds anything of it. A connection learns of the loss from
// rdma_cm's DEVICE_REMOVAL on its id, or from cgo/rdmacm's device hub
// (WatchDevices), and then frees everything itself at once, as Close does
// but without the goodbye, whatever the app is doing: Send and Recv fail
// with an error matching unix.ENETDOWN that names the device, and the
// app's Close returns nil. The peer sees unix.ECONNRESET.
//
// # Errors
//
// Errors are wrapped with the operation and addresses and match io.EOF,
// unix.ECONNRESET, unix.ENETDOWN, ErrClosed (net.ErrClosed), os.ErrDeadlineExceeded,
// ErrTruncated, ErrProtocol, the errnos of rdma_cm and verbs, and
// ErrNotSupported when built without cgo; each function's doc lists them.
//
// # Structure and tests
//
// The protocol (Conn: credits, chunking, the bulk path, goodbye, deadlines,
// Close) reaches the device only through three small unexported
// interfaces (transport.go): transport, the connection's queue pair and
// its memory; cq, a completion queue; link, the control channel beside
// the QP (rdma_cm's id and event channel, or the rendezvous TCP
// connection), which reports a disconnect, the peer's death or a device
// removal. transport_verbs.go implements them with cgo/verbs; the tests
// implement them in Go memory (fake_test.go: two endpoints wired to each
// other, with injection points), so the protocol and the rendezvous (over
// loopback TCP) are tested on any host, without root or a device, with the
// race detector: go test -race -cover ./qp/.
//
// The device tests need two hosts: they run in two SoftRoCE guests, the
// second one running this test binary again as a helper
// (make device-test-2hosts, docs/qp.md). Elsewhere they skip with the
// reason. ci/qp-perf runs the benchmarks beside perftest.
package qp
