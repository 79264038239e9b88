package qp

// layout is where everything sits in a connection's memory (transport.mem),
// in order: RecvDepth+1 receive buffers (the extra one takes the peer's
// goodbye, which needs no credit), SendDepth send buffers, the credit word
// the peer writes (64 bytes), creditSlots source words for our own credit
// writes, and with Bulk on, the area the peer RDMA-writes whole messages
// into (at ctrl+bulkDelta, as the protocol fixes) and our staging area for
// the ones we write.
type layout struct {
	chunk, nrecv, nsend    int
	recvOff, sendOff, ctrl int
	credOff                int
	// bulk is the size of each bulk area, 0 when off; bulkIn is the one
	// the peer writes into, bulkOut our staging area.
	bulk, bulkIn, bulkOut int
	size                  int
}

const (
	creditSlots = 8
	creditLen   = 32 // {returned, ^returned, bulkDone, ^bulkDone}
	// bulkDelta is where the bulk area starts after the credit word: the
	// protocol fixes it, so the hello needs only the area's size.
	bulkDelta = 1024
	bulkUnit  = 64 << 10 // the hello gives the bulk size in these
)

func newLayout(o Options) layout {
	l := layout{chunk: o.Chunk, nrecv: o.RecvDepth + 1, nsend: o.SendDepth}
	l.recvOff = 0
	l.sendOff = l.nrecv * l.chunk
	l.ctrl = l.sendOff + l.nsend*l.chunk
	l.credOff = l.ctrl + 64
	l.size = l.credOff + creditSlots*64
	if o.Bulk > 0 {
		l.bulk = o.Bulk
		l.bulkIn = l.ctrl + bulkDelta
		l.bulkOut = l.bulkIn + l.bulk
		l.size = l.bulkOut + l.bulk
	}
	return l
}

func (l *layout) recvAt(slot int) int { return l.recvOff + slot*l.chunk }
func (l *layout) sendAt(slot int) int { return l.sendOff + slot*l.chunk }
func (l *layout) credAt(slot int) int { return l.credOff + slot*64 }

// sendDepth is the send queue the protocol needs: a send buffer each,
// the credit writes, the goodbye and the bulk write.
func (l *layout) sendDepth() int { return l.nsend + creditSlots + 2 }
