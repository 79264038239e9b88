//go:build cgo

package verbs

/*
#cgo LDFLAGS: -libverbs -lrdmacm
#include <stdlib.h>
// The C wrappers are in rbv.c, declared in rbv.h.
#include "rbv.h"
*/
import "C"

import (
	"net/netip"
	"unsafe"

	"github.com/rdmabind/rdmabind/cgo/internal/cmraw"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// WC's layout is struct rbv_wc's: this fails to compile otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(WC{})-C.sizeof_struct_rbv_wc]

// The enum values Go names are libibverbs': these fail to compile otherwise.
var (
	_ = [1]struct{}{}[int(OpSend)-C.IBV_WR_SEND]
	_ = [1]struct{}{}[int(OpSendImm)-C.IBV_WR_SEND_WITH_IMM]
	_ = [1]struct{}{}[int(OpWrite)-C.IBV_WR_RDMA_WRITE]
	_ = [1]struct{}{}[int(OpWriteImm)-C.IBV_WR_RDMA_WRITE_WITH_IMM]
	_ = [1]struct{}{}[int(AccessLocalWrite)-C.IBV_ACCESS_LOCAL_WRITE]
	_ = [1]struct{}{}[int(AccessRemoteWrite)-C.IBV_ACCESS_REMOTE_WRITE]
	_ = [1]struct{}{}[int(AccessRemoteRead)-C.IBV_ACCESS_REMOTE_READ]
	_ = [1]struct{}{}[int(SendSignaled)-C.IBV_SEND_SIGNALED]
	_ = [1]struct{}{}[int(SendInline)-C.IBV_SEND_INLINE]
)

// WCStatus, WCOpcode and WCFlags are enum ibv_wc_status, ibv_wc_opcode and
// ibv_wc_flags: these fail to compile otherwise.
var (
	_ = [1]struct{}{}[int(WCSuccess)-C.IBV_WC_SUCCESS]
	_ = [1]struct{}{}[int(WCLocLenErr)-C.IBV_WC_LOC_LEN_ERR]
	_ = [1]struct{}{}[int(WCLocQPOpErr)-C.IBV_WC_LOC_QP_OP_ERR]
	_ = [1]struct{}{}[int(WCLocEECOpErr)-C.IBV_WC_LOC_EEC_OP_ERR]
	_ = [1]struct{}{}[int(WCLocProtErr)-C.IBV_WC_LOC_PROT_ERR]
	_ = [1]struct{}{}[int(WCFlushErr)-C.IBV_WC_WR_FLUSH_ERR]
	_ = [1]struct{}{}[int(WCMWBindErr)-C.IBV_WC_MW_BIND_ERR]
	_ = [1]struct{}{}[int(WCBadRespErr)-C.IBV_WC_BAD_RESP_ERR]
	_ = [1]struct{}{}[int(WCLocAccessErr)-C.IBV_WC_LOC_ACCESS_ERR]
	_ = [1]struct{}{}[int(WCRemInvReqErr)-C.IBV_WC_REM_INV_REQ_ERR]
	_ = [1]struct{}{}[int(WCRemAccessErr)-C.IBV_WC_REM_ACCESS_ERR]
	_ = [1]struct{}{}[int(WCRemOpErr)-C.IBV_WC_REM_OP_ERR]
	_ = [1]struct{}{}[int(WCRetryExcErr)-C.IBV_WC_RETRY_EXC_ERR]
	_ = [1]struct{}{}[int(WCRNRRetryExcErr)-C.IBV_WC_RNR_RETRY_EXC_ERR]
	_ = [1]struct{}{}[int(WCLocRDDViolErr)-C.IBV_WC_LOC_RDD_VIOL_ERR]
	_ = [1]struct{}{}[int(WCRemInvRDReqErr)-C.IBV_WC_REM_INV_RD_REQ_ERR]
	_ = [1]struct{}{}[int(WCRemAbortErr)-C.IBV_WC_REM_ABORT_ERR]
	_ = [1]struct{}{}[int(WCInvEECNErr)-C.IBV_WC_INV_EECN_ERR]
	_ = [1]struct{}{}[int(WCInvEECStateErr)-C.IBV_WC_INV_EEC_STATE_ERR]
	_ = [1]struct{}{}[int(WCFatalErr)-C.IBV_WC_FATAL_ERR]
	_ = [1]struct{}{}[int(WCRespTimeoutErr)-C.IBV_WC_RESP_TIMEOUT_ERR]
	_ = [1]struct{}{}[int(WCGeneralErr)-C.IBV_WC_GENERAL_ERR]
	_ = [1]struct{}{}[int(WCTMErr)-C.IBV_WC_TM_ERR]
	_ = [1]struct{}{}[int(WCTMRndvIncomplete)-C.IBV_WC_TM_RNDV_INCOMPLETE]
	_ = [1]struct{}{}[len(wcStatusNames)-(C.IBV_WC_TM_RNDV_INCOMPLETE+1)]
	_ = [1]struct{}{}[int(WCSend)-C.IBV_WC_SEND]
	_ = [1]struct{}{}[int(WCRDMAWrite)-C.IBV_WC_RDMA_WRITE]
	_ = [1]struct{}{}[int(WCRDMARead)-C.IBV_WC_RDMA_READ]
	_ = [1]struct{}{}[int(WCCompSwap)-C.IBV_WC_COMP_SWAP]
	_ = [1]struct{}{}[int(WCFetchAdd)-C.IBV_WC_FETCH_ADD]
	_ = [1]struct{}{}[int(WCBindMW)-C.IBV_WC_BIND_MW]
	_ = [1]struct{}{}[int(WCLocalInv)-C.IBV_WC_LOCAL_INV]
	_ = [1]struct{}{}[int(WCRecv)-C.IBV_WC_RECV]
	_ = [1]struct{}{}[int(WCRecvRDMAImm)-C.IBV_WC_RECV_RDMA_WITH_IMM]
	_ = [1]struct{}{}[int(WCGRH)-C.IBV_WC_GRH]
	_ = [1]struct{}{}[int(WCWithImm)-C.IBV_WC_WITH_IMM]
	_ = [1]struct{}{}[int(WCIPCsumOK)-C.IBV_WC_IP_CSUM_OK]
	_ = [1]struct{}{}[int(WCWithInv)-C.IBV_WC_WITH_INV]
)

// cImpl is the C surface over libibverbs (and librdmacm's device list and
// rdma_create_qp). Handles are the C pointers.
type cImpl struct{}

func init() { impl = cImpl{} }

func p[T any](h handle) *T { return (*T)(h) }

func h[T any](x *T) handle { return handle(x) }

func (cImpl) ctxOfID(id *rdmacm.ID) (handle, string, int, error) {
	var c *C.struct_ibv_context
	var port C.int
	err := cmraw.With(id, func(cmid unsafe.Pointer) error {
		c = C.rbv_ctx_of_id((*C.struct_rdma_cm_id)(cmid), &port)
		return nil
	})
	if err != nil {
		return nil, "", 0, err
	}
	if c == nil {
		return nil, "", 0, errNoDevice
	}
	return h(c), C.GoString(C.rbv_ctx_name(c)), int(port), nil
}

func (cImpl) queryPort(ctx handle, port int) (PortAttr, error) {
	var mtu, state, lid, ll C.int
	if r, err := C.rbv_query_port(p[C.struct_ibv_context](ctx), C.int(port), &mtu, &state, &lid, &ll); r != 0 {
		return PortAttr{}, errnoOr(err)
	}
	return PortAttr{ActiveMTU: MTU(mtu), State: int(state), LID: uint16(lid), Ethernet: ll == C.IBV_LINK_LAYER_ETHERNET}, nil
}

func (cImpl) queryGID(ctx handle, port, index int) (netip.Addr, error) {
	var out [16]C.uint8_t
	if r, err := C.rbv_query_gid(p[C.struct_ibv_context](ctx), C.int(port), C.int(index), &out[0]); r != 0 {
		return netip.Addr{}, errnoOr(err)
	}
	var g [16]byte
	for i := range g {
		g[i] = byte(out[i])
	}
	return netip.AddrFrom16(g), nil
}

func (cImpl) allocPD(ctx handle) (handle, error) {
	pd, err := C.ibv_alloc_pd(p[C.struct_ibv_context](ctx))
	if pd == nil {
		return nil, errnoOr(err)
	}
	return h(pd), nil
}

func (cImpl) deallocPD(pd handle) error {
	if r, err := C.rbv_dealloc_pd(p[C.struct_ibv_pd](pd)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) regMR(pd handle, buf []byte, access Access) (handle, uint32, uint32, error) {
	var lkey, rkey C.uint32_t
	// buf is mmap'd memory (Region): not the Go heap.
	addr := C.uintptr_t(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	mr, err := C.rbv_reg_mr(p[C.struct_ibv_pd](pd), addr, C.size_t(len(buf)), C.int(access), &lkey, &rkey)
	if mr == nil {
		return nil, 0, 0, errnoOr(err)
	}
	return h(mr), uint32(lkey), uint32(rkey), nil
}

func (cImpl) deregMR(mr handle) error {
	if r, err := C.rbv_dereg_mr(p[C.struct_ibv_mr](mr)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) createCompChannel(ctx handle) (handle, int, error) {
	ch, err := C.ibv_create_comp_channel(p[C.struct_ibv_context](ctx))
	if ch == nil {
		return nil, -1, errnoOr(err)
	}
	return h(ch), int(C.rbv_comp_fd(ch)), nil
}

func (cImpl) destroyCompChannel(ch handle) error {
	if r, err := C.rbv_destroy_comp_channel(p[C.struct_ibv_comp_channel](ch)); r != 0 {
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
	if r, err := C.rbv_destroy_cq(p[C.struct_ibv_cq](cq)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) reqNotify(cq handle) error {
	if r, err := C.rbv_req_notify(p[C.struct_ibv_cq](cq)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) getCQEvent(ch handle) error {
	if r, err := C.rbv_get_cq_event(p[C.struct_ibv_comp_channel](ch)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) poll(cq handle, out []WC) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	// out holds no Go pointers: C may write into it for the call.
	n := C.rbv_poll(p[C.struct_ibv_cq](cq), (*C.struct_rbv_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
	if n < 0 {
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) pollSpin(cq handle, out []WC, ns int64) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	n := C.rbv_poll_spin(p[C.struct_ibv_cq](cq), (*C.struct_rbv_wc)(unsafe.Pointer(&out[0])), C.int(len(out)), C.int64_t(ns))
	if n < 0 {
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) pollArm(cq handle, out []WC) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	n, err := C.rbv_poll_arm(p[C.struct_ibv_cq](cq), (*C.struct_rbv_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
	switch {
	case n == -2:
		return 0, errnoOr(err)
	case n < 0:
		return 0, errPoll
	}
	return int(n), nil
}

func (cImpl) eventPoll(ch, cq handle, out []WC) (int, error) {
	n, err := C.rbv_event_poll(p[C.struct_ibv_comp_channel](ch), p[C.struct_ibv_cq](cq), (*C.struct_rbv_wc)(unsafe.Pointer(&out[0])), C.int(len(out)))
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
	qp, err := C.rbv_create_qp(p[C.struct_ibv_pd](pd), p[C.struct_ibv_cq](scq), p[C.struct_ibv_cq](rcq),
		C.int(c.SendDepth), C.int(c.RecvDepth), C.int(c.MaxInline), &qpn, &inl)
	if qp == nil {
		return nil, 0, 0, errnoOr(err)
	}
	return h(qp), uint32(qpn), int(inl), nil
}

func (cImpl) createQPOnID(id *rdmacm.ID, pd, scq, rcq handle, c Caps) (handle, uint32, int, error) {
	var qp *C.struct_ibv_qp
	var qpn C.uint32_t
	var inl C.int
	err := cmraw.With(id, func(cmid unsafe.Pointer) error {
		var err error
		qp, err = C.rbv_create_qp_on_id((*C.struct_rdma_cm_id)(cmid), p[C.struct_ibv_pd](pd),
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

func (cImpl) destroyQP(qp handle, id *rdmacm.ID) error {
	if id != nil {
		err := cmraw.With(id, func(cmid unsafe.Pointer) error {
			if r, err := C.rbv_destroy_qp_on_id((*C.struct_rdma_cm_id)(cmid), p[C.struct_ibv_qp](qp)); r != 0 {
				return errnoOr(err)
			}
			return nil
		})
		if err == nil {
			return nil
		}
		// The id is gone already: its QP is still ours to destroy.
	}
	if r, err := C.rbv_destroy_qp(p[C.struct_ibv_qp](qp)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toInit(qp handle, port int, access Access) error {
	if r, err := C.rbv_to_init(p[C.struct_ibv_qp](qp), C.int(port), C.int(access)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toRTR(qp handle, a RTRAttr) error {
	var gid [16]C.uint8_t
	for i, b := range a.DGID.As16() {
		gid[i] = C.uint8_t(b)
	}
	r, err := C.rbv_to_rtr(p[C.struct_ibv_qp](qp), C.int(a.Port), C.int(a.MTU), C.uint32_t(a.DestQPN),
		C.uint32_t(a.RQPSN), &gid[0], C.int(a.SGIDIndex), C.int(a.DLID), C.int(a.MinRNRTimer))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toRTS(qp handle, a RTSAttr) error {
	if r, err := C.rbv_to_rts(p[C.struct_ibv_qp](qp), C.uint32_t(a.SQPSN), C.int(a.Timeout), C.int(a.RetryCount), C.int(a.RNRRetry)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) toErr(qp handle) error {
	if r, err := C.rbv_to_err(p[C.struct_ibv_qp](qp)); r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) postSend(qp handle, w SendWR) error {
	r, err := C.rbv_post_send(p[C.struct_ibv_qp](qp), C.uint64_t(w.ID), C.int(w.Op), C.uintptr_t(w.Addr),
		C.uint32_t(w.Len), C.uint32_t(w.LKey), C.uint32_t(w.Imm), C.uint64_t(w.RemoteAddr),
		C.uint32_t(w.RKey), C.int(w.Flags))
	if r != 0 {
		return errnoOr(err)
	}
	return nil
}

func (cImpl) postRecv(qp handle, id uint64, addr uintptr, length, lkey uint32) error {
	if r, err := C.rbv_post_recv(p[C.struct_ibv_qp](qp), C.uint64_t(id), C.uintptr_t(addr), C.uint32_t(length), C.uint32_t(lkey)); r != 0 {
		return errnoOr(err)
	}
	return nil
}
