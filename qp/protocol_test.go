package qp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The protocol on the fake transport (fake_test.go): no device, no root,
// with the race detector in `make test`. Each test names what it proves.

// msg is message i of size bytes (contents a function of i).
func msg(i, size int) []byte {
	b := make([]byte, size)
	fill(b, i)
	return b
}

func sendAsync(c *Conn, p []byte) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.Send(p) }()
	return ch
}

type recvResult struct {
	b   []byte
	err error
}

func recvAsync(c *Conn, size int) <-chan recvResult {
	ch := make(chan recvResult, 1)
	go func() {
		b := make([]byte, size)
		n, err := c.Recv(b)
		ch <- recvResult{b[:n], err}
	}()
	return ch
}

// blocked fails the test if ch delivers within d.
func blocked[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned (%v); want it still blocked", what, v)
	case <-time.After(d):
	}
}

// within returns what ch delivers, failing the test after d.
func within[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s still blocked after %v", what, d)
	}
	panic("unreachable")
}

// eventually waits for cond, failing the test after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not after %v: %s", d, what)
		}
	}
}

// recvCheck receives one message on c and checks it is want.
func recvCheck(t *testing.T, c *Conn, want []byte) {
	t.Helper()
	buf := make([]byte, len(want)+128)
	n, err := c.Recv(buf)
	if err != nil {
		t.Fatalf("recv (want %d bytes): %v", len(want), err)
	}
	if !bytes.Equal(buf[:n], want) {
		t.Fatalf("received %d bytes, want %d; contents equal: %v", n, len(want), bytes.Equal(buf[:min(n, len(want))], want[:min(n, len(want))]))
	}
}

func mustSend(t *testing.T, c *Conn, p []byte) {
	t.Helper()
	if err := c.Send(p); err != nil {
		t.Fatalf("send %d bytes: %v", len(p), err)
	}
}

// noRNR fails the test if a send met no posted receive: the credits exist
// to make that impossible.
func noRNR(t *testing.T, n *fakeNet) {
	t.Helper()
	if r := n.rnrs(); r != 0 {
		t.Fatalf("%d sends found no receive posted (RNR): %v", r, n.events(""))
	}
}

// small is the options of most tests: 64-byte chunks, 8 receive buffers
// all posted from the start (credit 8, half of the 9 posted is 4), bulk
// off, event mode.
func small() *Options {
	return &Options{Chunk: 64, RecvDepth: 8, RecvStart: 8, SendDepth: 16, SendStart: 16, Bulk: -1, Spin: -1}
}

// TestCreditExhaustionBlocksSendUntilHalfIsReturned: with the peer's 8
// buffers full, the 9th chunk waits; the receiver consuming messages
// returns nothing while fewer than half its 9 posted buffers (4) are
// re-posted and untold (it has more messages waiting, so it does not wait
// itself), the fourth returns four credits by one RDMA WRITE, and the Send
// goes on. No send ever meets an RNR.
func TestCreditExhaustionBlocksSendUntilHalfIsReturned(t *testing.T) {
	a, b, ea, eb, n := fakePair(t, small(), small())
	var sent [][]byte
	for i := range 8 {
		m := msg(i, 1+i*7)
		mustSend(t, a, m)
		sent = append(sent, m)
	}
	if cr, _ := a.credits(); cr != 0 {
		t.Fatalf("after 8 chunks to 8 buffers: %d credits, want 0", cr)
	}
	ninth := msg(8, 64)
	sent = append(sent, ninth)
	done := sendAsync(a, ninth)
	blocked(t, done, 50*time.Millisecond, "the 9th Send without credit")
	if got := ea.opCount(opSendImm); got != 8 {
		t.Fatalf("%d messages delivered, want 8", got)
	}

	for i := range 3 {
		recvCheck(t, b, sent[i])
		if w := eb.opCount(opWrite); w != 0 {
			t.Fatalf("the receiver wrote credits %d times after returning %d buffers; want none before half (4)", w, i+1)
		}
	}
	blocked(t, done, 50*time.Millisecond, "Send with 3 buffers re-posted but not returned")

	recvCheck(t, b, sent[3])
	if w := eb.opCount(opWrite); w != 1 {
		t.Fatalf("credit writes after 4 buffers re-posted: %d, want 1", w)
	}
	if err := within(t, done, 5*time.Second, "Send after 4 credits came back"); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent[4:] {
		recvCheck(t, b, m)
	}
	noRNR(t, n)
}

// TestReceiverAboutToWaitReturnsEverything: a receiver that has consumed
// every message and calls Recv again writes its untold credits (fewer than
// half, which Recv itself keeps back) before it waits, so the sender has
// all its credit while the receiver waits.
func TestReceiverAboutToWaitReturnsEverything(t *testing.T) {
	a, b, _, eb, n := fakePair(t, small(), small())
	var sent [][]byte
	for i := range 6 {
		m := msg(i, 10)
		mustSend(t, a, m)
		sent = append(sent, m)
	}
	for _, m := range sent {
		recvCheck(t, b, m) // the 4th writes 4 credits; 2 stay untold
	}
	if w := eb.opCount(opWrite); w != 1 {
		t.Fatalf("credit writes after 6 messages: %d, want 1 (at the 4th)", w)
	}
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 100)
		k, err := b.Recv(buf)
		if err != nil {
			t.Error(err)
		}
		got <- buf[:k]
	}()
	for end := time.Now().Add(5 * time.Second); eb.opCount(opWrite) != 2; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the receiver waits in Recv without returning its 2 untold buffers")
		}
	}
	a.sendMu.Lock()
	cr, _ := a.credits()
	a.sendMu.Unlock()
	if cr != a.peerDepth {
		t.Fatalf("the sender's credit while the receiver waits: %d, want all %d", cr, a.peerDepth)
	}
	last := msg(9, 10)
	mustSend(t, a, last)
	select {
	case m := <-got:
		if !bytes.Equal(m, last) {
			t.Fatalf("got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv did not get the message")
	}
	noRNR(t, n)
}

// TestPingPongWritesNoCreditWord: in a ping-pong each reply's last SEND
// carries the replier's returned count in its immediate, so neither side
// ever RDMA-writes a credit word, however long it goes on.
func TestPingPongWritesNoCreditWord(t *testing.T) {
	o := &Options{Chunk: 64, Bulk: -1, Spin: -1}
	a, b, ea, eb, n := fakePair(t, o, o)
	for i := range 100 {
		m := msg(i, 40)
		mustSend(t, a, m)
		recvCheck(t, b, m)
		r := msg(1000+i, 30)
		mustSend(t, b, r)
		recvCheck(t, a, r)
	}
	if wa, wb := ea.opCount(opWrite), eb.opCount(opWrite); wa != 0 || wb != 0 {
		t.Fatalf("credit words written in a ping-pong: %d by a, %d by b; want none", wa, wb)
	}
	a.sendMu.Lock()
	cr, _ := a.credits()
	a.sendMu.Unlock()
	if cr != a.peerDepth {
		t.Fatalf("a's credit after the ping-pong: %d, want all %d", cr, a.peerDepth)
	}
	noRNR(t, n)
}

// TestCreditHalfRuleLeavesSenderCredit: after each Recv, fewer than half
// of the receiver's posted buffers are re-posted and not yet returned, so
// a sender has at least RecvDepth - half + 1 credits whenever the receiver
// is between two Recvs (and all of them once it waits in one); and
// messages many times the credit (the receiver returning credits in the
// middle of a message) go through.
func TestCreditHalfRuleLeavesSenderCredit(t *testing.T) {
	for _, spin := range []time.Duration{-1, 50 * time.Microsecond} {
		o := small()
		o.Spin = spin
		a, b, _, _, n := fakePair(t, o, o)
		half := uint64(max(b.lay.nrecv/2, 1)) // of the posted buffers
		for k := 1; k <= 3*8; k++ {
			m := msg(k, k*64-k%3)
			done := sendAsync(a, m)
			recvCheck(t, b, m)
			if err := within(t, done, 5*time.Second, "Send"); err != nil {
				t.Fatal(err)
			}
			b.recvMu.Lock()
			unreturned := b.returned.Load() - b.written.Load()
			b.recvMu.Unlock()
			if unreturned >= half {
				t.Fatalf("message of %d chunks: %d buffers unreturned after Recv, want < %d", k, unreturned, half)
			}
			// The receiver now waits in Recv: the sender must have credit.
			a.sendMu.Lock()
			cr, _ := a.credits()
			a.sendMu.Unlock()
			if want := a.peerDepth - int(half) + 1; cr < want {
				t.Fatalf("message of %d chunks: sender has %d credits while the receiver waits, want >= %d", k, cr, want)
			}
		}
		noRNR(t, n)
	}
}

// TestChunkingSplitsMessagesLargerThanAChunk: a message of n bytes goes as
// ceil(n/chunk) SENDs, only the last with immediate data (one empty SEND
// with immediate for n = 0), and arrives whole; the chunk is the smaller
// of the two sides' (a sends 64-byte chunks to b's 64-byte buffers though
// its own are 256).
func TestChunkingSplitsMessagesLargerThanAChunk(t *testing.T) {
	oa := small()
	oa.Chunk = 256
	a, b, ea, _, n := fakePair(t, oa, small())
	if a.Chunk() != 64 || b.Chunk() != 64 {
		t.Fatalf("chunks %d and %d, want the smaller one, 64", a.Chunk(), b.Chunk())
	}
	for i, size := range []int{0, 1, 63, 64, 65, 128, 129, 64*20 + 7} {
		m := msg(i, size)
		s0, i0 := ea.opCount(opSend), ea.opCount(opSendImm)
		done := sendAsync(a, m)
		recvCheck(t, b, m)
		if err := within(t, done, 5*time.Second, "Send"); err != nil {
			t.Fatal(err)
		}
		chunks := max((size+63)/64, 1)
		if s, imm := ea.opCount(opSend)-s0, ea.opCount(opSendImm)-i0; s != chunks-1 || imm != 1 {
			t.Errorf("%d bytes: %d SENDs and %d SENDs with immediate, want %d and 1", size, s, imm, chunks-1)
		}
	}
	noRNR(t, n)
}

// bulkOpts: 256-byte chunks and a 64 KiB bulk area.
func bulkOpts() *Options {
	return &Options{Chunk: 256, RecvDepth: 8, RecvStart: 8, SendStart: 16, Bulk: 64 << 10, Spin: -1}
}

// bulkPair is fakePair with bulkOpts on both sides, bulkMin lowered to a
// chunk on both (so that messages of a few chunks take the bulk path),
// and b's bulk area offered to a: a sent a long message (as SENDs), b
// received it and offered its area. The operation counts start after
// that.
func bulkPair(t *testing.T) (a, b *Conn, ea, eb *fakeEnd, n *fakeNet) {
	t.Helper()
	a, b, ea, eb, n = fakePair(t, bulkOpts(), bulkOpts())
	a.lay.bulkMin, b.lay.bulkMin = a.lay.chunk, b.lay.chunk
	m := msg(99, 3*a.lay.chunk)
	done := sendAsync(a, m)
	recvCheck(t, b, m)
	if err := within(t, done, 5*time.Second, "the Send that makes b offer its area"); err != nil {
		t.Fatal(err)
	}
	a.sendMu.Lock()
	a.peerOffer()
	offered := a.peerBulk
	a.sendMu.Unlock()
	if offered != b.lay.bulk {
		t.Fatalf("after a long message: a sees a bulk area of %d bytes, want b's %d", offered, b.lay.bulk)
	}
	// b returns the buffers of that message, as a receiver about to wait
	// does: the tests start with a's full credit.
	b.recvMu.Lock()
	b.writeCredit(true)
	b.recvMu.Unlock()
	n.mu.Lock()
	ea.ops, eb.ops = map[wrOp]int{}, map[wrOp]int{}
	n.mu.Unlock()
	return a, b, ea, eb, n
}

// TestBulkAreaRegisteredAndOfferedOnFirstLongMessage: neither bulk area
// is registered at setup; a message longer than bulkMin goes as SENDs and
// makes the receiver register its area and offer it (one RDMA WRITE into
// the sender's control page); the next goes as one RDMA WRITE with
// immediate, from a staging area the sender registers then. A receiver
// without a bulk area never offers one.
func TestBulkAreaRegisteredAndOfferedOnFirstLongMessage(t *testing.T) {
	a, b, ea, eb, n := fakePair(t, bulkOpts(), bulkOpts())
	inBulk := func(e *fakeEnd, off int) bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return e.registered(off, 1, false, 0)
	}
	if inBulk(ea, a.lay.bulkOut) || inBulk(eb, b.lay.bulkIn) {
		t.Fatal("a bulk area registered at setup")
	}
	long := b.lay.bulkMin + 1
	m1, m2 := msg(1, long), msg(2, long)
	done := sendAsync(a, m1)
	recvCheck(t, b, m1)
	if err := within(t, done, 5*time.Second, "Send"); err != nil {
		t.Fatal(err)
	}
	if w := ea.opCount(opWriteImm); w != 0 {
		t.Fatalf("first long message: %d RDMA WRITEs before any offer", w)
	}
	if _, _, size, ok := loadOffer(a.mem, ctrlOffer); !inBulk(eb, b.lay.bulkIn) || !ok || size != b.lay.bulk {
		t.Fatalf("after the first long message: b's area registered %v, offer in a's control page valid %v of %d bytes; want true, true, %d", inBulk(eb, b.lay.bulkIn), ok, size, b.lay.bulk)
	}
	done = sendAsync(a, m2)
	recvCheck(t, b, m2)
	if err := within(t, done, 5*time.Second, "Send"); err != nil {
		t.Fatal(err)
	}
	if w := ea.opCount(opWriteImm); w != 1 || !inBulk(ea, a.lay.bulkOut) {
		t.Fatalf("second long message: %d RDMA WRITEs with immediate, staging registered %v; want 1, true", w, inBulk(ea, a.lay.bulkOut))
	}
	noRNR(t, n)

	ob := bulkOpts()
	ob.Bulk = -1
	a, b, _, _, _ = fakePair(t, bulkOpts(), ob)
	for i := range 2 {
		m := msg(i, 4*a.lay.bulkMin)
		done := sendAsync(a, m)
		recvCheck(t, b, m)
		within(t, done, 5*time.Second, "Send")
	}
	if _, _, _, ok := loadOffer(a.mem, ctrlOffer); ok || a.peerBulk != 0 {
		t.Fatal("a receiver without a bulk area offered one")
	}
}

// TestBulkPathOneWriteWithImmediate: a message longer than a chunk that
// fits the peer's bulk area goes as one RDMA WRITE with immediate; one of a
// chunk or less, one longer than the area, or to a peer without an area,
// as SENDs.
func TestBulkPathOneWriteWithImmediate(t *testing.T) {
	a, b, ea, _, n := bulkPair(t)
	for i, c := range []struct {
		size int
		bulk bool
	}{{257, true}, {64 << 10, true}, {256, false}, {64<<10 + 1, false}, {1000, true}} {
		m := msg(i, c.size)
		w0, s0 := ea.opCount(opWriteImm), ea.opCount(opSend)+ea.opCount(opSendImm)
		done := sendAsync(a, m)
		recvCheck(t, b, m)
		if err := within(t, done, 5*time.Second, "Send"); err != nil {
			t.Fatal(err)
		}
		w, s := ea.opCount(opWriteImm)-w0, ea.opCount(opSend)+ea.opCount(opSendImm)-s0
		if c.bulk && (w != 1 || s != 0) {
			t.Errorf("%d bytes: %d writes and %d SENDs, want 1 RDMA WRITE with immediate", c.size, w, s)
		}
		if !c.bulk && w != 0 {
			t.Errorf("%d bytes: went by RDMA WRITE, want SENDs", c.size)
		}
	}
	noRNR(t, n)

	ob := bulkOpts()
	ob.Bulk = -1
	a, b, ea, _, _ = fakePair(t, bulkOpts(), ob)
	m := msg(9, 5000)
	done := sendAsync(a, m)
	recvCheck(t, b, m)
	within(t, done, 5*time.Second, "Send")
	if w := ea.opCount(opWriteImm); w != 0 {
		t.Errorf("%d RDMA WRITEs to a peer without a bulk area", w)
	}
}

// TestBulkAreaBusyFallsBackToSends: while the peer has not consumed the
// last bulk message (its area is busy), the next long message goes as
// SENDs, and both arrive intact and in order; once the peer has consumed
// it (and said so in its credit word), the bulk path is used again.
func TestBulkAreaBusyFallsBackToSends(t *testing.T) {
	a, b, ea, _, n := bulkPair(t)
	m1, m2, m3 := msg(1, 3000), msg(2, 1500), msg(3, 4000)
	mustSend(t, a, m1)
	if ea.opCount(opWriteImm) != 1 {
		t.Fatal("the first long message did not go by RDMA WRITE")
	}
	if _, free := a.credits(); free {
		t.Fatal("the peer's bulk area reads free before the peer consumed the message")
	}
	mustSend(t, a, m2)
	if w, s := ea.opCount(opWriteImm), ea.opCount(opSend)+ea.opCount(opSendImm); w != 1 || s != (1500+255)/256 {
		t.Fatalf("second message while the area is busy: %d writes in all, %d SENDs; want 1 and %d", w, s, (1500+255)/256)
	}
	recvCheck(t, b, m1) // not overwritten by m2
	recvCheck(t, b, m2)
	if _, free := a.credits(); !free {
		t.Fatal("the peer's bulk area still busy after it consumed the message")
	}
	done := sendAsync(a, m3)
	recvCheck(t, b, m3)
	within(t, done, 5*time.Second, "Send")
	if w := ea.opCount(opWriteImm); w != 2 {
		t.Fatalf("third message: %d writes in all, want 2 (bulk path again)", w)
	}
	noRNR(t, n)
}

// TestBulkStagingBusyFallsBackToSends: while our last bulk write is not
// acknowledged (the NIC may still read our staging area), the next long
// message goes as SENDs even though the peer's area is free again; once
// it is, the bulk path is used again.
func TestBulkStagingBusyFallsBackToSends(t *testing.T) {
	a, b, ea, _, n := bulkPair(t)
	n.mu.Lock()
	n.lateAcks = true
	n.mu.Unlock()
	m1, m2, m3 := msg(1, 3000), msg(2, 1500), msg(3, 4000)
	mustSend(t, a, m1)
	recvCheck(t, b, m1)
	if _, free := a.credits(); !free {
		t.Fatal("the peer's area reads busy after it consumed the message")
	}
	mustSend(t, a, m2)
	if w := ea.opCount(opWriteImm); w != 1 {
		t.Fatalf("%d bulk writes with the staging area not acknowledged, want 1 (m2 as SENDs)", w)
	}
	recvCheck(t, b, m2)
	n.ack()
	done := sendAsync(a, m3)
	recvCheck(t, b, m3)
	within(t, done, 5*time.Second, "Send")
	if w := ea.opCount(opWriteImm); w != 2 {
		t.Fatalf("%d bulk writes after the acknowledgement, want 2", w)
	}
	noRNR(t, n)
}

// TestTornCreditWordIgnored: a credit write that the sender reads half
// landed (the new count beside the old complement) is not trusted; the
// sender waits until the word is whole again.
func TestTornCreditWordIgnored(t *testing.T) {
	a, b, ea, _, n := fakePair(t, small(), small())
	var sent [][]byte
	send := func(i int) {
		m := msg(i, 40)
		mustSend(t, a, m)
		sent = append(sent, m)
	}
	for i := range 8 {
		send(i)
	}
	// A whole credit write: 4 back (half of the 9 posted buffers).
	for i := range 4 {
		recvCheck(t, b, sent[i])
	}
	for i := 8; i < 12; i++ {
		send(i)
	}
	if cr, _ := a.credits(); cr != 0 {
		t.Fatalf("%d credits, want 0", cr)
	}
	last := msg(20, 40)
	done := sendAsync(a, last)
	blocked(t, done, 30*time.Millisecond, "Send without credit")

	// The next one lands torn: 8 returned in the first word, the old
	// complement in the second.
	ea.tearNextCredit()
	for i := 4; i < 8; i++ {
		recvCheck(t, b, sent[i])
	}
	v, _, ok := loadCredit(a.mem, ctrlCredit)
	if ok || v != 8 {
		t.Fatalf("credit word reads %d, valid %v; want the torn state (8, invalid)", v, ok)
	}
	blocked(t, done, 100*time.Millisecond, "Send with a torn credit word (trusting it would give 4 credits)")

	n.finishTear(ea)
	if err := within(t, done, 5*time.Second, "Send after the credit word is whole"); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(sent[8:], last) {
		recvCheck(t, b, m)
	}
	noRNR(t, n)
}

// TestGoodbyeGivesEOFAfterEveryMessage: Close sends a goodbye behind the
// messages; the peer receives each message, then io.EOF (again and
// again), even a bulk message still in its area.
func TestGoodbyeGivesEOFAfterEveryMessage(t *testing.T) {
	a, b, _, _, n := bulkPair(t)
	// A SEND, an empty one, a bulk write, SENDs (the area is busy): 7
	// chunks, within the credit.
	ms := [][]byte{msg(1, 10), msg(2, 0), msg(3, 700), msg(4, 1000)}
	for _, m := range ms {
		mustSend(t, a, m)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		recvCheck(t, b, m)
	}
	for range 2 {
		if _, err := b.Recv(make([]byte, 10)); !errors.Is(err, io.EOF) {
			t.Fatalf("Recv after the goodbye: %v, want io.EOF", err)
		}
	}
	// The peer's disconnect broke b's side for sending.
	eventually(t, time.Second, "b's connection broken by the peer's disconnect", func() bool { return b.deadErr() != nil })
	if err := b.Send([]byte("x")); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Send to a closed peer: %v, want ECONNRESET", err)
	}
	noRNR(t, n)
}

// TestPeerDeathGivesECONNRESET: when the peer dies (its link reports it),
// a waiting Recv and a Send out of credit fail with unix.ECONNRESET, also
// when the device does not flush the posted receives (as rxe sometimes
// does not): the waiters are woken by deadline too.
func TestPeerDeathGivesECONNRESET(t *testing.T) {
	for _, c := range []struct {
		flush bool
		spin  time.Duration
	}{{true, -1}, {false, -1}, {true, time.Second}} {
		flush := c.flush
		o := small()
		o.Spin = c.spin
		_, b, ea, _, n := fakePair(t, small(), o)
		n.noRecvFlush = !flush
		n.dropDelay = 20 * time.Millisecond
		for i := range 8 {
			mustSend(t, b, msg(i, 64))
		}
		sendDone := sendAsync(b, msg(9, 64)) // out of credit: a receives nothing
		recvDone := recvAsync(b, 64)
		blocked(t, recvDone, 20*time.Millisecond, "Recv")
		start := time.Now()
		n.drop(ea)
		r := within(t, recvDone, 5*time.Second, "Recv after the peer's death")
		if !errors.Is(r.err, unix.ECONNRESET) {
			t.Fatalf("flush %v: Recv after the peer's death: %v, want ECONNRESET", flush, r.err)
		}
		if err := within(t, sendDone, 5*time.Second, "Send after the peer's death"); !errors.Is(err, unix.ECONNRESET) {
			t.Fatalf("flush %v: Send after the peer's death: %v, want ECONNRESET", flush, err)
		}
		if err := b.Send([]byte("x")); !errors.Is(err, unix.ECONNRESET) || !strings.Contains(err.Error(), "qp send 10.77.0.2:7002->10.77.0.1:7001") {
			t.Fatalf("Send on the broken connection: %v, want ECONNRESET with the operation and addresses", err)
		}
		t.Logf("flush %v: Recv failed %v after the death", flush, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		b.Close()
		if d := time.Since(start); d > 900*time.Millisecond {
			t.Errorf("flush %v: Close of the broken connection took %v; the drain should stop when nothing completes", flush, d)
		}
	}
}

// TestFailedWorkRequestBreaksConnection: a send that fails on the wire
// (retries exceeded, the peer's QP gone but its link silent) breaks the
// connection: a later Send reports ECONNRESET, with the completion's error.
func TestFailedWorkRequestBreaksConnection(t *testing.T) {
	o := small()
	o.SendDepth = 4
	a, _, _, eb, n := fakePair(t, o, small())
	n.dropDelay = time.Hour
	n.drop(eb)
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		err = a.Send(msg(i, 10))
	}
	if !errors.Is(err, unix.ECONNRESET) || !errors.Is(err, unix.ETIMEDOUT) {
		t.Fatalf("Send after a failed work request: %v, want ECONNRESET (and the completion's ETIMEDOUT)", err)
	}
}

// TestReceiveCompletionErrorBreaksConnection: a receive that completes in
// error (here a peer's SEND longer than our buffer, a local length error)
// breaks the connection with ECONNRESET and the completion's errno.
func TestReceiveCompletionErrorBreaksConnection(t *testing.T) {
	a, b, _, _, _ := fakePair(t, &Options{Chunk: 128, RecvDepth: 8, Bulk: -1, Spin: -1}, small())
	a.sq.Lock()
	err := a.t.postSend(sendWR{op: opSendImm, imm: immData, off: a.lay.sendAt(0), n: 128})
	a.sq.out++
	a.sq.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(make([]byte, 200)); !errors.Is(err, unix.ECONNRESET) || !errors.Is(err, unix.EIO) {
		t.Fatalf("Recv of a receive completed in error: %v, want ECONNRESET and EIO", err)
	}
}

// TestCloseWhoseGoodbyeFailsStillCloses: when the goodbye cannot be
// posted, Close still frees everything; the peer learns of the end from
// the link (ECONNRESET), not from a goodbye (io.EOF).
func TestCloseWhoseGoodbyeFailsStillCloses(t *testing.T) {
	a, b, ea, _, n := fakePair(t, small(), small())
	ea.failSendAfter(0, unix.ENOMEM)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if got := n.events("a: transport closed"); len(got) != 1 {
		t.Fatalf("transport closed %d times", len(got))
	}
	if _, err := b.Recv(nil); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("peer's Recv: %v, want ECONNRESET", err)
	}
}

// TestReadDeadlineOnIdleConnectionThenGoesOn: Recv past its deadline fails
// with os.ErrDeadlineExceeded (also when the deadline is set while it
// waits), loses nothing, and the connection goes on.
func TestReadDeadlineOnIdleConnectionThenGoesOn(t *testing.T) {
	a, b, _, _, n := fakePair(t, small(), small())
	start := time.Now()
	b.SetReadDeadline(start.Add(30 * time.Millisecond))
	if _, err := b.Recv(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past its deadline: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("Recv returned after %v, before its deadline", d)
	}
	b.SetReadDeadline(time.Time{})
	r := recvAsync(b, 8)
	blocked(t, r, 20*time.Millisecond, "Recv")
	b.SetReadDeadline(time.Now())
	if res := within(t, r, 5*time.Second, "Recv"); !errors.Is(res.err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv whose deadline was set while it waited: %v", res.err)
	}

	// A message sent, not delivered yet, when the deadline passes: it
	// comes whole with the next Recv.
	n.hold()
	m := msg(1, 300)
	mustSend(t, a, m)
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := b.Recv(make([]byte, 400)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past its deadline: %v", err)
	}
	b.SetDeadline(time.Time{})
	n.release()
	recvCheck(t, b, m)
}

// TestReadDeadlineMidMessageBreaksConnection: a deadline that passes after
// part of a message arrived cannot give the rest back: Recv fails with
// os.ErrDeadlineExceeded and the connection is broken.
func TestReadDeadlineMidMessageBreaksConnection(t *testing.T) {
	a, b, _, _, n := fakePair(t, small(), small())
	n.allow(3)
	mustSend(t, a, msg(1, 6*64))
	b.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	got, err := b.Recv(make([]byte, 1000))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv with 3 of 6 chunks past its deadline: %d, %v", got, err)
	}
	n.release()
	b.SetReadDeadline(time.Time{})
	if _, err := b.Recv(make([]byte, 1000)); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv after a message was cut: %v, want the broken connection's error", err)
	}
}

// TestWriteDeadlineOutOfCredit: Send waiting for credit fails at its
// deadline; when nothing of the message went, the connection goes on.
func TestWriteDeadlineOutOfCredit(t *testing.T) {
	a, b, _, _, n := fakePair(t, small(), small())
	for i := range 8 {
		mustSend(t, a, msg(i, 64))
	}
	a.SetWriteDeadline(time.Now().Add(30 * time.Millisecond))
	if err := a.Send(msg(8, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send without credit past its deadline: %v", err)
	}
	a.SetWriteDeadline(time.Time{})
	for i := range 8 {
		recvCheck(t, b, msg(i, 64))
	}
	m := msg(9, 64)
	mustSend(t, a, m)
	recvCheck(t, b, m)
	noRNR(t, n)
}

// TestWriteDeadlineMidMessageBreaksConnection: a message longer than the
// credit, its deadline passing after part of it went, breaks the
// connection (the part cannot be recalled); later Sends fail too.
func TestWriteDeadlineMidMessageBreaksConnection(t *testing.T) {
	a, _, ea, _, _ := fakePair(t, small(), small())
	a.SetWriteDeadline(time.Now().Add(30 * time.Millisecond))
	err := a.Send(msg(1, 20*64))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send of 20 chunks with credit for 8 past its deadline: %v", err)
	}
	if s := ea.opCount(opSend); s != 8 {
		t.Fatalf("%d chunks went before the deadline, want 8", s)
	}
	a.SetWriteDeadline(time.Time{})
	if err := a.Send([]byte("x")); !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "interrupted after 512 of 1280 bytes") {
		t.Fatalf("Send after a cut message: %v, want the broken connection's error", err)
	}
}

// TestWriteDeadlineOutOfSendBuffers: Send waiting for a free send buffer
// (its posted sends not completed: the wire is held) fails at its
// deadline.
func TestWriteDeadlineOutOfSendBuffers(t *testing.T) {
	for _, spin := range []time.Duration{-1, time.Second} {
		writeDeadlineOutOfSendBuffers(t, spin)
	}
}

func writeDeadlineOutOfSendBuffers(t *testing.T, spin time.Duration) {
	o := small()
	o.SendDepth = 2
	o.Spin = spin
	a, b, _, _, n := fakePair(t, o, small())
	n.hold()
	mustSend(t, a, msg(1, 10))
	mustSend(t, a, msg(2, 10))
	a.SetWriteDeadline(time.Now().Add(30 * time.Millisecond))
	if err := a.Send(msg(3, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Send with no free send buffer past its deadline: %v", err)
	}
	a.SetWriteDeadline(time.Time{})
	done := sendAsync(a, msg(3, 10))
	blocked(t, done, 20*time.Millisecond, "Send with no free send buffer")
	n.release()
	if err := within(t, done, 5*time.Second, "Send after the wire moved"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		recvCheck(t, b, msg(i, 10))
	}
}

// TestRecvTruncatesLongMessageAndGoesOn: a message longer than the buffer
// fills it with its start and fails with ErrTruncated; the rest is
// dropped, its buffers returned (many truncated messages in a row do not
// exhaust the credit), and the next message comes whole. Also for a bulk
// message and for an empty buffer.
func TestRecvTruncatesLongMessageAndGoesOn(t *testing.T) {
	a, b, _, _, n := fakePair(t, small(), small())
	for i := range 3 * 8 {
		m := msg(i, 1000)
		done := sendAsync(a, m)
		buf := make([]byte, 100)
		got, err := b.Recv(buf)
		if !errors.Is(err, ErrTruncated) || got != 100 || !bytes.Equal(buf, m[:100]) {
			t.Fatalf("message %d of 1000 bytes into 100: %d, %v; start equal: %v", i, got, err, bytes.Equal(buf, m[:100]))
		}
		within(t, done, 5*time.Second, "Send")
	}
	m := msg(99, 50)
	mustSend(t, a, m)
	recvCheck(t, b, m)
	mustSend(t, a, msg(100, 1))
	if got, err := b.Recv(nil); got != 0 || !errors.Is(err, ErrTruncated) {
		t.Fatalf("1 byte into no buffer: %d, %v; want 0, ErrTruncated", got, err)
	}
	mustSend(t, a, nil)
	if got, err := b.Recv(nil); got != 0 || err != nil {
		t.Fatalf("empty message into no buffer: %d, %v", got, err)
	}
	noRNR(t, n)

	a, b, ea, _, _ := bulkPair(t)
	for i := range 2 {
		m := msg(i, 3000)
		mustSend(t, a, m)
		buf := make([]byte, 100)
		if got, err := b.Recv(buf); !errors.Is(err, ErrTruncated) || got != 100 || !bytes.Equal(buf, m[:100]) {
			t.Fatalf("bulk message of 3000 bytes into 100: %d, %v", got, err)
		}
	}
	if w := ea.opCount(opWriteImm); w != 2 {
		t.Fatalf("%d bulk writes, want 2 (a truncated bulk message frees the area)", w)
	}
}

// TestCloseOrder: Close says goodbye, disconnects, moves the QP to the
// error state, waits for the flush of what it posted (the device is done
// with the memory), frees the transport with nothing outstanding, then
// closes the link, and returns after the link's watcher ended.
func TestCloseOrder(t *testing.T) {
	a, b, ea, _, n := fakePair(t, small(), small())
	n.flushDelay = 20 * time.Millisecond
	mustSend(t, a, msg(1, 100))
	recvCheck(t, b, msg(1, 100))
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"a: post goodbye", "a: disconnect", "a: error state", "a: transport closed, 0 work requests outstanding", "a: link closed", "a: watch returned"}
	if got := n.events("a: "); !slices.Equal(got, want) {
		t.Fatalf("Close did:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ea.outstanding() != 0 {
		t.Fatal("work requests outstanding after Close")
	}
	if _, err := b.Recv(nil); !errors.Is(err, io.EOF) {
		t.Fatalf("peer's Recv: %v, want io.EOF", err)
	}
}

// TestCloseOfBrokenConnectionSkipsGoodbyeAndDrainIsBounded: a connection
// whose peer died says no goodbye, and Close does not wait for receives
// the device never flushes.
func TestCloseOfBrokenConnectionSkipsGoodbyeAndDrainIsBounded(t *testing.T) {
	a, _, _, eb, n := fakePair(t, small(), small())
	n.noRecvFlush = true
	n.drop(eb)
	if _, err := a.Recv(nil); !errors.Is(err, unix.ECONNRESET) {
		t.Fatalf("Recv: %v", err)
	}
	start := time.Now()
	a.Close()
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("Close took %v", d)
	}
	got := n.events("a: ")
	if slices.Contains(got, "a: post goodbye") {
		t.Fatal("a goodbye posted on a broken connection")
	}
	if !slices.Contains(got, "a: transport closed, 9 work requests outstanding") {
		t.Fatalf("want the 9 unflushed receives outstanding at the free: %q", got)
	}
}

// TestCloseDuringBlockedSendAndRecv: Close wakes a Send waiting for credit,
// a Send waiting for a send buffer and a Recv waiting for a message; each
// fails with ErrClosed (net.ErrClosed), and none touches the transport
// after it is freed (the fake fails the test if one does).
func TestCloseDuringBlockedSendAndRecv(t *testing.T) {
	for _, why := range []string{"credit", "send buffer", "recv"} {
		o := small()
		o.SendDepth = 2
		a, _, _, _, n := fakePair(t, o, small())
		var done <-chan error
		switch why {
		case "credit":
			done = sendAsync(a, msg(1, 20*64))
		case "send buffer":
			n.hold()
			mustSend(t, a, msg(1, 10))
			mustSend(t, a, msg(2, 10))
			done = sendAsync(a, msg(3, 10))
		case "recv":
			r := recvAsync(a, 10)
			ch := make(chan error, 1)
			go func() { ch <- (<-r).err }()
			done = ch
		}
		blocked(t, done, 30*time.Millisecond, why)
		closed := make(chan error, 1)
		go func() { closed <- a.Close() }()
		err := within(t, done, 5*time.Second, why+" after Close")
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("%s: %v, want ErrClosed", why, err)
		}
		n.release()
		within(t, closed, 5*time.Second, "Close")
	}
}

// TestCloseWakingSendByFlushReturnsErrClosed: a Send waiting for a send
// buffer may be woken by the flush of Close's error state (the flushed
// sends free their buffers) before Close's deadline wake-up; it must still
// fail with ErrClosed, not post into the dead QP and report success. The
// fake's setError waits for the Send to try to post, so that this order is
// the one that happens.
func TestCloseWakingSendByFlushReturnsErrClosed(t *testing.T) {
	o := small()
	o.SendDepth = 2
	a, _, ea, _, n := fakePair(t, o, small())
	n.hold()
	mustSend(t, a, msg(1, 10))
	mustSend(t, a, msg(2, 10))
	done := sendAsync(a, msg(3, 10))
	blocked(t, done, 30*time.Millisecond, "Send with no free send buffer")
	n.afterSetError = func(e *fakeEnd) {
		if e != ea {
			return
		}
		posts := e.postCount()
		for end := time.Now().Add(200 * time.Millisecond); e.postCount() == posts && time.Now().Before(end); {
			time.Sleep(time.Millisecond)
		}
	}
	go a.Close()
	if err := within(t, done, 3*time.Second, "Send after Close"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send woken by Close's flush: %v, want ErrClosed", err)
	}
}

// TestCloseTwice: the second Close returns nil, and Send and Recv after
// Close fail with ErrClosed.
func TestCloseTwice(t *testing.T) {
	a, _, _, _, n := fakePair(t, small(), small())
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := n.events("a: transport closed"); len(got) != 1 {
		t.Fatalf("transport closed %d times", len(got))
	}
	if err := a.Send([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v", err)
	}
	if _, err := a.Recv(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
}

// TestPostFailureBreaksConnection: a failed post (ENOMEM) of a SEND, of a
// bulk write or of a re-posted receive breaks the connection with that
// errno.
func TestPostFailureBreaksConnection(t *testing.T) {
	a, _, ea, _, _ := fakePair(t, small(), small())
	ea.failSendAfter(1, unix.ENOMEM)
	if err := a.Send(msg(1, 200)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Send whose second chunk fails to post: %v, want ENOMEM", err)
	}
	if err := a.Send(msg(2, 10)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("next Send: %v, want the broken connection's ENOMEM", err)
	}

	a, _, ea, _, _ = bulkPair(t)
	ea.failSendAfter(0, unix.ENOMEM)
	if err := a.Send(msg(1, 2000)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("bulk Send failing to post: %v, want ENOMEM", err)
	}

	a, b, _, eb, _ := fakePair(t, small(), small())
	eb.failRecvAfter(0, unix.ENOMEM)
	mustSend(t, a, msg(1, 10))
	if _, err := b.Recv(make([]byte, 10)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("Recv whose re-post fails: %v, want ENOMEM", err)
	}
	if _, err := b.Recv(make([]byte, 10)); !errors.Is(err, unix.ENOMEM) {
		t.Fatalf("next Recv: %v, want the broken connection's ENOMEM", err)
	}
}

// TestBulkWriteBreakingProtocolIsErrProtocol: an RDMA WRITE with immediate
// larger than our bulk area, or after part of a message, is a protocol
// error.
func TestBulkWriteBreakingProtocolIsErrProtocol(t *testing.T) {
	for _, midMessage := range []bool{false, true} {
		a, b, _, _, _ := bulkPair(t)
		// Work requests the protocol would not post, with ids its reaping
		// ignores.
		post := func(w sendWR) {
			a.sq.Lock()
			defer a.sq.Unlock()
			if err := a.t.postSend(w); err != nil {
				t.Fatal(err)
			}
			a.sq.out++
		}
		size := b.lay.bulk + 1
		if midMessage {
			size = 100
			post(sendWR{op: opSend, off: a.lay.sendAt(0), n: 10})
		}
		post(sendWR{op: opWriteImm, off: a.lay.sendAt(0), n: 100, imm: immBulk | uint32(size), raddr: a.peerBulkAddr, rkey: a.peerBulkRKey})
		if _, err := b.Recv(make([]byte, 1000)); !errors.Is(err, ErrProtocol) {
			t.Fatalf("mid-message %v: Recv of a bad bulk write: %v, want ErrProtocol", midMessage, err)
		}
	}
}

// TestEchoRandomSizesBothWays: 300 messages of 1 B to 128 KiB each way at
// once, over chunks, the bulk path and its fallback, every byte checked,
// no RNR.
func TestEchoRandomSizesBothWays(t *testing.T) {
	o := &Options{Chunk: 1024, RecvDepth: 8, SendDepth: 4, Bulk: 64 << 10}
	a, b, _, _, n := fakePair(t, o, o)
	const count = 300
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	flow := func(from, to *Conn, seed uint64) {
		wg.Add(2)
		sizes := func() func() int {
			r := rand.New(rand.NewPCG(seed, 1))
			return func() int { return min(1<<r.IntN(18)+r.IntN(100), 200<<10) }
		}
		go func() {
			defer wg.Done()
			next := sizes()
			for i := range count {
				if err := from.Send(msg(i+int(seed), next())); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			next := sizes()
			buf := make([]byte, 256<<10)
			for i := range count {
				want := msg(i+int(seed), next())
				k, err := to.Recv(buf)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:k], want) {
					errs <- errors.New("message differs")
					return
				}
			}
		}()
	}
	flow(a, b, 1)
	flow(b, a, 1000)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	noRNR(t, n)
}

// TestLayoutRegionsDoNotOverlap: the control page's words (the credit
// word, the offer, their sources), receive buffers, send buffers and the
// two bulk areas sit apart; the words 8-byte aligned, the bulk areas on
// pages of their own (each is registered when first used).
func TestLayoutRegionsDoNotOverlap(t *testing.T) {
	for _, o := range []*Options{nil, small(), bulkOpts(), {Chunk: 100, RecvDepth: 1, SendDepth: 1, Bulk: 1}} {
		opts := o.withDefaults()
		l := newLayout(opts)
		type span struct {
			name     string
			from, to int
		}
		spans := []span{
			{"recv", l.recvAt(0), l.recvAt(l.nrecv)},
			{"send", l.sendAt(0), l.sendAt(l.nsend)},
			{"credit word", ctrlCredit, ctrlCredit + creditLen},
			{"offer", ctrlOffer, ctrlOffer + offerLen},
			{"offer source", ctrlOfferTx, ctrlOfferTx + offerLen},
			{"credit slots", l.credAt(0), l.credAt(creditSlots)},
		}
		if l.credAt(creditSlots) > l.ctrlLen {
			t.Errorf("%+v: credit slots end at %d, past the control page (%d)", opts, l.credAt(creditSlots), l.ctrlLen)
		}
		if l.bulk > 0 {
			spans = append(spans, span{"bulk in", l.bulkIn, l.bulkIn + l.bulk}, span{"bulk out", l.bulkOut, l.bulkOut + l.bulk})
			if l.bulkIn%ctrlPage != 0 || l.bulkOut%ctrlPage != 0 {
				t.Errorf("%+v: bulk areas at %d and %d, not on pages of their own", opts, l.bulkIn, l.bulkOut)
			}
		}
		for i, s := range spans {
			if s.to > l.size || s.from > s.to {
				t.Errorf("%+v: %s [%d,%d) outside %d bytes", opts, s.name, s.from, s.to, l.size)
			}
			for _, u := range spans[i+1:] {
				if s.from < u.to && u.from < s.to {
					t.Errorf("%+v: %s [%d,%d) overlaps %s [%d,%d)", opts, s.name, s.from, s.to, u.name, u.from, u.to)
				}
			}
		}
		if ctrlCredit%8 != 0 || ctrlOffer%8 != 0 || ctrlOfferTx%8 != 0 || ctrlCredTx%8 != 0 {
			t.Errorf("%+v: credit words not 8-byte aligned", opts)
		}
	}
}

// TestConnAccessors: the addresses, mode and chunk a connection reports.
func TestConnAccessors(t *testing.T) {
	a, b, _, _, _ := fakePair(t, small(), small())
	if a.LocalAddr() != b.RemoteAddr() || b.LocalAddr() != a.RemoteAddr() || a.LocalAddr().Port() != 7001 {
		t.Fatalf("a %v->%v, b %v->%v", a.LocalAddr(), a.RemoteAddr(), b.LocalAddr(), b.RemoteAddr())
	}
	if a.Mode() != ModeCM || a.Chunk() != 64 {
		t.Fatalf("mode %v chunk %d", a.Mode(), a.Chunk())
	}
}

// TestBuffersStartSmallAndGrowWithUse: a connection starts with RecvStart
// receive buffers (the credit its hello gives) and SendStart send buffers;
// a ping-pong keeps it there; bursts that keep the buffers busy double
// them up to RecvDepth and SendDepth (each step registered before use, the
// new receive buffers handed to the sender as credit), never past, with
// every message intact and no send finding no receive posted.
func TestBuffersStartSmallAndGrowWithUse(t *testing.T) {
	o := &Options{Chunk: 64, Bulk: -1, Spin: -1}
	a, b, _, _, n := fakePair(t, o, o)
	if a.peerDepth != 4 || b.rposted != 5 || a.sq.nsend != 2 {
		t.Fatalf("at setup: credit %d, %d receive buffers posted, %d send buffers; want 4, 5, 2", a.peerDepth, b.rposted, a.sq.nsend)
	}
	for i := range 50 {
		m := msg(i, 40)
		mustSend(t, a, m)
		recvCheck(t, b, m)
	}
	if b.rposted != 5 || a.sq.nsend != 2 {
		t.Fatalf("after a ping-pong: %d receive buffers, %d send buffers; want 5 and 2", b.rposted, a.sq.nsend)
	}
	for round := range 8 {
		n.hold()
		a.sendMu.Lock()
		cr, _ := a.credits()
		a.sendMu.Unlock()
		ms := make([][]byte, min(cr, a.lay.nsend))
		for i := range ms {
			ms[i] = msg(round*100+i, 40)
			mustSend(t, a, ms[i]) // there is credit; a send buffer is free or registered
		}
		n.release()
		for _, m := range ms {
			recvCheck(t, b, m)
		}
	}
	a.sendMu.Lock()
	cr, _ := a.credits()
	a.sendMu.Unlock()
	// The credit is all 32 buffers but the few the receiver holds back
	// unreturned between two Recvs (each growth step and each half
	// written at once leave fewer than a quarter here).
	if b.rposted != b.lay.nrecv || a.sq.nsend != a.lay.nsend || cr <= 32-b.lay.nrecv/4 {
		t.Fatalf("after bursts: %d receive buffers (want %d), %d send buffers (want %d), credit %d (want > %d)", b.rposted, b.lay.nrecv, a.sq.nsend, a.lay.nsend, cr, 32-b.lay.nrecv/4)
	}
	noRNR(t, n)
}
