// rbcm.h: the C half of package rdmacm (rbcm.c), the wrappers its Go calls.
// A call that fails returns -1 and leaves its errno in errno, for cgo's
// two-value call.

#ifndef RBCM_H
#define RBCM_H

#include <stdint.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// An address as Go hands it over and gets it back; the sockaddr is built and
// read in C.
struct rbcm_addr {
	int      family;   // AF_INET, AF_INET6, 0 for none
	uint16_t port;     // host byte order
	uint32_t scope_id;
	uint8_t  ip[16];   // 4 bytes for AF_INET
};

// What Go keeps of an rdma_cm_event.
struct rbcm_event {
	int                   type;
	int                   status;
	uintptr_t             key;        // event->id->context
	uintptr_t             listen_key; // event->listen_id->context, 0 if none
	struct rdma_cm_id    *new_id;     // connect requests: the new id
	struct rdma_cm_event *ev;         // for rdma_ack_cm_event
	int                   priv_len;
	uint8_t               priv[256];  // private_data_len is a uint8_t
};

// Channels and ids.
int rbcm_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **id,
		   uintptr_t key, int ps);
void rbcm_set_key(struct rdma_cm_id *id, uintptr_t key);
int rbcm_set_id_option(struct rdma_cm_id *id, int name, int val);
const char *rbcm_device(struct rdma_cm_id *id, int *port);
// The uverbs node (ibv_device's dev_name, "uverbs0") and the command and
// async fds of the librdmacm context of id's device; -1 without a device.
int rbcm_device_fds(struct rdma_cm_id *id, char *node, int node_len,
		    int *cmd_fd, int *async_fd);

int rbcm_get_event(struct rdma_event_channel *ch, struct rbcm_event *out);

// Addresses and connections.
int rbcm_bind(struct rdma_cm_id *id, const struct rbcm_addr *a);
int rbcm_resolve_addr(struct rdma_cm_id *id, const struct rbcm_addr *src,
		      const struct rbcm_addr *dst, int ms);
int rbcm_connect(struct rdma_cm_id *id, const void *priv, int len,
		 int rr, int idepth, int retry, int rnr);
int rbcm_accept(struct rdma_cm_id *id, const void *priv, int len,
		int rr, int idepth, int retry, int rnr);
void rbcm_peer_addr(struct rdma_cm_id *id, struct rbcm_addr *a);
void rbcm_local_addr(struct rdma_cm_id *id, struct rbcm_addr *a);

#endif
