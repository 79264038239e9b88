//go:build cgo

package verbs

/*
#cgo LDFLAGS: -libverbs -lrdmacm
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <time.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// What Go reads of a work completion; the layout of verbs.WC.
struct rb_wc {
	uint64_t wr_id;
	uint32_t status;
	uint32_t opcode;
	uint32_t byte_len;
	uint32_t imm;
	uint32_t flags;
	uint32_t qp_num;
};

static struct ibv_context *rb_ctx_of_id(struct rdma_cm_id *id, int *port)
{
	*port = id->port_num;
	return id->verbs;
}

// rb_open_device finds librdmacm's context of the device named name: the
// library opens every device once and keeps them for the process's life.
static struct ibv_context *rb_open_device(const char *name)
{
	int n = 0, i;
	struct ibv_context **l = rdma_get_devices(&n), *c = NULL;

	if (!l)
		return NULL;
	for (i = 0; i < n; i++)
		if (strcmp(ibv_get_device_name(l[i]->device), name) == 0)
			c = l[i];
	rdma_free_devices(l);
	if (!c)
		errno = ENODEV;
	return c;
}

static const char *rb_ctx_name(struct ibv_context *c)
{
	return ibv_get_device_name(c->device);
}

static int rb_query_port(struct ibv_context *c, int port, int *mtu, int *state, int *lid, int *ll)
{
	struct ibv_port_attr a;
	int r = ibv_query_port(c, (uint8_t)port, &a);

	if (r) {
		errno = r;
		return -1;
	}
	*mtu = a.active_mtu;
	*state = a.state;
	*lid = a.lid;
	*ll = a.link_layer;
	return 0;
}

static int rb_query_gid(struct ibv_context *c, int port, int index, uint8_t *out)
{
	union ibv_gid g;

	if (ibv_query_gid(c, (uint8_t)port, index, &g))
		return -1;
	memcpy(out, g.raw, 16);
	return 0;
}

static struct ibv_mr *rb_reg_mr(struct ibv_pd *pd, uintptr_t addr, size_t len, int access,
				uint32_t *lkey, uint32_t *rkey)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, (void *)addr, len, access);

	if (mr) {
		*lkey = mr->lkey;
		*rkey = mr->rkey;
	}
	return mr;
}

static int rb_dereg_mr(struct ibv_mr *mr)
{
	int r = ibv_dereg_mr(mr);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_dealloc_pd(struct ibv_pd *pd)
{
	int r = ibv_dealloc_pd(pd);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_destroy_cq(struct ibv_cq *cq)
{
	int r = ibv_destroy_cq(cq);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	int r = ibv_destroy_comp_channel(ch);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_comp_fd(struct ibv_comp_channel *ch)
{
	return ch->fd;
}

static int rb_req_notify(struct ibv_cq *cq)
{
	int r = ibv_req_notify_cq(cq, 0);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

// rb_get_cq_event reads one event (the channel is non-blocking: EAGAIN when
// none) and acknowledges it at once.
static int rb_get_cq_event(struct ibv_comp_channel *ch)
{
	struct ibv_cq *cq;
	void *ctx;

	if (ibv_get_cq_event(ch, &cq, &ctx))
		return -1;
	ibv_ack_cq_events(cq, 1);
	return 0;
}

static int rb_poll(struct ibv_cq *cq, struct rb_wc *out, int n)
{
	struct ibv_wc wc[32];
	int got, i;

	if (n > 32)
		n = 32;
	got = ibv_poll_cq(cq, n, wc);
	for (i = 0; i < got; i++) {
		out[i].wr_id = wc[i].wr_id;
		out[i].status = wc[i].status;
		out[i].opcode = wc[i].opcode;
		out[i].byte_len = wc[i].byte_len;
		out[i].imm = ntohl(wc[i].imm_data);
		out[i].flags = wc[i].wc_flags;
		out[i].qp_num = wc[i].qp_num;
	}
	return got;
}

// rb_poll_spin busy-polls cq in C for up to ns nanoseconds, until at least
// one completion is there: a spinning wait that never enters the Go
// scheduler.
static int rb_poll_spin(struct ibv_cq *cq, struct rb_wc *out, int n, int64_t ns)
{
	struct timespec t0, t;
	int64_t el;
	int got, k = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		got = rb_poll(cq, out, n);
		if (got != 0)
			return got;
		if (++k % 64)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &t);
		el = (int64_t)(t.tv_sec - t0.tv_sec) * 1000000000 + (t.tv_nsec - t0.tv_nsec);
		if (el >= ns)
			return 0;
	}
}

// rb_poll_arm polls cq; when it is empty, arms it and polls once more (a
// completion between the two polls raises no event). One call for three.
static int rb_poll_arm(struct ibv_cq *cq, struct rb_wc *out, int n)
{
	int got = rb_poll(cq, out, n), r;

	if (got != 0)
		return got;
	r = ibv_req_notify_cq(cq, 0);
	if (r) {
		errno = r;
		return -2;
	}
	return rb_poll(cq, out, n);
}

// rb_event_poll reads one event of the (non-blocking) channel, acknowledges
// it and polls cq: -1 with errno EAGAIN when no event is there.
static int rb_event_poll(struct ibv_comp_channel *ch, struct ibv_cq *cq, struct rb_wc *out, int n)
{
	struct ibv_cq *ecq;
	void *ctx;

	if (ibv_get_cq_event(ch, &ecq, &ctx))
		return -1;
	ibv_ack_cq_events(ecq, 1);
	return rb_poll(cq, out, n);
}

static void rb_qp_init_attr(struct ibv_qp_init_attr *a, struct ibv_cq *scq, struct ibv_cq *rcq,
			    int sd, int rd, int ss, int rs, int inl)
{
	memset(a, 0, sizeof *a);
	a->send_cq = scq;
	a->recv_cq = rcq;
	a->qp_type = IBV_QPT_RC;
	a->cap.max_send_wr = sd;
	a->cap.max_recv_wr = rd;
	a->cap.max_send_sge = ss;
	a->cap.max_recv_sge = rs;
	a->cap.max_inline_data = inl;
}

static struct ibv_qp *rb_create_qp(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq,
				   int sd, int rd, int inl, uint32_t *qpn, int *inl_out)
{
	struct ibv_qp_init_attr a;
	struct ibv_qp *qp;

	rb_qp_init_attr(&a, scq, rcq, sd, rd, 1, 1, inl);
	qp = ibv_create_qp(pd, &a);
	if (qp) {
		*qpn = qp->qp_num;
		*inl_out = a.cap.max_inline_data;
	}
	return qp;
}

static struct ibv_qp *rb_create_qp_on_id(struct rdma_cm_id *id, struct ibv_pd *pd,
					 struct ibv_cq *scq, struct ibv_cq *rcq,
					 int sd, int rd, int inl, uint32_t *qpn, int *inl_out)
{
	struct ibv_qp_init_attr a;

	rb_qp_init_attr(&a, scq, rcq, sd, rd, 1, 1, inl);
	if (rdma_create_qp(id, pd, &a))
		return NULL;
	*qpn = id->qp->qp_num;
	*inl_out = a.cap.max_inline_data;
	return id->qp;
}

// rb_destroy_qp_on_id destroys id's QP if it is still qp (rdma_destroy_qp
// also clears id->qp, so that librdmacm does not touch it again).
static int rb_destroy_qp_on_id(struct rdma_cm_id *id, struct ibv_qp *qp)
{
	if (id->qp != qp) {
		int r = ibv_destroy_qp(qp);
		if (r)
			errno = r;
		return r ? -1 : 0;
	}
	rdma_destroy_qp(id);
	return 0;
}

static int rb_destroy_qp(struct ibv_qp *qp)
{
	int r = ibv_destroy_qp(qp);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_modify(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask)
{
	int r = ibv_modify_qp(qp, a, mask);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_to_init(struct ibv_qp *qp, int port, int access)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = (uint8_t)port;
	a.qp_access_flags = access;
	return rb_modify(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

static int rb_to_rtr(struct ibv_qp *qp, int port, int mtu, uint32_t dqpn, uint32_t rq_psn,
		     const uint8_t *dgid, int sgid_index, int lid, int min_rnr)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = mtu;
	a.dest_qp_num = dqpn;
	a.rq_psn = rq_psn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = (uint8_t)min_rnr;
	a.ah_attr.dlid = (uint16_t)lid;
	a.ah_attr.port_num = (uint8_t)port;
	if (sgid_index >= 0) {
		a.ah_attr.is_global = 1;
		memcpy(a.ah_attr.grh.dgid.raw, dgid, 16);
		a.ah_attr.grh.sgid_index = (uint8_t)sgid_index;
		a.ah_attr.grh.hop_limit = 64;
	}
	return rb_modify(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			 IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

static int rb_to_rts(struct ibv_qp *qp, uint32_t sq_psn, int timeout, int retry, int rnr)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = sq_psn;
	a.timeout = (uint8_t)timeout;
	a.retry_cnt = (uint8_t)retry;
	a.rnr_retry = (uint8_t)rnr;
	a.max_rd_atomic = 1;
	return rb_modify(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			 IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
}

static int rb_to_err(struct ibv_qp *qp)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_ERR;
	return rb_modify(qp, &a, IBV_QP_STATE);
}

static int rb_post_send(struct ibv_qp *qp, uint64_t wr_id, int op, uintptr_t addr, uint32_t len,
			uint32_t lkey, uint32_t imm, uint64_t raddr, uint32_t rkey, int flags)
{
	struct ibv_sge sge = { .addr = addr, .length = len, .lkey = lkey };
	struct ibv_send_wr wr, *bad;
	int r;

	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	wr.opcode = op;
	wr.send_flags = flags;
	wr.imm_data = htonl(imm);
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	r = ibv_post_send(qp, &wr, &bad);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rb_post_recv(struct ibv_qp *qp, uint64_t wr_id, uintptr_t addr, uint32_t len, uint32_t lkey)
{
	struct ibv_sge sge = { .addr = addr, .length = len, .lkey = lkey };
	struct ibv_recv_wr wr, *bad;
	int r;

	memset(&wr, 0, sizeof wr);
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = len ? 1 : 0;
	r = ibv_post_recv(qp, &wr, &bad);
	if (r)
		errno = r;
	return r ? -1 : 0;
}
*/
import "C"

import (
	"unsafe"

	"github.com/rdmabind/rdmabind/cgo/internal/cmraw"
)

// WC's layout is struct rb_wc's: this fails to compile otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(WC{})-C.sizeof_struct_rb_wc]

// The enum values Go names are libibverbs': these fail to compile otherwise.
var (
	_ = [1]struct{}{}[int(OpSend)-C.IBV_WR_SEND]
	_ = [1]struct{}{}[int(OpSendImm)-C.IBV_WR_SEND_WITH_IMM]
	_ = [1]struct{}{}[int(OpWrite)-C.IBV_WR_RDMA_WRITE]
	_ = [1]struct{}{}[int(OpWriteImm)-C.IBV_WR_RDMA_WRITE_WITH_IMM]
	_ = [1]struct{}{}[int(AccessLocalWrite)-C.IBV_ACCESS_LOCAL_WRITE]
	_ = [1]struct{}{}[int(AccessRemoteWrite)-C.IBV_ACCESS_REMOTE_WRITE]
	_ = [1]struct{}{}[int(AccessRemoteRead)-C.IBV_ACCESS_REMOTE_READ]
	_ = [1]struct{}{}[int(WCWithImm)-C.IBV_WC_WITH_IMM]
	_ = [1]struct{}{}[int(WCRecvRDMAImm)-C.IBV_WC_RECV_RDMA_WITH_IMM]
	_ = [1]struct{}{}[int(WCRecv)-C.IBV_WC_RECV]
	_ = [1]struct{}{}[int(SendSignaled)-C.IBV_SEND_SIGNALED]
	_ = [1]struct{}{}[int(SendInline)-C.IBV_SEND_INLINE]
	_ = [1]struct{}{}[int(WCSuccess)-C.IBV_WC_SUCCESS]
	_ = [1]struct{}{}[int(WCFlushErr)-C.IBV_WC_WR_FLUSH_ERR]
)

// cImpl is the C surface over libibverbs (and librdmacm's device list and
// rdma_create_qp). Handles are the C pointers.
type cImpl struct{}

func init() { impl = cImpl{} }

func p[T any](h handle) *T { return (*T)(h) }

func h[T any](x *T) handle { return handle(x) }

func (cImpl) ctxOfID(id any) (handle, string, int, error) {
	var c *C.struct_ibv_context
	var port C.int
	err := cmraw.With(id, func(cmid unsafe.Pointer) error {
		c = C.rb_ctx_of_id((*C.struct_rdma_cm_id)(cmid), &port)
		return nil
	})
	if err != nil {
		return nil, "", 0, err
	}
	if c == nil {
		return nil, "", 0, errNoDevice
	}
	return h(c), C.GoString(C.rb_ctx_name(c)), int(port), nil
}

func (cImpl) openDevice(name string) (handle, error) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	c, err := C.rb_open_device(cs)
	if c == nil {
		return nil, errnoOr(err)
	}
	return h(c), nil
}

func (cImpl) queryPort(ctx handle, port int) (PortAttr, error) {
	var mtu, state, lid, ll C.int
	if r, err := C.rb_query_port(p[C.struct_ibv_context](ctx), C.int(port), &mtu, &state, &lid, &ll); r != 0 {
		return PortAttr{}, errnoOr(err)
	}
	return PortAttr{ActiveMTU: MTU(mtu), State: int(state), LID: uint16(lid), Ethernet: ll == C.IBV_LINK_LAYER_ETHERNET}, nil
}

func (cImpl) queryGID(ctx handle, port, index int) ([16]byte, error) {
	var out [16]C.uint8_t
	var g [16]byte
	if r, err := C.rb_query_gid(p[C.struct_ibv_context](ctx), C.int(port), C.int(index), &out[0]); r != 0 {
		return g, errnoOr(err)
	}
	for i := range g {
		g[i] = byte(out[i])
	}
	return g, nil
}

func (cImpl) allocPD(ctx handle) (handle, error) {
	pd, err := C.ibv_alloc_pd(p[C.struct_ibv_context](ctx))
	if pd == nil {
		return nil, errnoOr(err)
	}
	return h(pd), nil
}

func (cImpl) deallocPD(pd handle) error {
	if r, err := C.rb_dealloc_pd(p[C.struct_ibv_pd](pd)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) regMR(pd handle, buf []byte, access Access) (handle, uint32, uint32, error) {
	var lkey, rkey C.uint32_t
	// buf is mmap'd memory (Region): not the Go heap.
	addr := C.uintptr_t(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	mr, err := C.rb_reg_mr(p[C.struct_ibv_pd](pd), addr, C.size_t(len(buf)), C.int(access), &lkey, &rkey)
	if mr == nil {
		return nil, 0, 0, errnoOr(err)
	}
	return h(mr), uint32(lkey), uint32(rkey), nil
}

func (cImpl) deregMR(mr handle) error {
	if r, err := C.rb_dereg_mr(p[C.struct_ibv_mr](mr)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) createCompChannel(ctx handle) (handle, int, error) {
	ch, err := C.ibv_create_comp_channel(p[C.struct_ibv_context](ctx))
	if ch == nil {
		return nil, -1, errnoOr(err)
	}
	return h(ch), int(C.rb_comp_fd(ch)), nil
}

func (cImpl) destroyCompChannel(ch handle) error {
	if r, err := C.rb_destroy_comp_channel(p[C.struct_ibv_comp_channel](ch)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) createCQ(ctx handle, depth int, ch handle) (handle, error) {
	cq, err := C.ibv_create_cq(p[C.struct_ibv_context](ctx), C.int(depth), nil, p[C.struct_ibv_comp_channel](ch), 0)
	if cq == nil {
		return nil, errnoOr(err)
	}
	return h(cq), nil
}

func (cImpl) destroyCQ(cq handle) error {
	if r, err := C.rb_destroy_cq(p[C.struct_ibv_cq](cq)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) reqNotify(cq handle) error {
	if r, err := C.rb_req_notify(p[C.struct_ibv_cq](cq)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) getCQEvent(ch handle) error {
	if r, err := C.rb_get_cq_event(p[C.struct_ibv_comp_channel](ch)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) poll(cq handle, out []WC) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	// out holds no Go pointers: C may write into it for the call.
	n := C.rb_poll(p[C.struct_ibv_cq](cq), (*C.struct_rb_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
	if n < 0 {
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) pollSpin(cq handle, out []WC, ns int64) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	n := C.rb_poll_spin(p[C.struct_ibv_cq](cq), (*C.struct_rb_wc)(unsafe.Pointer(&out[0])), C.int(len(out)), C.int64_t(ns))
	if n < 0 {
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) pollArm(cq handle, out []WC) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	n, err := C.rb_poll_arm(p[C.struct_ibv_cq](cq), (*C.struct_rb_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
	switch {
	case n == -2:
		return 0, errnoOr(err)
	case n < 0:
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) eventPoll(ch, cq handle, out []WC) (int, error) {
	n, err := C.rb_event_poll(p[C.struct_ibv_comp_channel](ch), p[C.struct_ibv_cq](cq), (*C.struct_rb_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
	if n == -1 {
		return 0, errnoOr(err)
	}
	if n < 0 {
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) createQP(pd, scq, rcq handle, c Caps) (handle, uint32, int, error) {
	var qpn C.uint32_t
	var inl C.int
	qp, err := C.rb_create_qp(p[C.struct_ibv_pd](pd), p[C.struct_ibv_cq](scq), p[C.struct_ibv_cq](rcq),
		C.int(c.SendDepth), C.int(c.RecvDepth), C.int(c.MaxInline), &qpn, &inl)
	if qp == nil {
		return nil, 0, 0, errnoOr(err)
	}
	return h(qp), uint32(qpn), int(inl), nil
}

func (cImpl) createQPOnID(id any, pd, scq, rcq handle, c Caps) (handle, uint32, int, error) {
	var qp *C.struct_ibv_qp
	var qpn C.uint32_t
	var inl C.int
	err := cmraw.With(id, func(cmid unsafe.Pointer) error {
		var err error
		qp, err = C.rb_create_qp_on_id((*C.struct_rdma_cm_id)(cmid), p[C.struct_ibv_pd](pd),
			p[C.struct_ibv_cq](scq), p[C.struct_ibv_cq](rcq),
			C.int(c.SendDepth), C.int(c.RecvDepth), C.int(c.MaxInline), &qpn, &inl)
		if qp == nil {
			return errnoOr(err)
		}
		return nil
	})
	if err != nil {
		return nil, 0, 0, err
	}
	return h(qp), uint32(qpn), int(inl), nil
}

func (cImpl) destroyQP(qp handle, id any) error {
	if id != nil {
		err := cmraw.With(id, func(cmid unsafe.Pointer) error {
			if r, err := C.rb_destroy_qp_on_id((*C.struct_rdma_cm_id)(cmid), p[C.struct_ibv_qp](qp)); r != 0 {
				return errnoOr(err)
			}
			return nil
		})
		if err == nil {
			return nil
		}
		// The id is gone already: its QP is still ours to destroy.
	}
	if r, err := C.rb_destroy_qp(p[C.struct_ibv_qp](qp)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toInit(qp handle, port int, access Access) error {
	if r, err := C.rb_to_init(p[C.struct_ibv_qp](qp), C.int(port), C.int(access)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toRTR(qp handle, a RTRAttr) error {
	var gid [16]C.uint8_t
	for i := range gid {
		gid[i] = C.uint8_t(a.DGID[i])
	}
	r, err := C.rb_to_rtr(p[C.struct_ibv_qp](qp), C.int(a.Port), C.int(a.MTU), C.uint32_t(a.DestQPN),
		C.uint32_t(a.RQPSN), &gid[0], C.int(a.SGIDIndex), C.int(a.DLID), C.int(a.MinRNRTimer))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toRTS(qp handle, a RTSAttr) error {
	if r, err := C.rb_to_rts(p[C.struct_ibv_qp](qp), C.uint32_t(a.SQPSN), C.int(a.Timeout), C.int(a.RetryCount), C.int(a.RNRRetry)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toErr(qp handle) error {
	if r, err := C.rb_to_err(p[C.struct_ibv_qp](qp)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) postSend(qp handle, w SendWR) error {
	r, err := C.rb_post_send(p[C.struct_ibv_qp](qp), C.uint64_t(w.ID), C.int(w.Op), C.uintptr_t(w.Addr),
		C.uint32_t(w.Len), C.uint32_t(w.LKey), C.uint32_t(w.Imm), C.uint64_t(w.RemoteAddr),
		C.uint32_t(w.RKey), C.int(w.Flags))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) postRecv(qp handle, id uint64, addr uintptr, length, lkey uint32) error {
	if r, err := C.rb_post_recv(p[C.struct_ibv_qp](qp), C.uint64_t(id), C.uintptr_t(addr), C.uint32_t(length), C.uint32_t(lkey)); r != 0 {
		return errnoOr(err)
	}
	return nil
}
