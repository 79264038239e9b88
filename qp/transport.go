package qp

import "time"

// The seam under the protocol. Conn (credits, chunking, the bulk path,
// goodbye, deadlines, Close) talks to the device only through the three
// small interfaces below, in its own terms: offsets into its memory, slots,
// completions with an error. transport_verbs.go implements them with
// cgo/verbs and cgo/rdmacm (cm.go's cmLink) or the rendezvous TCP
// connection (rendezvous.go's tcpLink); fake_test.go implements them in Go
// memory, two endpoints wired to each other, so that the protocol is tested
// on any host (docs/qp.md, "Tests").
//
// transport is one connection's queue pair and memory; cq one of its
// completion queues as the connection sees it; link the connection's
// control channel beside the QP (rdma_cm's events, or the rendezvous TCP
// connection): its liveness, its disconnect, its end. A shared CQ or a
// shared receive queue would change what stands behind transport and cq
// (a per-connection view of a shared queue), not the protocol. A device
// removal arrives through link.watch (or the device hub) and the
// connection then frees itself at once: transport.close and link.close
// must work on a device that is going away.

// transport is what the protocol needs of a connection's queue pair.
//
// Work requests name local memory by offset into mem().buf, so no address
// or lkey leaves the implementation (the rkeys of register do: the peer
// needs them). Every send work request is signaled:
// each one completes on sendCQ, with its id.
type transport interface {
	// mem is the connection's memory (the control page, the receive and
	// send buffers, the bulk areas: layout says where), reserved whole;
	// only what register made usable may be named in a work request.
	mem() region
	// register makes n bytes of mem at off usable by work requests, and
	// with remote by the peer's RDMA writes, with the key it returns. The
	// connection registers its memory as it grows into it (layout).
	register(off, n int, remote bool) (rkey uint32, err error)
	// postSend posts one send work request.
	postSend(w sendWR) error
	// postRecv posts a receive buffer of n bytes at off; its completion
	// carries id.
	postRecv(id uint64, off, n int) error
	// sendCQ and recvCQ are where the send and receive work requests
	// complete.
	sendCQ() cq
	recvCQ() cq
	// maxInline is the largest send the QP takes inline.
	maxInline() int
	// setError moves the QP to the error state: every posted work request
	// completes (flushed: its error matches unix.ECANCELED), and the device
	// reads and writes the memory no more. Safe after close.
	setError() error
	// close frees the QP, its completion queues and its memory, in that
	// order. Call it after the work requests have completed (or after
	// setError and a bounded drain). Safe twice.
	close() error
}

// cq is a completion queue of one connection. poll, pollSpin, pollArm and
// waitPoll of one cq are called by one goroutine at a time (the Conn's
// locks see to it); arm, wait and setDeadline may come from any.
type cq interface {
	// poll copies up to len(out) completions into out; 0 when none.
	poll(out []completion) (int, error)
	// pollSpin is poll busy-polling for up to d until one is there; it
	// may give up sooner (verbs: after 1 ms), returning 0.
	pollSpin(out []completion, d time.Duration) (int, error)
	// pollArm is poll, then, when nothing was there, arm and poll again.
	pollArm(out []completion) (int, error)
	// waitPoll waits for the event of an armed cq, then polls; it may
	// return 0 (an event of an earlier arm): pollArm again before the next
	// waitPoll.
	waitPoll(out []completion) (int, error)
	// arm asks for one event at the next completion; poll once more after
	// it, before wait: a completion that came in between raises none.
	arm() error
	// wait waits for that event.
	wait() error
	// setDeadline bounds wait and waitPoll, also one waiting now (past it
	// they fail with os.ErrDeadlineExceeded); the zero time: no bound.
	setDeadline(t time.Time) error
}

// link is the connection's control channel beside its QP: rdma_cm's event
// channel and id, or the rendezvous TCP connection.
type link interface {
	// watch runs until the link is closed, calling broke with the reason
	// each time something breaks the connection: the peer disconnected or
	// died (unix.ECONNRESET), the device went away (a *deviceLostError,
	// matching unix.ENETDOWN: the connection then tears itself down).
	// broke may be called from more than one goroutine.
	watch(broke func(error))
	// device is the name of the RDMA device the connection's QP is on
	// ("" when unknown): the connection also watches the process's device
	// hub for its loss. Called once, before watch.
	device() string
	// disconnect tells the peer the connection is over (rdma_disconnect).
	disconnect()
	// close frees the link, after the transport, and ends watch. Safe
	// twice.
	close() error
}

// region is a connection's memory.
type region struct {
	buf  []byte // mmap'd (never the Go heap) in the real transport
	addr uint64 // the address of buf[0] in the peer's work requests
}

// wrOp is a send work request's operation.
type wrOp uint8

const (
	opSend     wrOp = iota // SEND
	opSendImm              // SEND with immediate data
	opWrite                // RDMA WRITE (no completion at the peer)
	opWriteImm             // RDMA WRITE with immediate (takes a receive at the peer)
)

// sendWR is one send work request: n bytes of mem().buf at off; for the
// writes, to the peer's raddr with rkey.
type sendWR struct {
	id     uint64
	op     wrOp
	off, n int
	imm    uint32 // opSendImm, opWriteImm
	inline bool
	raddr  uint64 // opWrite, opWriteImm
	rkey   uint32
}

// completion is a finished work request.
type completion struct {
	id     uint64
	n      int    // receives: the bytes that arrived
	imm    uint32 // valid when hasImm
	hasImm bool
	err    error // nil on success; a flush matches unix.ECANCELED
}
