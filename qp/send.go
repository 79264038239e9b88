package qp

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Send sends p as one message: the peer's Recv returns it whole. It
// returns once p is copied into the connection's registered buffers and
// posted, not when it has arrived; an error of the transfer shows in a later
// Send or Recv. A zero-length message is a message too.
//
// Errors (wrapped with the operation and the addresses):
//   - ErrClosed (net.ErrClosed) after Close, or when Close interrupts it;
//   - os.ErrDeadlineExceeded past the write deadline (part of a long message
//     may have been sent: the connection is then unusable, as a
//     truncated message cannot be recalled);
//   - unix.ECONNRESET when the peer went away (its process died, it
//     disconnected) or a work request failed;
//   - unix.ENETDOWN when the connection's RDMA device went away (a removal,
//     rdma link delete): the connection has freed everything it held of
//     the device by itself, at once, so that the removal can finish; Close
//     then returns nil.
func (c *Conn) Send(p []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	if err := c.brokenErr("send"); err != nil {
		return err
	}
	dl := deadline(&c.wdl)
	if ok, err := c.sendBulk(p); ok || err != nil {
		return err
	}
	frag := c.sendFrag
	for off := 0; off == 0 || off < len(p); {
		n := min(frag, len(p)-off)
		last := off+n == len(p)
		slot, err := c.sendSlot(dl)
		if err == nil {
			if err = c.waitCredit(dl); err != nil {
				c.sq.Lock()
				c.sq.free = append(c.sq.free, slot)
				c.sq.Unlock()
			}
		}
		if err != nil {
			if off > 0 {
				c.fail(fmt.Errorf("send interrupted after %d of %d bytes: %w", off, len(p), err))
			}
			return c.opErr("send", err)
		}
		at := c.lay.sendAt(slot)
		copy(c.mem[at:at+n], p[off:off+n])
		wr := sendWR{id: kindData | uint64(slot), op: opSend, off: at, n: n, inline: n <= c.t.maxInline()}
		var ret uint64
		if last {
			// The last SEND tells the peer how many buffers we have
			// given back, so a reply needs no credit write.
			ret = c.returned.Load()
			wr.op, wr.imm = opSendImm, immCredit|uint32(ret&creditMask)
		}
		c.sq.Lock()
		// Close may have come while we waited (its flush frees send
		// buffers too): under c.sq, closing is final.
		if err = c.broken(); err == nil {
			err = c.t.postSend(wr)
		}
		if err == nil {
			c.sq.out++
		} else {
			c.sq.free = append(c.sq.free, slot)
		}
		c.sq.Unlock()
		if err != nil {
			if e := c.brokenErr("send"); e != nil {
				return e
			}
			c.fail(err)
			return c.opErr("send", err)
		}
		c.sent++
		if last {
			advance(&c.written, ret)
		}
		off += n
		if len(p) == 0 {
			break
		}
	}
	return nil
}

// sendSlot returns a free send buffer, reaping completions and, when none
// is free, waiting on the send CQ.
func (c *Conn) sendSlot(dl time.Time) (int, error) {
	// The clock is read only when there is a spin to time, and only once
	// no slot was free: where the clock source is not the TSC (the guests'
	// hpet) time.Now is a system call.
	var spinEnd time.Time
	armed := false
	for {
		c.sq.Lock()
		if len(c.sq.free) == 0 {
			c.reapLocked()
		}
		if len(c.sq.free) == 0 && c.sq.nsend < c.lay.nsend {
			c.growSendLocked()
		}
		if k := len(c.sq.free); k > 0 {
			slot := c.sq.free[k-1]
			c.sq.free = c.sq.free[:k-1]
			c.sq.Unlock()
			return slot, nil
		}
		c.sq.Unlock()
		if err := c.broken(); err != nil {
			return 0, err
		}
		if !dl.IsZero() && time.Now().After(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		if c.opts.Spin > 0 {
			if spinEnd.IsZero() {
				spinEnd = time.Now().Add(c.opts.Spin)
			}
			if time.Now().Before(spinEnd) {
				continue
			}
		}
		if !armed {
			if err := c.t.sendCQ().arm(); err != nil {
				return 0, err
			}
			armed = true
			continue // poll once more: a completion may have come before Arm
		}
		if err := c.t.sendCQ().wait(); err != nil {
			if e := c.broken(); e != nil {
				return 0, e
			}
			return 0, err
		}
		armed = false
	}
}

// credits returns how many chunks the peer can take now, and whether its
// bulk area is free.
func (c *Conn) credits() (int, bool) {
	v, bv, ok := loadCredit(c.mem, ctrlCredit)
	p := c.peerRet.Load()
	if !ok {
		return c.peerDepth - int(c.sent-p), c.bulkSent == 0
	}
	return c.peerDepth - int(c.sent-max(v, p)), bv == c.bulkSent
}

// growSendLocked registers more send buffers, doubling them up to
// SendDepth: the sends keep every one busy. A failure to register leaves
// the connection with what it has. c.sq is held.
func (c *Conn) growSendLocked() {
	k := min(c.sq.nsend, c.lay.nsend-c.sq.nsend)
	if _, err := c.t.register(c.lay.sendAt(c.sq.nsend), k*c.lay.chunk, false); err != nil {
		c.sq.nsend = c.lay.nsend // do not try again
		return
	}
	for i := c.sq.nsend + k - 1; i >= c.sq.nsend; i-- {
		c.sq.free = append(c.sq.free, i)
	}
	c.sq.nsend += k
}

// peerOffer reads the peer's bulk offer, once it has come.
func (c *Conn) peerOffer() {
	if c.peerBulk > 0 || !c.peerMayBulk {
		return
	}
	addr, rkey, size, ok := loadOffer(c.mem, ctrlOffer)
	if ok && size > 0 {
		c.peerBulk, c.peerBulkAddr, c.peerBulkRKey = size, addr, rkey
	}
}

// sendBulk sends p as one RDMA WRITE with immediate into the peer's bulk
// area, when p is longer than a chunk and the layout's bulkMin, the peer offered an
// area it fits in, the area is free (the peer consumed the last one), our
// staging area is registered (the first time here) and free, and there is
// a credit (the write with immediate takes a receive buffer). It reports
// false, with no error, when any of that is not so: Send then uses SENDs.
func (c *Conn) sendBulk(p []byte) (bool, error) {
	n := len(p)
	if n <= c.sendFrag || n <= c.lay.bulkMin || n > c.lay.bulk || c.bulkOut < 0 {
		return false, nil
	}
	if c.peerOffer(); n > c.peerBulk {
		return false, nil
	}
	if c.bulkOut == 0 {
		if _, err := c.t.register(c.lay.bulkOut, c.lay.bulk, false); err != nil {
			c.bulkOut = -1 // SENDs from now on
			return false, nil
		}
		c.bulkOut = 1
	}
	cr, free := c.credits()
	if cr <= 0 || !free {
		return false, nil
	}
	c.sq.Lock()
	if c.sq.bulkBusy {
		c.reapLocked()
	}
	if c.sq.bulkBusy {
		c.sq.Unlock()
		return false, nil
	}
	if err := c.broken(); err != nil {
		c.sq.Unlock()
		return true, c.opErr("send", err)
	}
	copy(c.mem[c.lay.bulkOut:c.lay.bulkOut+n], p)
	err := c.t.postSend(sendWR{
		id:    kindBulk,
		op:    opWriteImm,
		off:   c.lay.bulkOut,
		n:     n,
		imm:   immBulk | uint32(n),
		raddr: c.peerBulkAddr,
		rkey:  c.peerBulkRKey,
	})
	if err == nil {
		c.sq.out++
		c.sq.bulkBusy = true
	}
	c.sq.Unlock()
	if err != nil {
		if e := c.brokenErr("send"); e != nil {
			return true, e
		}
		c.fail(err)
		return true, c.opErr("send", err)
	}
	c.sent++
	c.bulkSent++
	return true, nil
}

// waitCredit waits until the peer has a buffer for one more chunk. The
// peer's returns are RDMA writes into our memory, which raise no
// completion: it polls them, spinning first, then sleeping up to 100 µs.
func (c *Conn) waitCredit(dl time.Time) error {
	if cr, _ := c.credits(); cr > 0 {
		return nil
	}
	spinEnd := time.Now().Add(c.opts.Spin)
	pause := time.Microsecond
	for {
		if cr, _ := c.credits(); cr > 0 {
			return nil
		}
		if err := c.broken(); err != nil {
			return err
		}
		if !dl.IsZero() && time.Now().After(dl) {
			return os.ErrDeadlineExceeded
		}
		if time.Now().Before(spinEnd) {
			continue
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Microsecond)
	}
}

// writeCredit tells the peer how many buffers we have given back and how
// many bulk messages we consumed (an RDMA write of {returned, ^returned,
// bulkDone, ^bulkDone} into its credit word). With wait it waits
// for a free write slot (the writes in flight complete within a round
// trip); without, it gives up when none is free.
func (c *Conn) writeCredit(wait bool) {
	v, bv := c.returned.Load(), c.bulkDone
	if v <= c.written.Load() && bv == c.bulkWrit {
		return
	}
	end := time.Now().Add(time.Second)
	for pause := time.Microsecond; ; pause = min(2*pause, 100*time.Microsecond) {
		c.sq.Lock()
		if len(c.sq.credFree) == 0 {
			c.reapLocked()
		}
		if k := len(c.sq.credFree); k > 0 {
			slot := c.sq.credFree[k-1]
			c.sq.credFree = c.sq.credFree[:k-1]
			off := c.lay.credAt(slot)
			storeCredit(c.mem, off, v, bv)
			err := c.t.postSend(sendWR{
				id:     kindCredit | uint64(slot),
				op:     opWrite,
				off:    off,
				n:      creditLen,
				inline: true,
				raddr:  c.peerCtrl,
				rkey:   c.peerCtrlRKey,
			})
			if err == nil {
				c.sq.out++
				advance(&c.written, v)
				c.bulkWrit = bv
			} else {
				c.sq.credFree = append(c.sq.credFree, slot)
			}
			c.sq.Unlock()
			if err != nil && !c.closing.Load() {
				c.fail(fmt.Errorf("credit write: %w (%w)", err, unix.ECONNRESET))
			}
			return
		}
		c.sq.Unlock()
		if !wait || c.deadErr() != nil || c.closing.Load() || time.Now().After(end) {
			return
		}
		time.Sleep(pause)
	}
}
