//go:build cgo

package rdmacm

/*
#cgo LDFLAGS: -lrdmacm -libverbs
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

// An address as Go hands it over and gets it back; the sockaddr is built and
// read in C.
struct rb_addr {
	int      family;   // AF_INET, AF_INET6, 0 for none
	uint16_t port;     // host byte order
	uint32_t scope_id;
	uint8_t  ip[16];   // 4 bytes for AF_INET
};

// What Go keeps of an rdma_cm_event.
struct rb_event {
	int                   type;
	int                   status;
	uintptr_t             key;        // event->id->context
	uintptr_t             listen_key; // event->listen_id->context, 0 if none
	struct rdma_cm_id    *new_id;     // connect requests: the new id
	struct rdma_cm_event *ev;         // for rdma_ack_cm_event
	int                   priv_len;
	uint8_t               priv[256];  // private_data_len is a uint8_t
};

static int rb_create_id(struct rdma_event_channel *ch, struct rdma_cm_id **id,
			uintptr_t key, int ps)
{
	return rdma_create_id(ch, id, (void *)key, (enum rdma_port_space)ps);
}

static void rb_set_key(struct rdma_cm_id *id, uintptr_t key)
{
	id->context = (void *)key;
}

static int rb_set_id_option(struct rdma_cm_id *id, int name, int val)
{
	return rdma_set_option(id, RDMA_OPTION_ID, name, &val, sizeof val);
}

static int rb_sockaddr(const struct rb_addr *a, struct sockaddr_storage *ss)
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

static int rb_bind(struct rdma_cm_id *id, const struct rb_addr *a)
{
	struct sockaddr_storage ss;

	if (rb_sockaddr(a, &ss))
		return -1;
	return rdma_bind_addr(id, (struct sockaddr *)&ss);
}

static int rb_resolve_addr(struct rdma_cm_id *id, const struct rb_addr *src,
			   const struct rb_addr *dst, int ms)
{
	struct sockaddr_storage s, d;

	if (rb_sockaddr(dst, &d))
		return -1;
	if (src->family == 0)
		return rdma_resolve_addr(id, NULL, (struct sockaddr *)&d, ms);
	if (rb_sockaddr(src, &s))
		return -1;
	return rdma_resolve_addr(id, (struct sockaddr *)&s, (struct sockaddr *)&d, ms);
}

// rb_conn_param fills an rdma_conn_param; priv stays the caller's.
static void rb_conn_param(struct rdma_conn_param *p, const void *priv, int len,
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

static int rb_connect(struct rdma_cm_id *id, const void *priv, int len,
		      int rr, int idepth, int retry, int rnr)
{
	struct rdma_conn_param p;

	rb_conn_param(&p, priv, len, rr, idepth, retry, rnr);
	return rdma_connect(id, &p);
}

static int rb_accept(struct rdma_cm_id *id, const void *priv, int len,
		     int rr, int idepth, int retry, int rnr)
{
	struct rdma_conn_param p;

	rb_conn_param(&p, priv, len, rr, idepth, retry, rnr);
	return rdma_accept(id, &p);
}

static void rb_fill_addr(struct sockaddr *sa, uint16_t port_be, struct rb_addr *a)
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

static void rb_peer_addr(struct rdma_cm_id *id, struct rb_addr *a)
{
	rb_fill_addr(rdma_get_peer_addr(id), rdma_get_dst_port(id), a);
}

static void rb_local_addr(struct rdma_cm_id *id, struct rb_addr *a)
{
	rb_fill_addr(rdma_get_local_addr(id), rdma_get_src_port(id), a);
}

static const char *rb_device(struct rdma_cm_id *id, int *port)
{
	*port = 0;
	if (!id->verbs || !id->verbs->device)
		return NULL;
	*port = id->port_num;
	return ibv_get_device_name(id->verbs->device);
}

static int rb_get_event(struct rdma_event_channel *ch, struct rb_event *out)
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
*/
import "C"

import (
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// EventType's values are librdmacm's: these fail to compile otherwise.
var (
	_ = [1]struct{}{}[int(EventAddrResolved)-C.RDMA_CM_EVENT_ADDR_RESOLVED]
	_ = [1]struct{}{}[int(EventConnectRequest)-C.RDMA_CM_EVENT_CONNECT_REQUEST]
	_ = [1]struct{}{}[int(EventRejected)-C.RDMA_CM_EVENT_REJECTED]
	_ = [1]struct{}{}[int(EventEstablished)-C.RDMA_CM_EVENT_ESTABLISHED]
	_ = [1]struct{}{}[int(EventDeviceRemoval)-C.RDMA_CM_EVENT_DEVICE_REMOVAL]
	_ = [1]struct{}{}[int(EventTimewaitExit)-C.RDMA_CM_EVENT_TIMEWAIT_EXIT]
)

func newChannelOps() (channelOps, error) {
	ch, err := C.rdma_create_event_channel()
	if ch == nil {
		return nil, errnoOr(err)
	}
	return &cChannel{p: ch}, nil
}

type cChannel struct {
	p *C.struct_rdma_event_channel
}

func (c *cChannel) fd() int { return int(c.p.fd) }

func (c *cChannel) destroy() { C.rdma_destroy_event_channel(c.p) }

func cPortSpace(ps PortSpace) C.int {
	switch ps {
	case PortSpaceUDP:
		return C.RDMA_PS_UDP
	case PortSpaceIB:
		return C.RDMA_PS_IB
	default:
		return C.RDMA_PS_TCP
	}
}

func (c *cChannel) createID(key uintptr, ps PortSpace) (idOps, error) {
	var id *C.struct_rdma_cm_id
	if r, err := C.rb_create_id(c.p, &id, C.uintptr_t(key), cPortSpace(ps)); r != 0 {
		return nil, errnoOr(err)
	}
	return &cID{p: id}, nil
}

func (c *cChannel) getEvent() (rawEvent, error) {
	var out C.struct_rb_event
	if r, err := C.rb_get_event(c.p, &out); r != 0 {
		return rawEvent{}, errnoOr(err)
	}
	raw := rawEvent{
		typ:       EventType(out._type),
		status:    int(out.status),
		key:       uintptr(out.key),
		listenKey: uintptr(out.listen_key),
	}
	if out.new_id != nil {
		raw.newID = &cID{p: out.new_id}
	}
	if n := int(out.priv_len); n > 0 {
		raw.priv = make([]byte, n)
		for i := range raw.priv {
			raw.priv[i] = byte(out.priv[i])
		}
	}
	ev := out.ev
	raw.ack = func() { C.rdma_ack_cm_event(ev) }
	return raw, nil
}

type cID struct {
	p *C.struct_rdma_cm_id
}

func (id *cID) setKey(key uintptr) { C.rb_set_key(id.p, C.uintptr_t(key)) }

func (id *cID) setOption(opt idOption, val int) error {
	name := C.int(C.RDMA_OPTION_ID_REUSEADDR)
	if opt == optAFOnly {
		name = C.RDMA_OPTION_ID_AFONLY
	}
	if r, err := C.rb_set_id_option(id.p, name, C.int(val)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) bind(ip netip.Addr, port uint16, scopeID uint32) error {
	a := rbAddr(ip, port, scopeID)
	if r, err := C.rb_bind(id.p, &a); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) listen(backlog int) error {
	if r, err := C.rdma_listen(id.p, C.int(backlog)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) localAddr() netip.AddrPort {
	var a C.struct_rb_addr
	C.rb_local_addr(id.p, &a)
	return goAddr(&a)
}

func (id *cID) device() (string, int) {
	var port C.int
	name := C.rb_device(id.p, &port)
	if name == nil {
		return "", 0
	}
	return C.GoString(name), int(port)
}

func (id *cID) destroy() error {
	if r, err := C.rdma_destroy_id(id.p); r != 0 {
		return errnoOr(err)
	}
	return nil
}

// rbAddr converts ap to the C form (the zero AddrPort to family 0).
func rbAddr(ip netip.Addr, port uint16, scope uint32) C.struct_rb_addr {
	var a C.struct_rb_addr
	if !ip.IsValid() {
		return a
	}
	if ip.Is4() {
		a.family = C.AF_INET
	} else {
		a.family = C.AF_INET6
	}
	b := ip.AsSlice()
	for i := range b {
		a.ip[i] = C.uint8_t(b[i])
	}
	a.port = C.uint16_t(port)
	a.scope_id = C.uint32_t(scope)
	return a
}

// goAddr converts the C form back.
func goAddr(a *C.struct_rb_addr) netip.AddrPort {
	var ip netip.Addr
	switch a.family {
	case C.AF_INET:
		ip = netip.AddrFrom4([4]byte{byte(a.ip[0]), byte(a.ip[1]), byte(a.ip[2]), byte(a.ip[3])})
	case C.AF_INET6:
		var b [16]byte
		for i := range b {
			b[i] = byte(a.ip[i])
		}
		ip = netip.AddrFrom16(b)
		if a.scope_id != 0 {
			ip = ip.WithZone(strconv.FormatUint(uint64(a.scope_id), 10))
		}
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, uint16(a.port))
}

func (id *cID) resolveAddr(src, dst addrArg, timeoutMs int) error {
	s := rbAddr(src.ip, src.port, src.scope)
	d := rbAddr(dst.ip, dst.port, dst.scope)
	if r, err := C.rb_resolve_addr(id.p, &s, &d, C.int(timeoutMs)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) resolveRoute(timeoutMs int) error {
	if r, err := C.rdma_resolve_route(id.p, C.int(timeoutMs)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) connect(p ConnParam) error {
	priv := C.CBytes(p.PrivateData) // malloc(0) for none: freed all the same
	defer C.free(priv)
	r, err := C.rb_connect(id.p, priv, C.int(len(p.PrivateData)), C.int(p.ResponderResources),
		C.int(p.InitiatorDepth), C.int(p.RetryCount), C.int(p.RNRRetryCount))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) accept(p ConnParam) error {
	priv := C.CBytes(p.PrivateData)
	defer C.free(priv)
	r, err := C.rb_accept(id.p, priv, C.int(len(p.PrivateData)), C.int(p.ResponderResources),
		C.int(p.InitiatorDepth), C.int(p.RetryCount), C.int(p.RNRRetryCount))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) reject(data []byte) error {
	priv := C.CBytes(data)
	defer C.free(priv)
	if r, err := C.rdma_reject(id.p, priv, C.uint8_t(len(data))); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) disconnect() error {
	if r, err := C.rdma_disconnect(id.p); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) migrate(to channelOps) error {
	ch, ok := to.(*cChannel)
	if !ok {
		return unix.EINVAL
	}
	if r, err := C.rdma_migrate_id(id.p, ch.p); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) peerAddr() netip.AddrPort {
	var a C.struct_rb_addr
	C.rb_peer_addr(id.p, &a)
	return goAddr(&a)
}
