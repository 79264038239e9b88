//go:build cgo

package rdmacm

/*
#cgo LDFLAGS: -lrdmacm -libverbs
#include <stdlib.h>
// The C wrappers are in rbcm.c, declared in rbcm.h.
#include "rbcm.h"
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

func (id *cID) contextFDs() (ctxFDs, bool) {
	var node [64]C.char
	var cmd, async C.int
	if C.rbcm_device_fds(id.p, &node[0], C.int(len(node)), &cmd, &async) != 0 {
		return ctxFDs{}, false
	}
	name, _ := id.device()
	var st unix.Stat_t
	if unix.Fstat(int(cmd), &st) != nil {
		return ctxFDs{}, false
	}
	return ctxFDs{dev: name, cmd: int(cmd), async: int(async), ino: st.Ino}, true
}

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
	if r, err := C.rbcm_create_id(c.p, &id, C.uintptr_t(key), cPortSpace(ps)); r != 0 {
		return nil, errnoOr(err)
	}
	return &cID{p: id}, nil
}

func (c *cChannel) getEvent() (rawEvent, error) {
	var out C.struct_rbcm_event
	if r, err := C.rbcm_get_event(c.p, &out); r != 0 {
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

func (id *cID) setKey(key uintptr) { C.rbcm_set_key(id.p, C.uintptr_t(key)) }

func (id *cID) setOption(opt idOption, val int) error {
	name := C.int(C.RDMA_OPTION_ID_REUSEADDR)
	if opt == optAFOnly {
		name = C.RDMA_OPTION_ID_AFONLY
	}
	if r, err := C.rbcm_set_id_option(id.p, name, C.int(val)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) bind(ip netip.Addr, port uint16, scopeID uint32) error {
	a := rbAddr(ip, port, scopeID)
	if r, err := C.rbcm_bind(id.p, &a); r != 0 {
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
	var a C.struct_rbcm_addr
	C.rbcm_local_addr(id.p, &a)
	return goAddr(&a)
}

func (id *cID) device() (string, int) {
	var port C.int
	name := C.rbcm_device(id.p, &port)
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
func rbAddr(ip netip.Addr, port uint16, scope uint32) C.struct_rbcm_addr {
	var a C.struct_rbcm_addr
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
func goAddr(a *C.struct_rbcm_addr) netip.AddrPort {
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
	if r, err := C.rbcm_resolve_addr(id.p, &s, &d, C.int(timeoutMs)); r != 0 {
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
	r, err := C.rbcm_connect(id.p, priv, C.int(len(p.PrivateData)), C.int(p.ResponderResources),
		C.int(p.InitiatorDepth), C.int(p.RetryCount), C.int(p.RNRRetryCount))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (id *cID) accept(p ConnParam) error {
	priv := C.CBytes(p.PrivateData)
	defer C.free(priv)
	r, err := C.rbcm_accept(id.p, priv, C.int(len(p.PrivateData)), C.int(p.ResponderResources),
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
	var a C.struct_rbcm_addr
	C.rbcm_peer_addr(id.p, &a)
	return goAddr(&a)
}
