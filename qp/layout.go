package qp

// layout is where everything sits in a connection's memory (transport.mem),
// in order: the control page (the credit word and the bulk offer the peer
// writes, and the source words of our own writes of both), RecvDepth+1
// receive buffers (the extra one takes the peer's goodbye, which needs no
// credit), SendDepth send buffers, and with Bulk on, the area the peer
// RDMA-writes whole messages into and our staging area for the ones we
// write.
//
// The memory is reserved whole and registered as the connection grows into
// it (transport.register), so an idle connection costs little: at setup the
// control page with the first recv0 receive buffers, and the first send0
// send buffers; more receive and send buffers, doubling, as the traffic
// keeps them busy (Conn.growRecv, Conn.growSend); each bulk area when it is
// first needed (the peer offers its area when it first receives a message
// longer than bulkMin, Conn.offerBulk).
type layout struct {
	chunk        int
	nrecv, nsend int // the most buffers
	recv0, send0 int // the buffers registered at setup
	ctrlLen      int
	recvOff      int
	sendOff      int
	// bulk is the size of each bulk area, 0 when off; bulkIn is the one
	// the peer writes into, bulkOut our staging area.
	bulk, bulkIn, bulkOut int
	// bulkMin: messages longer than this go by RDMA WRITE into the peer's
	// bulk area, once the peer offered one (it does when it first receives
	// such a message as SENDs); shorter ones as SENDs, which pipeline (a
	// bulk area holds one message at a time). 64 KiB, or half the area
	// when that is smaller.
	bulkMin int
	size    int
}

// The control page: the words the peer RDMA-writes into, and the sources
// of ours.
const (
	ctrlCredit  = 0   // the peer's credit returns land here (creditLen)
	ctrlOffer   = 64  // the peer's bulk offer lands here (offerLen)
	ctrlOfferTx = 128 // the source of our offer
	ctrlCredTx  = 192 // creditSlots source words of our credit writes

	creditSlots = 8
	creditLen   = 32 // {returned, ^returned, bulkDone, ^bulkDone}
	offerLen    = 32 // {addr, rkey<<32 | size, ^addr, ^(rkey<<32 | size)}
	ctrlPage    = 4096

	bulkUnit = 64 << 10 // the hello gives the largest bulk area in these
	bulkMin  = 64 << 10 // layout.bulkMin's most
)

func newLayout(o Options) layout {
	l := layout{chunk: o.Chunk, nrecv: o.RecvDepth + 1, nsend: o.SendDepth, ctrlLen: ctrlPage}
	l.recv0 = o.RecvStart + 1
	l.send0 = o.SendStart
	l.recvOff = l.ctrlLen
	l.sendOff = l.recvOff + l.nrecv*l.chunk
	l.size = l.sendOff + l.nsend*l.chunk
	if o.Bulk > 0 {
		l.bulk = o.Bulk
		l.bulkIn = (l.size + ctrlPage - 1) / ctrlPage * ctrlPage
		l.bulkOut = l.bulkIn + l.bulk
		l.size = l.bulkOut + l.bulk
		l.bulkMin = min(bulkMin, l.bulk/2)
	}
	return l
}

func (l *layout) recvAt(slot int) int { return l.recvOff + slot*l.chunk }
func (l *layout) sendAt(slot int) int { return l.sendOff + slot*l.chunk }
func (l *layout) credAt(slot int) int { return ctrlCredTx + slot*64 }

// sendDepth is the send queue the protocol needs: a send buffer each,
// the credit writes, the goodbye, the bulk write and the bulk offer.
func (l *layout) sendDepth() int { return l.nsend + creditSlots + 3 }
