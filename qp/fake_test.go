package qp

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// The fake transport: queue pairs in Go memory, wired to each other, for
// the host tests of the protocol (as google/gousb's fakelibusb stands in
// for libusb). A fakeNet holds the endpoints and one lock for all of them;
// a send work request is delivered into the peer's oldest posted receive,
// an RDMA WRITE into the peer's memory bytes (checked against its address
// and rkey), a WRITE with immediate into both; each completes on the
// poster's send CQ. A QP in the error state flushes what is posted
// (completions matching unix.ECANCELED).
//
// Faithful where the protocol could go wrong: the data of a send that is
// not inline is read from the sender's memory when it is delivered, not
// when it is posted (a buffer reused too early shows as corrupt bytes); a
// send that finds no posted receive waits (RNR, counted: the credits must
// make it never happen); a CQ raises an event only for a completion that
// comes after it was armed; two polls of one CQ at once fail the test.
//
// Injection points: hold and release (or allow k more) deliveries, a post
// that fails, a credit write that lands torn, a peer that dies (its QP
// gone, its link's end reported after a delay), link events, a device
// removal (on the link, or through a fake device hub), receives
// that are not flushed (as rxe sometimes does not), a flush that comes
// late, acknowledgements that come late, a slow setError.
type fakeNet struct {
	t  testing.TB
	mu sync.Mutex

	ends    []*fakeEnd
	log     []string
	budget  int // deliveries allowed before holding; < 0: no hold
	rnr     int // sends that found no posted receive
	nextQPN uint32

	// noRecvFlush: the error state does not flush posted receives.
	noRecvFlush bool
	// dropDelay: how long after a drop the peer's link reports it.
	dropDelay time.Duration
	// flushDelay: how long after the error state the flush completes.
	flushDelay time.Duration
	// lateAcks: successful send completions wait for ack (the peer's
	// acknowledgement is slow), after the delivery.
	lateAcks bool
	// afterSetError, when set, runs when transport.setError has flushed,
	// before it returns (a slow modify_qp).
	afterSetError func(e *fakeEnd)
}

func newFakeNet(t testing.TB) *fakeNet {
	return &fakeNet{t: t, budget: -1, nextQPN: 0x100}
}

const fakeInline = 64

var (
	errFakeFlushed = fmt.Errorf("fake work completion: flushed: %w", unix.ECANCELED)
	errFakeRetry   = fmt.Errorf("fake work completion: transport retries exceeded: %w", unix.ETIMEDOUT)
	errFakeAccess  = fmt.Errorf("fake work completion: remote access error: %w", unix.EIO)
	errFakeLength  = fmt.Errorf("fake work completion: local length error: %w", unix.EIO)
	errFakeClosed  = errors.New("use of closed fake transport")
)

// fakeEnd is one queue pair with its memory and CQs: a transport (and a
// rendezvousQP).
type fakeEnd struct {
	n    *fakeNet
	name string
	qpn  uint32
	m    region
	segs []fakeSeg // the registered parts of m
	peer *fakeEnd

	scq, rcq *fakeCQ
	link     *fakeLink

	recvs    []fakeRecv   // posted receives, oldest first
	out      []*fakeWR    // posted sends not delivered yet, in order
	sendsOut int          // posted sends not completed
	posts    int          // postSend calls
	late     []completion // completions lateAcks holds back
	errState bool
	dead     bool // dropped: its process died
	closed   bool
	tornRest func() // the rest of a torn write, landing at finishTear

	tearCredit bool          // the next credit write into this end lands torn
	failSend   fakeFailAfter // injected postSend failure
	failRecv   fakeFailAfter // injected postRecv failure

	ops map[wrOp]int // delivered send work requests, by operation

	sendDepth, recvDepth int // the queues' sizes
	// connected by connect (rendezvous): the peer's qpn, our psn.
	connected bool
}

// fakeSeg is a registered part of an end's memory: [off, end), and
// whether the peer may write into it, with rkey.
type fakeSeg struct {
	off, end int
	rkey     uint32
	remote   bool
}

// registered reports whether [off, off+n) lies in one registered part (with
// remote, one the peer may write into with rkey).
func (e *fakeEnd) registered(off, n int, remote bool, rkey uint32) bool {
	for _, s := range e.segs {
		if off >= s.off && off+n <= s.end && (!remote || s.remote && s.rkey == rkey) {
			return true
		}
	}
	return false
}

type fakeRecv struct {
	id     uint64
	off, n int
}

type fakeWR struct {
	w    sendWR
	data []byte // inline: taken at post time
	rnr  bool   // counted as an RNR already
}

// fakeFailAfter fails the post after n more successful ones (n >= 0) with
// err.
type fakeFailAfter struct {
	n   int
	err error
}

func (f *fakeFailAfter) check() error {
	if f.err == nil {
		return nil
	}
	if f.n > 0 {
		f.n--
		return nil
	}
	err := f.err
	f.err = nil
	return err
}

// newEnd makes an endpoint with the memory and queues lay asks for.
func (n *fakeNet) newEnd(name string, lay layout) *fakeEnd {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := len(n.ends)
	e := &fakeEnd{
		n:    n,
		name: name,
		qpn:  n.nextQPN,
		m:    region{buf: fakeMemory(lay.size), addr: uint64(i+1) << 32},
		ops:  map[wrOp]int{},

		sendDepth: lay.sendDepth(),
		recvDepth: lay.nrecv,
	}
	n.nextQPN++
	e.scq = newFakeCQ(n.t, name+" send cq")
	e.rcq = newFakeCQ(n.t, name+" recv cq")
	e.link = &fakeLink{e: e, ev: make(chan error, 16), done: make(chan struct{})}
	n.ends = append(n.ends, e)
	return e
}

// opened is how many endpoints named name were made.
func (n *fakeNet) opened(name string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, e := range n.ends {
		if e.name == name {
			k++
		}
	}
	return k
}

// closedCount is how many transports of endpoints named name were closed.
func (n *fakeNet) closedCount(name string) int {
	return len(n.events(name + ": transport closed"))
}

func (n *fakeNet) logf(format string, args ...any) {
	n.log = append(n.log, fmt.Sprintf(format, args...))
}

// events returns the log lines that start with prefix.
func (n *fakeNet) events(prefix string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var r []string
	for _, l := range n.log {
		if strings.HasPrefix(l, prefix) {
			r = append(r, l)
		}
	}
	return r
}

// hold stops deliveries (the wire is slow); release delivers what waits
// and lets everything through again; allow lets k more through.
func (n *fakeNet) hold()    { n.allow(0) }
func (n *fakeNet) release() { n.allow(-1) }
func (n *fakeNet) allow(k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.budget = k
	n.pumpLocked()
}

// rnrs is how many sends found no posted receive.
func (n *fakeNet) rnrs() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rnr
}

// drop kills e's side: its QP is gone (the peer's work requests to it fail
// with retries exceeded) and, after dropDelay, the peer's link reports the
// end, as rdma_cm's DISCONNECTED or the rendezvous' TCP end does.
func (n *fakeNet) drop(e *fakeEnd) {
	n.mu.Lock()
	e.dead = true
	n.logf("%s: dropped", e.name)
	n.setErrorLocked(e)
	n.pumpLocked()
	p := e.peer
	n.mu.Unlock()
	if p != nil {
		time.AfterFunc(n.dropDelay, func() {
			p.link.notify(fmt.Errorf("fake link: peer %s died: %w", e.name, unix.ECONNRESET))
		})
	}
}

// finishTear lands the rest of a torn credit write, and lets what was
// behind it through.
func (n *fakeNet) finishTear(e *fakeEnd) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if e.tornRest != nil {
		e.tornRest()
		e.tornRest = nil
		n.logf("%s: torn write finished", e.name)
	}
	n.pumpLocked()
}

// pumpLocked delivers what the ends have posted, in order per end, while
// the budget lasts.
func (n *fakeNet) pumpLocked() {
	for progress := true; progress; {
		progress = false
		for _, e := range n.ends {
			for len(e.out) > 0 && n.budget != 0 {
				wr := e.out[0]
				if !n.deliverLocked(e, wr) {
					break
				}
				if len(e.out) > 0 && e.out[0] == wr { // else flushed with the rest
					e.out = e.out[1:]
				}
				if n.budget > 0 {
					n.budget--
				}
				progress = true
			}
		}
	}
}

// deliverLocked carries out one send work request of from; false when it
// cannot yet (no receive posted at the peer, or a torn write still
// landing before it).
func (n *fakeNet) deliverLocked(from *fakeEnd, wr *fakeWR) bool {
	w := wr.w
	if from.errState {
		from.complete(completion{id: w.id, err: errFakeFlushed})
		return true
	}
	to := from.peer
	if to == nil || to.dead || to.closed || to.errState {
		from.complete(completion{id: w.id, err: errFakeRetry})
		n.setErrorLocked(from)
		return true
	}
	if from.tornRest != nil || to.tornRest != nil {
		return false
	}
	data := wr.data
	if data == nil {
		data = from.m.buf[w.off : w.off+w.n]
	}
	needRecv := w.op != opWrite
	if needRecv && len(to.recvs) == 0 {
		if !wr.rnr {
			wr.rnr = true
			n.rnr++
			n.logf("%s: RNR: %s has no receive posted", from.name, to.name)
		}
		return false
	}
	switch w.op {
	case opWrite, opWriteImm:
		off := int64(w.raddr) - int64(to.m.addr)
		if off < 0 || off+int64(w.n) > int64(len(to.m.buf)) || !to.registered(int(off), w.n, true, w.rkey) {
			from.complete(completion{id: w.id, err: errFakeAccess})
			n.setErrorLocked(from)
			n.setErrorLocked(to)
			return true
		}
		dst := to.m.buf[off : off+int64(w.n)]
		if to.tearCredit && w.op == opWrite && w.n == creditLen {
			to.tearCredit = false
			fakeDMA(dst[:8], data[:8])
			rest := slices.Clone(data[8:])
			to.tornRest = func() { fakeDMA(dst[8:], rest) }
			n.logf("%s: credit write into %s torn", from.name, to.name)
		} else {
			fakeDMA(dst, data)
		}
		if w.op == opWriteImm {
			r := to.recvs[0]
			to.recvs = to.recvs[1:]
			to.rcq.push(completion{id: r.id, n: w.n, imm: w.imm, hasImm: true})
		}
	case opSend, opSendImm:
		r := to.recvs[0]
		to.recvs = to.recvs[1:]
		if w.n > r.n {
			to.rcq.push(completion{id: r.id, err: errFakeLength})
			n.setErrorLocked(to)
			from.complete(completion{id: w.id, err: errFakeRetry})
			n.setErrorLocked(from)
			return true
		}
		copy(to.m.buf[r.off:r.off+w.n], data)
		to.rcq.push(completion{id: r.id, n: w.n, imm: w.imm, hasImm: w.op == opSendImm})
	}
	from.ops[w.op]++
	from.complete(completion{id: w.id})
	return true
}

// setErrorLocked moves e to the error state: what it has posted is flushed,
// at once or after flushDelay.
func (n *fakeNet) setErrorLocked(e *fakeEnd) {
	if e.errState {
		return
	}
	e.errState = true
	n.logf("%s: error state", e.name)
	if n.flushDelay > 0 {
		time.AfterFunc(n.flushDelay, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if !e.closed {
				n.flushLocked(e)
			}
		})
		return
	}
	n.flushLocked(e)
}

func (n *fakeNet) flushLocked(e *fakeEnd) {
	for _, wr := range e.out {
		e.complete(completion{id: wr.w.id, err: errFakeFlushed})
	}
	e.out = nil
	if !n.noRecvFlush {
		for _, r := range e.recvs {
			e.rcq.push(completion{id: r.id, err: errFakeFlushed})
		}
		e.recvs = nil
	}
}

func (e *fakeEnd) complete(c completion) {
	if e.n.lateAcks && c.err == nil {
		e.late = append(e.late, c)
		return
	}
	e.sendsOut--
	e.scq.push(c)
}

// ack completes the sends whose acknowledgement lateAcks held back.
func (n *fakeNet) ack() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lateAcks = false
	for _, e := range n.ends {
		for _, c := range e.late {
			e.complete(c)
		}
		e.late = nil
	}
}

// use checks that the transport is not used after close.
func (e *fakeEnd) use(op string) {
	if e.closed {
		e.n.t.Errorf("%s: %s after close", e.name, op)
	}
}

// post failures, tears: injection points.
func (e *fakeEnd) failSendAfter(k int, err error) {
	e.n.mu.Lock()
	e.failSend = fakeFailAfter{k, err}
	e.n.mu.Unlock()
}

func (e *fakeEnd) failRecvAfter(k int, err error) {
	e.n.mu.Lock()
	e.failRecv = fakeFailAfter{k, err}
	e.n.mu.Unlock()
}

func (e *fakeEnd) tearNextCredit() {
	e.n.mu.Lock()
	e.tearCredit = true
	e.n.mu.Unlock()
}

func (e *fakeEnd) postCount() int {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	return e.posts
}

func (e *fakeEnd) opCount(op wrOp) int {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	return e.ops[op]
}

// outstanding is how many work requests are posted and not completed.
func (e *fakeEnd) outstanding() int {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	return e.sendsOut + len(e.recvs)
}

// transport

func (e *fakeEnd) mem() region { return e.m }

func (e *fakeEnd) register(off, n int, remote bool) (uint32, error) {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	e.use("register")
	if e.closed {
		return 0, fmt.Errorf("fake register: %w", errFakeClosed)
	}
	if off < 0 || n <= 0 || off+n > len(e.m.buf) {
		e.n.t.Errorf("%s: register %d+%d outside memory", e.name, off, n)
		return 0, fmt.Errorf("fake register: %w", unix.EINVAL)
	}
	rkey := uint32(e.qpn)<<16 | uint32(len(e.segs)+1)
	e.segs = append(e.segs, fakeSeg{off: off, end: off + n, rkey: rkey, remote: remote})
	return rkey, nil
}
func (e *fakeEnd) sendCQ() cq     { return e.scq }
func (e *fakeEnd) recvCQ() cq     { return e.rcq }
func (e *fakeEnd) maxInline() int { return fakeInline }

func (e *fakeEnd) postSend(w sendWR) error {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	e.use("postSend")
	e.posts++
	if e.closed {
		return fmt.Errorf("fake post send: %w", errFakeClosed)
	}
	if err := e.failSend.check(); err != nil {
		n.logf("%s: post send failed: %v", e.name, err)
		return fmt.Errorf("fake post send: %w", err)
	}
	if w.off < 0 || w.n < 0 || w.off+w.n > len(e.m.buf) || (w.inline && w.n > fakeInline) || w.op > opWriteImm || (w.n > 0 && !e.registered(w.off, w.n, false, 0)) {
		n.t.Errorf("%s: bad send work request %+v", e.name, w)
		return fmt.Errorf("fake post send: %w", unix.EINVAL)
	}
	if e.sendsOut >= e.sendDepth {
		n.t.Errorf("%s: send queue overrun (%d posted)", e.name, e.sendsOut)
		return fmt.Errorf("fake post send: %w", unix.ENOMEM)
	}
	if w.op == opSendImm && w.imm == immBye {
		n.logf("%s: post goodbye", e.name)
	}
	wr := &fakeWR{w: w}
	if w.inline {
		wr.data = slices.Clone(e.m.buf[w.off : w.off+w.n])
	}
	e.sendsOut++
	if e.errState {
		e.complete(completion{id: w.id, err: errFakeFlushed})
		return nil
	}
	e.out = append(e.out, wr)
	n.pumpLocked()
	return nil
}

func (e *fakeEnd) postRecv(id uint64, off, size int) error {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	e.use("postRecv")
	if e.closed {
		return fmt.Errorf("fake post recv: %w", errFakeClosed)
	}
	if err := e.failRecv.check(); err != nil {
		n.logf("%s: post recv failed: %v", e.name, err)
		return fmt.Errorf("fake post recv: %w", err)
	}
	if off < 0 || off+size > len(e.m.buf) || !e.registered(off, size, false, 0) {
		n.t.Errorf("%s: receive buffer %d+%d outside registered memory", e.name, off, size)
		return fmt.Errorf("fake post recv: %w", unix.EINVAL)
	}
	if len(e.recvs) >= e.recvDepth {
		n.t.Errorf("%s: receive queue overrun (%d posted)", e.name, len(e.recvs))
		return fmt.Errorf("fake post recv: %w", unix.ENOMEM)
	}
	if e.errState && !n.noRecvFlush {
		e.rcq.push(completion{id: id, err: errFakeFlushed})
		return nil
	}
	e.recvs = append(e.recvs, fakeRecv{id: id, off: off, n: size})
	n.pumpLocked()
	return nil
}

func (e *fakeEnd) setError() error {
	e.n.mu.Lock()
	if !e.closed {
		e.n.setErrorLocked(e)
		e.n.pumpLocked()
	}
	hook := e.n.afterSetError
	e.n.mu.Unlock()
	if hook != nil {
		hook(e)
	}
	return nil
}

func (e *fakeEnd) close() error {
	e.n.mu.Lock()
	defer e.n.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.n.logf("%s: transport closed, %d work requests outstanding", e.name, e.sendsOut+len(e.recvs))
	e.scq.close()
	e.rcq.close()
	e.n.pumpLocked() // what the peer had in flight to us fails
	return nil
}

// rendezvousQP

func (e *fakeEnd) self() qpAddr {
	var gid [16]byte
	gid[15] = byte(e.qpn)
	return qpAddr{qpn: e.qpn, gid: netip.AddrFrom16(gid), lid: 0, mtu: 3}
}

func (e *fakeEnd) connect(psn uint32, peer hello) error {
	n := e.n
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.ends {
		if p.qpn == peer.qpn && p != e {
			if peer.gid != p.self().gid {
				return fmt.Errorf("fake connect to qp %#x: wrong gid: %w", peer.qpn, unix.EINVAL)
			}
			e.peer = p
			e.connected = true
			n.logf("%s: connected to %s", e.name, p.name)
			n.pumpLocked()
			return nil
		}
	}
	return fmt.Errorf("fake connect: no qp %#x: %w", peer.qpn, unix.EINVAL)
}

// opener is the rendezvous' qpOpener over this fake net, with no device
// link; fail, when set, makes it fail.
func (n *fakeNet) opener(name string, fail error) qpOpener {
	return func(_ bindcore.Endpoint, _ netip.Addr, lay layout) (rendezvousQP, link, error) {
		if fail != nil {
			return nil, nil, fail
		}
		return n.newEnd(name, lay), nil, nil
	}
}

// devOpener is opener with a device link (as openVerbsQP's rdma_cm id) on
// device dev, sent to links when the QP is opened.
func (n *fakeNet) devOpener(name, dev string, links chan<- *fakeDevLink) qpOpener {
	return func(_ bindcore.Endpoint, _ netip.Addr, lay layout) (rendezvousQP, link, error) {
		e := n.newEnd(name, lay)
		l := &fakeDevLink{n: n, name: name + " device link", dev: dev, ev: make(chan error, 4), done: make(chan struct{})}
		links <- l
		return e, l, nil
	}
}

// fakeDevLink is the link a rendezvous' QP hangs off: it reports only
// what is injected (a device removal), and logs its close.
type fakeDevLink struct {
	n    *fakeNet
	name string
	dev  string
	ev   chan error
	done chan struct{}
	once sync.Once
}

func (l *fakeDevLink) device() string { return l.dev }
func (l *fakeDevLink) disconnect()    {}

// remove reports the device's removal, as rdma_cm's DEVICE_REMOVAL on the
// id does.
func (l *fakeDevLink) remove() {
	l.ev <- &deviceLostError{dev: l.dev, how: "fake DEVICE_REMOVAL"}
}

func (l *fakeDevLink) watch(broke func(error)) {
	for {
		select {
		case err := <-l.ev:
			broke(err)
		case <-l.done:
			return
		}
	}
}

func (l *fakeDevLink) close() error {
	l.once.Do(func() {
		l.n.mu.Lock()
		l.n.logf("%s: closed", l.name)
		l.n.mu.Unlock()
		close(l.done)
	})
	return nil
}

// fakeLink is the control channel of a fake end: its peer's link hears of
// its disconnect, its close and its death. dev, when set, is the device
// the connection says it is on (the hub's loss of it tears it down).
type fakeLink struct {
	e    *fakeEnd
	dev  string
	ev   chan error
	done chan struct{}
	once sync.Once
}

func (l *fakeLink) device() string { return l.dev }

// removeDevice reports the loss of e's device on its link, as rdma_cm's
// DEVICE_REMOVAL on the connection's id does.
func (e *fakeEnd) removeDevice() {
	e.link.notify(&deviceLostError{dev: e.link.dev, how: "fake DEVICE_REMOVAL"})
}

func (l *fakeLink) notify(err error) {
	select {
	case l.ev <- err:
	default:
	}
}

// event injects a link event (a device removal, say) at e.
func (e *fakeEnd) event(err error) { e.link.notify(err) }

func (l *fakeLink) watch(broke func(error)) {
	defer func() {
		l.e.n.mu.Lock()
		l.e.n.logf("%s: watch returned", l.e.name)
		l.e.n.mu.Unlock()
	}()
	for {
		select {
		case err := <-l.ev:
			broke(err)
		case <-l.done:
			return
		}
	}
}

func (l *fakeLink) peerLink() *fakeLink {
	l.e.n.mu.Lock()
	defer l.e.n.mu.Unlock()
	if l.e.peer == nil {
		return nil
	}
	return l.e.peer.link
}

func (l *fakeLink) disconnect() {
	l.e.n.mu.Lock()
	l.e.n.logf("%s: disconnect", l.e.name)
	l.e.n.mu.Unlock()
	if p := l.peerLink(); p != nil {
		p.notify(fmt.Errorf("fake link: peer disconnected: %w", unix.ECONNRESET))
	}
}

func (l *fakeLink) close() error {
	l.once.Do(func() {
		l.e.n.mu.Lock()
		l.e.n.logf("%s: link closed", l.e.name)
		l.e.n.mu.Unlock()
		close(l.done)
		if p := l.peerLink(); p != nil {
			p.notify(fmt.Errorf("fake link: peer's link ended: %w", unix.ECONNRESET))
		}
	})
	return nil
}

// fakeCQ is a completion queue with a completion channel: an event per
// arm, for a completion that came after the arm.
type fakeCQ struct {
	t    testing.TB
	name string

	mu     sync.Mutex
	q      []completion
	armed  bool
	events int
	wake   chan struct{} // closed at every change
	dl     time.Time
	closed bool

	polling atomic.Int32
}

func newFakeCQ(t testing.TB, name string) *fakeCQ {
	return &fakeCQ{t: t, name: name, wake: make(chan struct{})}
}

func (q *fakeCQ) changedLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}

func (q *fakeCQ) push(c completion) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.q = append(q.q, c)
	if q.armed {
		q.armed = false
		q.events++
		q.changedLocked()
	}
}

func (q *fakeCQ) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.changedLocked()
}

// enter checks the rule that one goroutine polls a cq at a time.
func (q *fakeCQ) enter(op string) func() {
	if q.polling.Add(1) != 1 {
		q.t.Errorf("%s: %s while another poll runs", q.name, op)
	}
	return func() { q.polling.Add(-1) }
}

func (q *fakeCQ) takeLocked(out []completion) (int, error) {
	if q.closed {
		q.t.Errorf("%s: polled after close", q.name)
		return 0, fmt.Errorf("fake poll: %w", errFakeClosed)
	}
	n := copy(out, q.q)
	q.q = q.q[n:]
	return n, nil
}

func (q *fakeCQ) poll(out []completion) (int, error) {
	defer q.enter("poll")()
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked(out)
}

func (q *fakeCQ) pollSpin(out []completion, d time.Duration) (int, error) {
	defer q.enter("pollSpin")()
	end := time.Now().Add(min(d, time.Millisecond)) // as verbs.CQ.PollSpin
	for {
		q.mu.Lock()
		n, err := q.takeLocked(out)
		q.mu.Unlock()
		if n > 0 || err != nil || time.Now().After(end) {
			return n, err
		}
		runtime.Gosched()
	}
}

func (q *fakeCQ) pollArm(out []completion) (int, error) {
	defer q.enter("pollArm")()
	q.mu.Lock()
	defer q.mu.Unlock()
	n, err := q.takeLocked(out)
	if n == 0 && err == nil {
		q.armed = true
	}
	return n, err
}

func (q *fakeCQ) waitPoll(out []completion) (int, error) {
	defer q.enter("waitPoll")()
	if err := q.wait(); err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.takeLocked(out)
}

func (q *fakeCQ) arm() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return fmt.Errorf("fake arm: %w", errFakeClosed)
	}
	q.armed = true
	return nil
}

// wait is the real one's order: closed, then the deadline, then the event.
func (q *fakeCQ) wait() error {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return fmt.Errorf("fake cq wait: %w", errFakeClosed)
		}
		dl, ch := q.dl, q.wake
		if !dl.IsZero() && !time.Now().Before(dl) {
			q.mu.Unlock()
			return fmt.Errorf("fake cq wait: %w", os.ErrDeadlineExceeded)
		}
		if q.events > 0 {
			q.events--
			q.mu.Unlock()
			return nil
		}
		q.mu.Unlock()
		if dl.IsZero() {
			<-ch
			continue
		}
		tm := time.NewTimer(time.Until(dl))
		select {
		case <-ch:
		case <-tm.C:
		}
		tm.Stop()
	}
}

func (q *fakeCQ) setDeadline(t time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dl = t
	q.changedLocked()
	return nil
}

// fakeConn makes one side of a fake connection: a Conn on a new end, with
// its receives posted, not started.
func (n *fakeNet) fakeConn(name string, o *Options, local netip.AddrPort) (*Conn, *fakeEnd) {
	opts := o.withDefaults()
	c := &Conn{mode: opts.Mode, local: local, opts: opts, lay: newLayout(opts)}
	e := n.newEnd(name, c.lay)
	c.link = e.link
	c.setTransport(e)
	if err := c.postRecvs(); err != nil {
		n.t.Fatal(err)
	}
	return c, e
}

// fakePair is two Conns connected through a fake net, a with options oa
// and b with ob, as a setup would leave them; both are closed at the end
// of the test.
func fakePair(t testing.TB, oa, ob *Options) (a, b *Conn, ea, eb *fakeEnd, n *fakeNet) {
	t.Helper()
	n = newFakeNet(t)
	la := netip.MustParseAddrPort("10.77.0.1:7001")
	lb := netip.MustParseAddrPort("10.77.0.2:7002")
	a, ea = n.fakeConn("a", oa, la)
	b, eb = n.fakeConn("b", ob, lb)
	a.remote, b.remote = lb, la
	ea.peer, eb.peer = eb, ea
	ha, hb := a.hello(la.Port()), b.hello(lb.Port())
	// Through the wire format, as a real setup does.
	pa, err := parseHello(ha.marshal())
	if err != nil {
		t.Fatal(err)
	}
	pb, err := parseHello(hb.marshal())
	if err != nil {
		t.Fatal(err)
	}
	a.start(pb)
	b.start(pa)
	t.Cleanup(func() {
		n.release()
		a.Close()
		b.Close()
	})
	return a, b, ea, eb, n
}

// fakeHub stands in for cgo/rdmacm's device hub (WatchDevices,
// DeviceLost) while a test runs; it counts its subscribers.
type fakeHub struct {
	mu   sync.Mutex
	subs map[int]func(rdmacm.DeviceEvent)
	next int
	lost map[string]bool
}

func useFakeHub(t *testing.T) *fakeHub {
	h := &fakeHub{subs: map[int]func(rdmacm.DeviceEvent){}, lost: map[string]bool{}}
	w, l := watchDevices, deviceLost
	watchDevices, deviceLost = h.watch, h.isLost
	t.Cleanup(func() { watchDevices, deviceLost = w, l })
	return h
}

func (h *fakeHub) watch(fn func(rdmacm.DeviceEvent)) func() {
	h.mu.Lock()
	k := h.next
	h.next++
	h.subs[k] = fn
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.subs, k)
		h.mu.Unlock()
	}
}

func (h *fakeHub) isLost(dev string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost[dev]
}

func (h *fakeHub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// publish reports ev to every subscriber, as the hub does.
func (h *fakeHub) publish(ev rdmacm.DeviceEvent) {
	h.mu.Lock()
	if ev.Lost {
		h.lost[ev.Device] = true
	} else {
		delete(h.lost, ev.Device)
	}
	fns := make([]func(rdmacm.DeviceEvent), 0, len(h.subs))
	for _, fn := range h.subs {
		fns = append(fns, fn)
	}
	h.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}
