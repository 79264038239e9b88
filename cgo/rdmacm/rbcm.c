//go:build cgo

// rbcm.c: the C half of package rdmacm, compiled by cgo with the package
// (the build constraint is its Go files'). What Go calls is declared in
// rbcm.h.

#include <stdio.h>
#include <errno.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "rbcm.h"

int rbcm_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **id,
		   uintptr_t key, int ps)
{
	return rdma_create_id(ch, id, (void *)key, (enum rdma_port_space)ps);
}

void rbcm_set_key(struct rdma_cm_id *id, uintptr_t key)
{
	id->context = (void *)key;
}

int rbcm_set_id_option(struct rdma_cm_id *id, int name, int val)
{
	return rdma_set_option(id, RDMA_OPTION_ID, name, &val, sizeof val);
}

static int rbcm_sockaddr(const struct rbcm_addr *a, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	switch (a->family) {
	case AF_INET:
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		memcpy(&sin->sin_addr, a->ip, 4);
		return 0;
	case AF_INET6:
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->port);
		sin6->sin6_scope_id = a->scope_id;
		memcpy(&sin6->sin6_addr, a->ip, 16);
		return 0;
	default:
		errno = EAFNOSUPPORT;
		return -1;
	}
}

int rbcm_bind(struct rdma_cm_id *id, const struct rbcm_addr *a)
{
	struct sockaddr_storage ss;

	if (rbcm_sockaddr(a, &ss))
		return -1;
	return rdma_bind_addr(id, (struct sockaddr *)&ss);
}

int rbcm_resolve_addr(struct rdma_cm_id *id, const struct rbcm_addr *src,
		      const struct rbcm_addr *dst, int ms)
{
	struct sockaddr_storage s, d;

	if (rbcm_sockaddr(dst, &d))
		return -1;
	if (src->family == 0)
		return rdma_resolve_addr(id, NULL, (struct sockaddr *)&d, ms);
	if (rbcm_sockaddr(src, &s))
		return -1;
	return rdma_resolve_addr(id, (struct sockaddr *)&s, (struct sockaddr *)&d, ms);
}

// rbcm_conn_param fills an rdma_conn_param; priv stays the caller's.
static void rbcm_conn_param(struct rdma_conn_param *p, const void *priv, int len,
			    int rr, int idepth, int retry, int rnr)
{
	memset(p, 0, sizeof *p);
	p->private_data = priv;
	p->private_data_len = (uint8_t)len;
	p->responder_resources = (uint8_t)rr;
	p->initiator_depth = (uint8_t)idepth;
	p->retry_count = (uint8_t)retry;
	p->rnr_retry_count = (uint8_t)rnr;
}

int rbcm_connect(struct rdma_cm_id *id, const void *priv, int len,
		 int rr, int idepth, int retry, int rnr)
{
	struct rdma_conn_param p;

	rbcm_conn_param(&p, priv, len, rr, idepth, retry, rnr);
	return rdma_connect(id, &p);
}

int rbcm_accept(struct rdma_cm_id *id, const void *priv, int len,
		int rr, int idepth, int retry, int rnr)
{
	struct rdma_conn_param p;

	rbcm_conn_param(&p, priv, len, rr, idepth, retry, rnr);
	return rdma_accept(id, &p);
}

static void rbcm_fill_addr(struct sockaddr *sa, uint16_t port_be, struct rbcm_addr *a)
{
	memset(a, 0, sizeof *a);
	switch (sa->sa_family) {
	case AF_INET:
		memcpy(a->ip, &((struct sockaddr_in *)sa)->sin_addr, 4);
		break;
	case AF_INET6:
		memcpy(a->ip, &((struct sockaddr_in6 *)sa)->sin6_addr, 16);
		a->scope_id = ((struct sockaddr_in6 *)sa)->sin6_scope_id;
		break;
	default:
		return;
	}
	a->family = sa->sa_family;
	a->port = ntohs(port_be);
}

void rbcm_peer_addr(struct rdma_cm_id *id, struct rbcm_addr *a)
{
	rbcm_fill_addr(rdma_get_peer_addr(id), rdma_get_dst_port(id), a);
}

void rbcm_local_addr(struct rdma_cm_id *id, struct rbcm_addr *a)
{
	rbcm_fill_addr(rdma_get_local_addr(id), rdma_get_src_port(id), a);
}

const char *rbcm_device(struct rdma_cm_id *id, int *port)
{
	*port = 0;
	if (!id->verbs || !id->verbs->device)
		return NULL;
	*port = id->port_num;
	return ibv_get_device_name(id->verbs->device);
}

int rbcm_device_fds(struct rdma_cm_id *id, char *node, int node_len,
		    int *cmd_fd, int *async_fd)
{
	if (!id->verbs || !id->verbs->device)
		return -1;
	snprintf(node, node_len, "%s", id->verbs->device->dev_name);
	*cmd_fd = id->verbs->cmd_fd;
	*async_fd = id->verbs->async_fd;
	return 0;
}

int rbcm_get_event(struct rdma_event_channel *ch, struct rbcm_event *out)
{
	struct rdma_cm_event *ev;
	const void *priv = NULL;
	int len = 0;

	if (rdma_get_cm_event(ch, &ev))
		return -1;
	memset(out, 0, sizeof *out);
	out->ev = ev;
	out->type = ev->event;
	out->status = ev->status;
	out->key = (uintptr_t)ev->id->context;
	if (ev->listen_id)
		out->listen_key = (uintptr_t)ev->listen_id->context;
	if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
		out->new_id = ev->id;
	switch (ev->event) {
	case RDMA_CM_EVENT_CONNECT_REQUEST:
	case RDMA_CM_EVENT_CONNECT_RESPONSE:
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_ESTABLISHED:
		if (ev->id->qp_type == IBV_QPT_UD) {
			priv = ev->param.ud.private_data;
			len = ev->param.ud.private_data_len;
		} else {
			priv = ev->param.conn.private_data;
			len = ev->param.conn.private_data_len;
		}
		break;
	default:
		break;
	}
	if (priv && len > 0) {
		memcpy(out->priv, priv, len);
		out->priv_len = len;
	}
	return 0;
}
