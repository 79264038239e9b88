// Package verbs is rdmabind's binding of libibverbs for reliable connected
// queue pairs: device contexts, protection domains, memory regions over
// mmap'd memory, completion queues whose channels sit on the Go netpoller,
// QPs, posting and polling. It is one of the two packages of the module
// that use cgo (with cgo/rdmacm); no C type appears in its API. Its C is in
// rbv.c and rbv.h, beside the Go, which cgo compiles with the package;
// verbs_cgo_unsafe.go calls it. qp builds connections on it.
//
//	ctx, err := verbs.ContextOf(id)       // id: a resolved *rdmacm.ID
//	pd, err := ctx.AllocPD()
//	reg, err := verbs.NewRegion(1 << 20)  // mmap: never the Go heap
//	mr, err := pd.RegMR(reg, verbs.AccessLocalWrite)
//	cq, err := ctx.NewCQ(64)
//	qp, err := pd.CreateQPOnID(id, cq, cq, verbs.Caps{SendDepth: 32, RecvDepth: 32})
//	err = qp.PostRecv(1, reg.Addr(0), 4096, mr.LKey())
//	n, err := cq.Poll(wcs)                // 0: arm, poll again, Wait
//
// # Contexts and sharing raw pointers with rdmacm
//
// The device contexts are librdmacm's, and always those of an rdma_cm id:
// ContextOf reads id->verbs of an *rdmacm.ID bound to a device (a resolved
// or accepted id, or one bound to an address of the device). librdmacm
// counts each id as a user of its device's context, so the context stays
// open while the id lives, and is closed (by librdmacm, never by this
// package) once the device is gone and its last id destroyed: free what
// was made on a context before destroying the id it came from. There is
// no way to open a device by name: a context taken from rdma_get_devices
// and not held would not be counted, and librdmacm could free it when it
// re-reads its device list (a device removal, cgo/rdmacm's device hub).
// CreateQPOnID calls rdma_create_qp on an *rdmacm.ID. The raw cm_id pointer comes from
// cgo/rdmacm through the internal package cgo/internal/cmraw, under the ID's
// lock; nothing outside cgo/ can reach it.
//
// GIDs are netip.Addr values in their 16-byte form (QueryGID, RTRAttr.DGID),
// the type package rdma gives them in: an IPv4 RoCE GID is ::ffff:a.b.c.d.
//
// # Lifetimes
//
// A child keeps its parent alive: an MR its PD and Region, a QP its PD, CQs
// and id. Free in the order QP, CQ, MR, PD (then the rdma_cm id, then its
// channel): PD.Close closes the QPs and MRs still open on it first. Every
// Close is safe to call twice. Memory given to the device is a Region
// (mmap'd, MAP_POPULATE), never the Go heap.
//
// # Errors
//
// Errors name the verb and wrap the errno as a unix.Errno (errors.Is(err,
// unix.ENOMEM)); ErrClosed marks use after Close; built without cgo every
// constructor fails with ErrNotSupported (and unix.EOPNOTSUPP). A failed
// work completion is a *WCError whose Status, a WCStatus, prints as the
// ibv_wc_status name (IBV_WC_WR_FLUSH_ERR); it matches unix.ECANCELED when
// flushed and unix.ETIMEDOUT on retry exhaustion.
package verbs
