// rbv.h: the C half of package verbs (rbv.c), the wrappers its Go calls.
// A failed call leaves its errno in errno, also where the libibverbs call
// returns the errno instead of setting it, for cgo's two-value call;
// ibv_poll_cq's failure has none (the Go side reports EIO).

#ifndef RBV_H
#define RBV_H

#include <stddef.h>
#include <stdint.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// What Go reads of a work completion; the layout of verbs.WC.
struct rbv_wc {
	uint64_t wr_id;
	uint32_t status;
	uint32_t opcode;
	uint32_t byte_len;
	uint32_t imm;
	uint32_t flags;
	uint32_t qp_num;
};

// Devices and ports.
struct ibv_context *rbv_ctx_of_id(struct rdma_cm_id *id, int *port);
const char *rbv_ctx_name(struct ibv_context *c);
int rbv_query_port(struct ibv_context *c, int port, int *mtu, int *state, int *lid, int *ll);
int rbv_query_gid(struct ibv_context *c, int port, int index, uint8_t *out);

// PDs and MRs.
struct ibv_mr *rbv_reg_mr(struct ibv_pd *pd, uintptr_t addr, size_t len, int access,
			  uint32_t *lkey, uint32_t *rkey);
int rbv_dereg_mr(struct ibv_mr *mr);
int rbv_dealloc_pd(struct ibv_pd *pd);

// CQs and their completion channels.
int rbv_destroy_cq(struct ibv_cq *cq);
int rbv_destroy_comp_channel(struct ibv_comp_channel *ch);
int rbv_comp_fd(struct ibv_comp_channel *ch);
int rbv_req_notify(struct ibv_cq *cq);
int rbv_get_cq_event(struct ibv_comp_channel *ch);
int rbv_poll(struct ibv_cq *cq, struct rbv_wc *out, int n);
int rbv_poll_spin(struct ibv_cq *cq, struct rbv_wc *out, int n, int64_t ns);
int rbv_poll_arm(struct ibv_cq *cq, struct rbv_wc *out, int n);
int rbv_event_poll(struct ibv_comp_channel *ch, struct ibv_cq *cq, struct rbv_wc *out, int n);

// QPs: creation, state changes, posting.
struct ibv_qp *rbv_create_qp(struct ibv_pd *pd, struct ibv_cq *scq, struct ibv_cq *rcq,
			     int sd, int rd, int inl, uint32_t *qpn, int *inl_out);
struct ibv_qp *rbv_create_qp_on_id(struct rdma_cm_id *id, struct ibv_pd *pd,
				   struct ibv_cq *scq, struct ibv_cq *rcq,
				   int sd, int rd, int inl, uint32_t *qpn, int *inl_out);
int rbv_destroy_qp_on_id(struct rdma_cm_id *id, struct ibv_qp *qp);
int rbv_destroy_qp(struct ibv_qp *qp);
int rbv_to_init(struct ibv_qp *qp, int port, int access);
int rbv_to_rtr(struct ibv_qp *qp, int port, int mtu, uint32_t dqpn, uint32_t rq_psn,
	       const uint8_t *dgid, int sgid_index, int lid, int min_rnr);
int rbv_to_rts(struct ibv_qp *qp, uint32_t sq_psn, int timeout, int retry, int rnr);
int rbv_to_err(struct ibv_qp *qp);
int rbv_post_send(struct ibv_qp *qp, uint64_t wr_id, int op, uintptr_t addr, uint32_t len,
		  uint32_t lkey, uint32_t imm, uint64_t raddr, uint32_t rkey, int flags);
int rbv_post_recv(struct ibv_qp *qp, uint64_t wr_id, uintptr_t addr, uint32_t len, uint32_t lkey);

#endif
