package qp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Recv receives the next message into p and returns its length. A message
// longer than p fills p and the rest is dropped (ErrTruncated).
//
// Errors (wrapped with the operation and the addresses):
//   - io.EOF once the peer closed the connection and every message it sent
//     was received;
//   - ErrTruncated (n is len(p));
//   - ErrClosed (net.ErrClosed) after Close, or when Close interrupts it;
//   - os.ErrDeadlineExceeded past the read deadline (nothing of the message
//     is lost: the next Recv goes on with it, from its start when nothing
//     of it had arrived, else the connection is broken);
//   - unix.ECONNRESET when the peer went away without closing (its process
//     died) or the transport failed;
//   - unix.ENETDOWN when the connection's RDMA device went away (the
//     connection has freed itself; messages not yet received are lost).
func (c *Conn) Recv(p []byte) (int, error) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if c.eof {
		return 0, io.EOF
	}
	if c.closing.Load() { // the transport may be freed: touch nothing
		return 0, c.brokenErr("recv")
	}
	n, got, trunc := 0, 0, false
	for {
		wc, err := c.nextRecv(got > 0)
		if err != nil {
			if got > 0 && !errors.Is(err, ErrClosed) {
				c.fail(fmt.Errorf("recv interrupted inside a message: %w", err))
			}
			return n, err
		}
		c.recvOut--
		if err := wc.err; err != nil {
			if e := c.brokenErr("recv"); e != nil {
				return n, e
			}
			err = fmt.Errorf("receive completion: %w (%w)", err, unix.ECONNRESET)
			c.fail(err)
			return n, c.opErr("recv", err)
		}
		slot := int(wc.id)
		if wc.hasImm && wc.imm == immBye {
			c.eof = true
			return 0, io.EOF
		}
		if wc.hasImm && wc.imm&immBulk != 0 {
			return c.recvBulk(p, wc, got)
		}
		at := c.lay.recvAt(slot)
		k := copy(p[n:], c.mem[at:at+wc.n])
		n += k
		if k < wc.n {
			trunc = true
		}
		got++
		if err := c.repost(slot); err != nil {
			return n, err
		}
		if c.rposted < c.lay.nrecv && len(c.pending) >= (c.rposted-1)/2 {
			c.growRecv()
		}
		if c.returned.Load()-c.written.Load() >= uint64(max(c.rposted/2, 1)) {
			c.writeCredit(false)
		}
		if wc.hasImm && dataEnd(wc.imm) {
			if wc.imm&immCredit != 0 {
				c.notePeerReturned(wc.imm & creditMask)
			}
			if !c.offered && c.lay.bulk > 0 && n > c.lay.bulkMin {
				c.offerBulk()
			}
			if trunc {
				return n, c.opErr("recv", ErrTruncated)
			}
			return n, nil
		}
	}
}

// nextRecv returns the next receive completion: polled already, polled
// now, or waited for (spinning for Spin, then on the completion channel).
//
// Credits go back in three ways: in the immediate of our own messages'
// last SEND (Send: a reply carries them), by an RDMA WRITE of the credit
// word once half the posted buffers are re-posted and untold (Recv), and
// by that write here, before waiting, for every buffer still untold. So a
// receiver that waits has returned everything: a sender never waits on a
// receiver that is waiting itself, and a ping-pong writes no credit word.
func (c *Conn) nextRecv(inMessage bool) (completion, error) {
	if len(c.pending) > 0 {
		wc := c.pending[0]
		c.pending = c.pending[1:]
		return wc, nil
	}
	if c.returned.Load() > c.written.Load() || c.bulkDone != c.bulkWrit {
		c.writeCredit(true)
	}
	rcq := c.t.recvCQ()
	// No clock read without a spin (event mode): where the clock source
	// is not the TSC (the guests' hpet), time.Now is a system call.
	var spinEnd time.Time
	if c.opts.Spin > 0 {
		spinEnd = time.Now().Add(c.opts.Spin)
	}
	got := func(n int) (completion, error) {
		c.pending = c.pendBuf[1:n]
		return c.pendBuf[0], nil
	}
	for {
		// Spin (in C) while Spin lasts; then arm and poll, sleep on the
		// completion channel and poll: two calls into C per wake-up.
		var n int
		var err error
		armed := false
		if left := spinLeft(spinEnd); left > 0 {
			n, err = rcq.pollSpin(c.pendBuf[:], left)
		} else {
			n, err = rcq.pollArm(c.pendBuf[:])
			armed = true
		}
		if err == nil && n > 0 {
			return got(n)
		}
		if e := c.brokenErr("recv"); e != nil {
			return completion{}, e
		}
		if err != nil {
			return completion{}, c.opErr("recv", err)
		}
		dl := deadline(&c.rdl)
		if !dl.IsZero() && time.Now().After(dl) {
			return completion{}, c.opErr("recv", os.ErrDeadlineExceeded)
		}
		if !armed {
			continue
		}
		n, err = rcq.waitPoll(c.pendBuf[:])
		if err == nil && n > 0 {
			return got(n)
		}
		if err != nil {
			// Woken by a deadline, or by fail: what completed before
			// still comes first.
			if n, perr := rcq.poll(c.pendBuf[:]); perr == nil && n > 0 {
				return got(n)
			}
			if e := c.brokenErr("recv"); e != nil {
				return completion{}, e
			}
			return completion{}, c.opErr("recv", err)
		}
	}
}

// recvBulk takes a message the peer RDMA-wrote into our bulk area: it
// copies it out, re-posts the receive buffer the write's immediate took,
// and tells the peer the area is free again.
func (c *Conn) recvBulk(p []byte, wc completion, got int) (int, error) {
	size := int(wc.imm &^ immBulk)
	if got > 0 || !c.offered || size > c.lay.bulk {
		err := fmt.Errorf("bulk message of %d bytes (area %d, %d chunks before it): %w", size, c.lay.bulk, got, ErrProtocol)
		c.fail(err)
		return 0, c.opErr("recv", err)
	}
	n := copy(p, c.mem[c.lay.bulkIn:c.lay.bulkIn+size])
	slot := int(wc.id)
	if err := c.repost(slot); err != nil {
		return n, err
	}
	c.bulkDone++
	c.writeCredit(false)
	if n < size {
		return n, c.opErr("recv", ErrTruncated)
	}
	return n, nil
}

// repost posts receive slot again once its message is copied out, and
// counts it as a credit to return. A failure breaks the connection; the
// error is the one Recv returns.
func (c *Conn) repost(slot int) error {
	if err := c.t.postRecv(uint64(slot), c.lay.recvAt(slot), c.lay.chunk); err != nil {
		if e := c.brokenErr("recv"); e != nil {
			return e
		}
		c.fail(err)
		return c.opErr("recv", err)
	}
	c.recvOut++
	c.returned.Add(1)
	return nil
}

// notePeerReturned takes the peer's returned count from the low 30 bits
// of a SEND's immediate: the full count is the one we know raised by the
// difference (the counts only grow, never by 2^30 between two tellings).
func (c *Conn) notePeerReturned(low uint32) {
	k := c.peerRet.Load()
	advance(&c.peerRet, k+uint64((low-uint32(k))&creditMask))
}

// growRecv registers and posts more receive buffers, doubling the
// credits up to RecvDepth, and gives them to the peer as credits: the
// messages arrive faster than Recv takes them (more than half the credits
// were waiting in the completion queue). A failure to register leaves the
// connection with what it has.
func (c *Conn) growRecv() {
	from := c.rposted
	k := min(from-1, c.lay.nrecv-from)
	if _, err := c.t.register(c.lay.recvAt(from), k*c.lay.chunk, true); err != nil {
		c.rposted = c.lay.nrecv // do not try again
		return
	}
	for i := from; i < from+k; i++ {
		if err := c.t.postRecv(uint64(i), c.lay.recvAt(i), c.lay.chunk); err != nil {
			c.fail(err)
			return
		}
		c.recvOut++
		c.rposted++
		c.returned.Add(1) // a new buffer is a credit, as a returned one is
	}
	c.writeCredit(false)
}

// offerBulk registers our bulk area and offers it to the peer (an RDMA
// write of the offer into its control page): a message longer than
// the layout's bulkMin arrived as SENDs, so the next ones may come in one RDMA WRITE. A
// failure to register leaves the connection without one.
func (c *Conn) offerBulk() {
	c.offered = true // once, whatever comes of it
	rkey, err := c.t.register(c.lay.bulkIn, c.lay.bulk, true)
	if err != nil {
		return
	}
	c.sq.Lock()
	defer c.sq.Unlock()
	storeOffer(c.mem, ctrlOfferTx, c.t.mem().addr+uint64(c.lay.bulkIn), rkey, c.lay.bulk)
	err = c.t.postSend(sendWR{
		id:     kindOffer,
		op:     opWrite,
		off:    ctrlOfferTx,
		n:      offerLen,
		inline: true,
		raddr:  c.peerCtrl + ctrlOffer,
		rkey:   c.peerCtrlRKey,
	})
	if err == nil {
		c.sq.out++
	} else if !c.closing.Load() {
		c.fail(fmt.Errorf("bulk offer: %w (%w)", err, unix.ECONNRESET))
	}
}

// spinLeft is how long a spin that ends at end has left; 0 without a spin
// (the zero end), read without the clock.
func spinLeft(end time.Time) time.Duration {
	if end.IsZero() {
		return 0
	}
	return time.Until(end)
}
