//go:build cgo

// rbv.c: the C half of package verbs, compiled by cgo with the package (the
// build constraint is its Go files'). What Go calls is declared in rbv.h.

#include <errno.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>

#include "rbv.h"

struct ibv_context *rbv_ctx_of_id(struct rdma_cm_id *id, int *port)
{
	*port = id->port_num;
	return id->verbs;
}

const char *rbv_ctx_name(struct ibv_context *c)
{
	return ibv_get_device_name(c->device);
}

int rbv_query_port(struct ibv_context *c, int port, int *mtu, int *state, int *lid, int *ll)
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

int rbv_query_gid(struct ibv_context *c, int port, int index, uint8_t *out)
{
	union ibv_gid g;

	if (ibv_query_gid(c, (uint8_t)port, index, &g))
		return -1;
	memcpy(out, g.raw, 16);
	return 0;
}

struct ibv_mr *rbv_reg_mr(struct ibv_pd *pd, uintptr_t addr, size_t len, int access,
			  uint32_t *lkey, uint32_t *rkey)
{
	struct ibv_mr *mr = ibv_reg_mr(pd, (void *)addr, len, access);

	if (mr) {
		*lkey = mr->lkey;
		*rkey = mr->rkey;
	}
	return mr;
}

int rbv_dereg_mr(struct ibv_mr *mr)
{
	int r = ibv_dereg_mr(mr);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

int rbv_dealloc_pd(struct ibv_pd *pd)
{
	int r = ibv_dealloc_pd(pd);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

int rbv_destroy_cq(struct ibv_cq *cq)
{
	int r = ibv_destroy_cq(cq);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

int rbv_destroy_comp_channel(struct ibv_comp_channel *ch)
{
	int r = ibv_destroy_comp_channel(ch);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

int rbv_comp_fd(struct ibv_comp_channel *ch)
{
	return ch->fd;
}

int rbv_req_notify(struct ibv_cq *cq)
{
	int r = ibv_req_notify_cq(cq, 0);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

// rbv_get_cq_event reads one event (the channel is non-blocking: EAGAIN when
// none) and acknowledges it at once.
int rbv_get_cq_event(struct ibv_comp_channel *ch)
{
	struct ibv_cq *cq;
	void *ctx;

	if (ibv_get_cq_event(ch, &cq, &ctx))
		return -1;
	ibv_ack_cq_events(cq, 1);
	return 0;
}

int rbv_poll(struct ibv_cq *cq, struct rbv_wc *out, int n)
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

// rbv_poll_spin busy-polls cq in C for up to ns nanoseconds, until at least
// one completion is there: a spinning wait that never enters the Go
// scheduler.
int rbv_poll_spin(struct ibv_cq *cq, struct rbv_wc *out, int n, int64_t ns)
{
	struct timespec t0, t;
	int64_t el;
	int got, k = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		got = rbv_poll(cq, out, n);
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

// rbv_poll_arm polls cq; when it is empty, arms it and polls once more (a
// completion between the two polls raises no event). One call for three.
int rbv_poll_arm(struct ibv_cq *cq, struct rbv_wc *out, int n)
{
	int got = rbv_poll(cq, out, n), r;

	if (got != 0)
		return got;
	r = ibv_req_notify_cq(cq, 0);
	if (r) {
		errno = r;
		return -2;
	}
	return rbv_poll(cq, out, n);
}

// rbv_event_poll reads one event of the (non-blocking) channel, acknowledges
// it and polls cq: -1 with errno EAGAIN when no event is there.
int rbv_event_poll(struct ibv_comp_channel *ch, struct ibv_cq *cq, struct rbv_wc *out, int n)
{
	struct ibv_cq *ecq;
	void *ctx;

	if (ibv_get_cq_event(ch, &ecq, &ctx))
		return -1;
	ibv_ack_cq_events(ecq, 1);
	return rbv_poll(cq, out, n);
}

static void rbv_qp_init_attr(struct ibv_qp_init_attr *a, struct ibv_cq *scq, struct ibv_cq *rcq,
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

struct ibv_qp *rbv_create_qp(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq,
			     int sd, int rd, int inl, uint32_t *qpn, int *inl_out)
{
	struct ibv_qp_init_attr a;
	struct ibv_qp *qp;

	rbv_qp_init_attr(&a, scq, rcq, sd, rd, 1, 1, inl);
	qp = ibv_create_qp(pd, &a);
	if (qp) {
		*qpn = qp->qp_num;
		*inl_out = a.cap.max_inline_data;
	}
	return qp;
}

struct ibv_qp *rbv_create_qp_on_id(struct rdma_cm_id *id, struct ibv_pd *pd,
				   struct ibv_cq *scq, struct ibv_cq *rcq,
				   int sd, int rd, int inl, uint32_t *qpn, int *inl_out)
{
	struct ibv_qp_init_attr a;

	rbv_qp_init_attr(&a, scq, rcq, sd, rd, 1, 1, inl);
	if (rdma_create_qp(id, pd, &a))
		return NULL;
	*qpn = id->qp->qp_num;
	*inl_out = a.cap.max_inline_data;
	return id->qp;
}

// rbv_destroy_qp_on_id destroys id's QP if it is still qp (rdma_destroy_qp
// also clears id->qp, so that librdmacm does not touch it again).
int rbv_destroy_qp_on_id(struct rdma_cm_id *id, struct ibv_qp *qp)
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

int rbv_destroy_qp(struct ibv_qp *qp)
{
	int r = ibv_destroy_qp(qp);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

static int rbv_modify(struct ibv_qp *qp, struct ibv_qp_attr *a, int mask)
{
	int r = ibv_modify_qp(qp, a, mask);
	if (r)
		errno = r;
	return r ? -1 : 0;
}

int rbv_to_init(struct ibv_qp *qp, int port, int access)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_INIT;
	a.pkey_index = 0;
	a.port_num = (uint8_t)port;
	a.qp_access_flags = access;
	return rbv_modify(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
}

int rbv_to_rtr(struct ibv_qp *qp, int port, int mtu, uint32_t dqpn, uint32_t rq_psn,
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
	return rbv_modify(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
}

int rbv_to_rts(struct ibv_qp *qp, uint32_t sq_psn, int timeout, int retry, int rnr)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_RTS;
	a.sq_psn = sq_psn;
	a.timeout = (uint8_t)timeout;
	a.retry_cnt = (uint8_t)retry;
	a.rnr_retry = (uint8_t)rnr;
	a.max_rd_atomic = 1;
	return rbv_modify(qp, &a, IBV_QP_STATE | IBV_QP_SQ_PSN | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_MAX_QP_RD_ATOMIC);
}

int rbv_to_err(struct ibv_qp *qp)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof a);
	a.qp_state = IBV_QPS_ERR;
	return rbv_modify(qp, &a, IBV_QP_STATE);
}

int rbv_post_send(struct ibv_qp *qp, uint64_t wr_id, int op, uintptr_t addr, uint32_t len,
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

int rbv_post_recv(struct ibv_qp *qp, uint64_t wr_id, uintptr_t addr, uint32_t len, uint32_t lkey)
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
