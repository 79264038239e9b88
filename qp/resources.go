package qp

import (
	"errors"
	"fmt"

	"github.com/rdmabind/rdmabind/cgo/verbs"
)

// resources are the verbs objects of one connection, freed in the order
// QP, CQs, MR, region, PD (the rdma_cm id and channel, or the TCP
// connection, come after, in Conn.free).
//
// The region holds, in order: RecvDepth+1 receive buffers (the extra one
// takes the peer's goodbye, which needs no credit), SendDepth send buffers,
// the credit word the peer writes (64 bytes), and creditSlots source words
// for our own credit writes.
type resources struct {
	ctx      *verbs.Context
	pd       *verbs.PD
	scq, rcq *verbs.CQ
	reg      *verbs.Region
	mr       *verbs.MR
	qp       *verbs.QP

	buf  []byte
	base uintptr

	chunk, nrecv, nsend    int
	recvOff, sendOff, ctrl int
	credOff                int
	// bulk: the area the peer RDMA-writes whole messages into (at
	// ctrl+bulkDelta, as the protocol fixes), and our staging area for
	// the ones we write; 0 when off.
	bulk, bulkIn, bulkOut int
}

const (
	creditSlots = 8
	creditLen   = 32 // {returned, ^returned, bulkDone, ^bulkDone}
	// bulkDelta is where the bulk area starts after the credit word: the
	// protocol fixes it, so the hello needs only the area's size.
	bulkDelta = 1024
	bulkUnit  = 64 << 10 // the hello gives the bulk size in these
)

// newResources allocates everything but the QP.
func newResources(ctx *verbs.Context, o Options) (*resources, error) {
	r := &resources{ctx: ctx, chunk: o.Chunk, nrecv: o.RecvDepth + 1, nsend: o.SendDepth}
	r.recvOff = 0
	r.sendOff = r.nrecv * r.chunk
	r.ctrl = r.sendOff + r.nsend*r.chunk
	r.credOff = r.ctrl + 64
	size := r.credOff + creditSlots*64
	if o.Bulk > 0 {
		r.bulk = o.Bulk
		r.bulkIn = r.ctrl + bulkDelta
		r.bulkOut = r.bulkIn + r.bulk
		size = r.bulkOut + r.bulk
	}
	var err error
	fail := func(e error) (*resources, error) {
		r.free()
		return nil, e
	}
	if r.pd, err = ctx.AllocPD(); err != nil {
		return fail(err)
	}
	if r.reg, err = verbs.NewRegion(size); err != nil {
		return fail(err)
	}
	r.buf = r.reg.Bytes()
	r.base = r.reg.Addr(0)
	if r.mr, err = r.pd.RegMR(r.reg, verbs.AccessLocalWrite|verbs.AccessRemoteWrite); err != nil {
		return fail(err)
	}
	// One CQE per send buffer and credit write, one per receive buffer.
	if r.scq, err = ctx.NewCQ(r.nsend + creditSlots + 2); err != nil {
		return fail(err)
	}
	if r.rcq, err = ctx.NewCQ(r.nrecv + 1); err != nil {
		return fail(err)
	}
	return r, nil
}

func (r *resources) caps() verbs.Caps {
	return verbs.Caps{SendDepth: r.nsend + creditSlots + 2, RecvDepth: r.nrecv, MaxInline: 64}
}

func (r *resources) recvAddr(slot int) uintptr {
	return r.base + uintptr(r.recvOff+slot*r.chunk)
}

func (r *resources) recvBytes(slot int, n int) []byte {
	o := r.recvOff + slot*r.chunk
	return r.buf[o : o+n]
}

func (r *resources) sendBytes(slot int) []byte {
	o := r.sendOff + slot*r.chunk
	return r.buf[o : o+r.chunk]
}

func (r *resources) sendAddr(slot int) uintptr {
	return r.base + uintptr(r.sendOff+slot*r.chunk)
}

func (r *resources) ctrlAddr() uint64 { return uint64(r.base) + uint64(r.ctrl) }

// postRecvs posts every receive buffer.
func (r *resources) postRecvs() error {
	for i := 0; i < r.nrecv; i++ {
		if err := r.qp.PostRecv(uint64(i), r.recvAddr(i), uint32(r.chunk), r.mr.LKey()); err != nil {
			return err
		}
	}
	return nil
}

// free frees what there is, in order: QP, CQs, MR, region, PD. Safe twice.
func (r *resources) free() error {
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if r.qp != nil {
		add("qp", r.qp.Close())
	}
	if r.scq != nil {
		add("send cq", r.scq.Close())
	}
	if r.rcq != nil {
		add("recv cq", r.rcq.Close())
	}
	if r.mr != nil {
		add("mr", r.mr.Close())
	}
	if r.reg != nil {
		add("region", r.reg.Close())
	}
	if r.pd != nil {
		add("pd", r.pd.Close())
	}
	return errors.Join(errs...)
}
