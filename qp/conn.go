package qp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// Conn is a connected RC queue pair of a bound socket, carrying messages:
// each Send is one Recv on the other side, whatever its size (long messages
// travel as several RDMA SENDs of at most Chunk bytes, the last one with
// immediate data). Flow control is by credit: the receiver RDMA-writes how
// many buffers it has given back, so a sender never overruns it.
//
// One Send and one Recv may run at the same time (each is serialized with
// its kind). Close may be called at any time, also concurrently; it is safe
// to call twice.
type Conn struct {
	mode   Mode
	local  netip.AddrPort // the socket's address and port
	remote netip.AddrPort // the peer socket's address and port (its logical port)
	opts   Options
	lay    layout    // where everything sits in mem
	t      transport // the QP and its memory (transport.go)
	link   link      // the rdma_cm id and channel, or the rendezvous TCP connection
	mem    []byte    // t.mem().buf
	tries  int       // connects Dial made (more than 1: a listener handed over)

	ctrlKey uint32 // the rkey of our control page and receive buffers

	// What the peer told: its buffers, and where our credit returns go.
	peerDepth    int
	peerChunk    int
	peerCtrl     uint64
	peerCtrlRKey uint32
	peerMayBulk  bool   // the peer may offer a bulk area (its hello)
	peerBulk     int    // the peer's bulk area, once offered (0: none yet)
	peerBulkAddr uint64 // where it is
	peerBulkRKey uint32 // and its key

	sendMu   sync.Mutex
	sent     uint64        // chunks sent (each takes a credit)
	peerRet  atomic.Uint64 // the peer's returned count, as its SENDs' immediates told (Recv writes it)
	bulkSent uint64        // bulk messages written
	sendFrag int           // min(our chunk, peer's chunk)
	bulkOut  int           // our staging area: 1 registered, -1 failed to, 0 not yet

	// sq guards the send queue: free buffers, credit write slots, reaping.
	sq struct {
		sync.Mutex
		free     []int
		nsend    int // send buffers registered (the first nsend)
		credFree []int
		out      int // WRs posted and not completed
		byeDone  bool
		bulkBusy bool // the staging area is in a write not completed
		wcs      [32]completion
	}

	recvMu   sync.Mutex
	pending  []completion // polled, not consumed yet
	pendBuf  [32]completion
	returned atomic.Uint64 // receive buffers given back (re-posted; Send reads it)
	written  atomic.Uint64 // the most the peer has been told (credit word or a SEND's immediate)
	bulkDone uint64        // bulk messages consumed
	bulkWrit uint64        // the last bulkDone written to the peer
	recvOut  int           // receive WRs posted and not completed
	rposted  int           // receive buffers registered and in use (the first rposted)
	offered  bool          // our bulk area is registered and offered
	eof      bool

	closing   atomic.Bool
	appClosed atomic.Bool           // the app called Close
	lost      atomic.Bool           // the device went: the connection tears itself down
	lostOnce  sync.Once             // starts that teardown
	dead      atomic.Pointer[error] // why the connection broke (nil: fine)
	rdl       atomic.Pointer[time.Time]
	wdl       atomic.Pointer[time.Time]

	closeOnce sync.Once
	closeErr  error
	monDone   chan struct{}

	devMu   sync.Mutex
	stopDev func() // ends the subscription to the device hub (nil: none)
}

const (
	kindData   = 1 << 32
	kindCredit = 2 << 32
	kindBye    = 3 << 32
	kindBulk   = 4 << 32
	kindOffer  = 5 << 32
	kindMask   = 0xff << 32

	immData = 1
	immBye  = 2
	// immBulk marks an RDMA WRITE with immediate of a whole message into
	// the bulk area; the low 31 bits are its length.
	immBulk = 1 << 31
	// immCredit marks the last SEND of a message that carries the
	// sender's returned count (its low 30 bits) as well: the credit a
	// reply brings back without an RDMA WRITE of the credit word.
	immCredit  = 1 << 30
	creditMask = immCredit - 1
)

// dataEnd reports whether imm ends a message of SENDs.
func dataEnd(imm uint32) bool { return imm == immData || imm&(immBulk|immCredit) == immCredit }

// advance raises a to v, if v is larger.
func advance(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// LocalAddr is the bound socket's address and port.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// RemoteAddr is the peer socket's address and port. In rdma_cm mode the
// port is the one the peer's socket is bound to, as its hello says, not the
// rdma_cm port its connecting id used.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// Mode is how the connection was set up.
func (c *Conn) Mode() Mode { return c.mode }

// Tries is how many connects Dial made for the connection: more than 1
// when a closing listener asked it to dial again (docs/qp.md, "A
// listener's handover"); 0 for an accepted connection.
func (c *Conn) Tries() int { return c.tries }

// Chunk is the largest single RDMA SEND of the connection.
func (c *Conn) Chunk() int { return c.sendFrag }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline bounds Recv, also one waiting now; the zero time removes
// the bound. Past the deadline Recv fails with an error matching
// os.ErrDeadlineExceeded.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(&t)
	return c.t.recvCQ().setDeadline(t)
}

// SetWriteDeadline bounds Send in the same way.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	return c.t.sendCQ().setDeadline(t)
}

func deadline(p *atomic.Pointer[time.Time]) time.Time {
	if t := p.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// fail records why the connection broke (the first reason wins), moves
// the QP to the error state, which flushes the posted work requests, and
// wakes a waiting Recv or Send.
func (c *Conn) fail(err error) {
	if c.dead.CompareAndSwap(nil, &err) {
		c.t.setError()
		c.wake()
	}
}

// wake ends the waits on both completion channels (their deadlines set in
// the past): rxe does not always flush the receives of a QP in the error
// state, so the flush alone might not wake a Recv.
func (c *Conn) wake() {
	past := time.Unix(1, 0)
	c.t.recvCQ().setDeadline(past)
	c.t.sendCQ().setDeadline(past)
}

func (c *Conn) deadErr() error {
	if p := c.dead.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *Conn) opErr(op string, err error) error {
	return fmt.Errorf("qp %s %v->%v: %w", op, c.local, c.remote, err)
}

// broken is why the connection cannot be used, or nil: ErrClosed once
// Close has begun (the app's, or one that interrupted a call), why it
// broke otherwise; a connection that tore itself down because its device
// went says so (the device's error) until the app's own Close. brokenErr
// is the same wrapped with op and the addresses.
func (c *Conn) broken() error {
	if c.closing.Load() {
		if c.lost.Load() && !c.appClosed.Load() {
			if err := c.deadErr(); err != nil {
				return err
			}
		}
		return ErrClosed
	}
	return c.deadErr()
}

func (c *Conn) brokenErr(op string) error {
	if err := c.broken(); err != nil {
		return c.opErr(op, err)
	}
	return nil
}

// start finishes a connection whose QP is connected (t and link set, the
// receive buffers posted): the free lists, and the goroutine that watches
// the link.
func (c *Conn) start(peer hello) {
	c.peerDepth = int(peer.recvDepth)
	c.peerChunk = int(peer.chunk)
	c.peerCtrl = peer.ctrlAddr
	c.peerCtrlRKey = peer.ctrlKey
	c.sendFrag = min(c.lay.chunk, c.peerChunk)
	c.peerMayBulk = peer.bulk > 0
	c.sq.free = make([]int, c.lay.send0, c.lay.nsend)
	for i := range c.sq.free {
		c.sq.free[i] = c.lay.send0 - 1 - i
	}
	c.sq.nsend = c.lay.send0
	c.sq.credFree = make([]int, creditSlots)
	for i := range c.sq.credFree {
		c.sq.credFree[i] = i
	}
	dev := c.link.device()
	c.monDone = make(chan struct{})
	go c.watch()
	if dev == "" {
		return
	}
	// The device may also go without an event on our link (rdma_cm's
	// DEVICE_REMOVAL comes only to ids the kernel attached to it, and
	// uverbs may go first): the process's device hub sees every loss.
	c.devMu.Lock()
	c.stopDev = watchDevices(func(ev rdmacm.DeviceEvent) {
		if ev.Lost && ev.Device == dev {
			c.lose(&deviceLostError{dev: dev, how: "device lost"})
		}
	})
	c.devMu.Unlock()
	if deviceLost(dev) { // lost before we subscribed
		c.lose(&deviceLostError{dev: dev, how: "device lost"})
	}
}

// The process's device hub (cgo/rdmacm), a variable for the tests.
var (
	watchDevices = rdmacm.WatchDevices
	deviceLost   = rdmacm.DeviceLost
)

// watch breaks the connection on what its link reports (a disconnect, the
// peer's death, a device removal), until Close closes the link. A device
// removal tears the connection down.
func (c *Conn) watch() {
	defer close(c.monDone)
	c.link.watch(func(err error) {
		var dl *deviceLostError
		if errors.As(err, &dl) {
			c.lose(err)
			return
		}
		if !c.closing.Load() {
			c.fail(err)
		}
	})
}

// lose breaks the connection because its device went (err matches
// unix.ENETDOWN), wakes Send and Recv, and frees everything at once, as
// Close does but without the goodbye, in a goroutine of its own (the
// teardown waits for watch, which may be the caller): the device cannot
// finish going while the process holds anything of it, whatever the app
// is doing. Send and Recv then fail with err; the app's Close returns nil.
func (c *Conn) lose(err error) {
	c.fail(err)
	c.lostOnce.Do(func() {
		c.lost.Store(true)
		go c.closeOnce.Do(func() { c.closeErr = c.close() })
	})
}

// setTransport gives the connection its transport, whose memory was made
// for c.lay.
func (c *Conn) setTransport(t transport) {
	c.t = t
	c.mem = t.mem().buf
}

// postRecvs registers what a connection starts with (the control page
// and the first receive buffers, the first send buffers) and posts those
// receive buffers.
func (c *Conn) postRecvs() error {
	var err error
	if c.ctrlKey, err = c.t.register(0, c.lay.recvAt(c.lay.recv0), true); err != nil {
		return err
	}
	if _, err = c.t.register(c.lay.sendOff, c.lay.send0*c.lay.chunk, false); err != nil {
		return err
	}
	for i := 0; i < c.lay.recv0; i++ {
		if err := c.t.postRecv(uint64(i), c.lay.recvAt(i), c.lay.chunk); err != nil {
			return err
		}
		c.recvOut++
		c.rposted++
	}
	return nil
}

// hello is our half of the handshake, for the socket's port.
func (c *Conn) hello(port uint16) hello {
	return hello{
		mode:      c.mode,
		port:      port,
		recvDepth: uint32(c.lay.recv0 - 1), // the extra buffer is the goodbye's
		chunk:     uint32(c.lay.chunk),
		ctrlAddr:  c.t.mem().addr,
		ctrlKey:   c.ctrlKey,
		bulk:      uint8(c.lay.bulk / bulkUnit),
	}
}

// freeSetup frees what a failed setup got, in order: the transport, then
// the link.
func (c *Conn) freeSetup() {
	if c.t != nil {
		c.t.close()
	}
	if c.link != nil {
		c.link.close()
	}
}

// Close says goodbye to the peer (its Recv then returns io.EOF), tears
// the connection down (rdma_disconnect, or the rendezvous TCP connection),
// moves the QP to the error state and drains both completion queues, and
// frees everything in order: QP, CQs, MR, memory, PD, then the rdma_cm id
// and its event channel (or the TCP connection). A Send or Recv waiting
// returns an error matching ErrClosed. Safe to call more than once; later
// calls return nil. A connection whose device went away has done all this
// by itself already (see Send): its Close returns nil at once.
//
// Errors: those of freeing (joined); the connection is gone regardless.
func (c *Conn) Close() error {
	c.appClosed.Store(true)
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.closeErr = c.close()
	})
	if !first {
		return nil
	}
	return c.closeErr
}

func (c *Conn) close() error {
	c.devMu.Lock()
	stop := c.stopDev
	c.stopDev = nil
	c.devMu.Unlock()
	if stop != nil {
		stop()
	}
	if c.deadErr() == nil {
		c.sayBye(time.Second)
	}
	c.sq.Lock() // a Send posts under c.sq: it posts before this, or sees closing
	c.closing.Store(true)
	c.sq.Unlock()
	c.link.disconnect()
	c.t.setError()
	c.wake()
	// A Send or Recv waiting wakes on the flush; wait for them to go.
	c.sendMu.Lock()
	c.recvMu.Lock()
	c.drain(time.Second)
	c.recvMu.Unlock()
	c.sendMu.Unlock()
	errs := []error{c.t.close(), c.link.close()} // the link's close ends watch
	if c.monDone != nil {
		<-c.monDone
	}
	return errors.Join(errs...)
}

// sayBye posts the goodbye (a zero-length SEND with immediate immBye,
// into the peer's extra receive buffer) and waits for its completion.
func (c *Conn) sayBye(limit time.Duration) {
	c.sq.Lock()
	err := c.t.postSend(sendWR{id: kindBye, op: opSendImm, imm: immBye})
	if err == nil {
		c.sq.out++
	}
	c.sq.Unlock()
	if err != nil {
		return
	}
	end := time.Now().Add(limit)
	for pause := time.Microsecond; time.Now().Before(end); pause = min(2*pause, time.Millisecond) {
		c.sq.Lock()
		c.reapLocked()
		done := c.sq.byeDone
		c.sq.Unlock()
		if done || c.deadErr() != nil {
			return
		}
		time.Sleep(pause)
	}
}

// drain polls both CQs until every posted work request has completed
// (flushed), or nothing has completed for drainIdle, or limit passes. The
// QP is in the error state: the device reads and writes none of our memory
// any more, so a work request that never completes is only bookkeeping.
// (rxe on Linux 6.1 does not flush every posted receive of a QP moved to
// the error state when no packet comes: without the idle bound, Close of a
// broken connection would always wait the full limit.)
func (c *Conn) drain(limit time.Duration) {
	const drainIdle = 50 * time.Millisecond
	// What a Recv polled and did not consume has completed.
	c.recvOut -= len(c.pending)
	c.pending = nil
	start := time.Now()
	lastProgress := start
	for pause := time.Microsecond; ; pause = min(2*pause, time.Millisecond) {
		c.sq.Lock()
		before := c.sq.out
		c.reapLocked()
		out := c.sq.out
		c.sq.Unlock()
		progress := out != before
		for c.recvOut > 0 {
			n, err := c.t.recvCQ().poll(c.pendBuf[:])
			if err != nil || n == 0 {
				break
			}
			c.recvOut -= n
			progress = true
		}
		c.pending = nil
		now := time.Now()
		if progress {
			lastProgress = now
		}
		if (out <= 0 && c.recvOut <= 0) || now.Sub(start) > limit || now.Sub(lastProgress) > drainIdle {
			return
		}
		time.Sleep(pause)
	}
}

// reapLocked polls the send CQ and frees the buffers and slots of the
// completed work requests. c.sq is held.
func (c *Conn) reapLocked() {
	for {
		n, err := c.t.sendCQ().poll(c.sq.wcs[:])
		if err != nil || n == 0 {
			return
		}
		for _, wc := range c.sq.wcs[:n] {
			c.sq.out--
			switch wc.id & kindMask {
			case kindData:
				c.sq.free = append(c.sq.free, int(wc.id&0xffffffff))
			case kindCredit:
				c.sq.credFree = append(c.sq.credFree, int(wc.id&0xffffffff))
			case kindBye:
				c.sq.byeDone = true
			case kindBulk:
				c.sq.bulkBusy = false
			case kindOffer:
			}
			if err := wc.err; err != nil && !c.closing.Load() {
				c.fail(fmt.Errorf("send completion: %w (%w)", err, unix.ECONNRESET))
			}
		}
	}
}
