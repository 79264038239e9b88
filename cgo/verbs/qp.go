package verbs

import (
	"fmt"
	"sync"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// QP is a reliable connected queue pair. It keeps its PD, its CQs and, when
// created on an rdma_cm id, that id alive; Close destroys it first of all
// (before the CQs, MRs and PD it uses, and before the id).
type QP struct {
	pd       *PD
	scq, rcq *CQ
	id       *rdmacm.ID // the id of CreateQPOnID, nil otherwise

	mu     sync.RWMutex
	h      handle
	num    uint32
	inline int
}

// CreateQP creates an RC QP (ibv_create_qp) in the RESET state: move it
// to INIT, RTR and RTS yourself (Init, RTR, RTS), with what the peer sent
// over another channel, as perftest does without -R.
//
// Errors: ErrClosed for a closed PD or CQ, the errno of ibv_create_qp
// (EINVAL for caps the device does not have, ENOMEM).
func (pd *PD) CreateQP(send, recv *CQ, caps Caps) (*QP, error) {
	h, err := pd.handle("ibv_create_qp")
	if err != nil {
		return nil, err
	}
	s, r := send.handle(), recv.handle()
	if s == nil || r == nil {
		return nil, fmt.Errorf("ibv_create_qp: cq: %w", ErrClosed)
	}
	qh, num, inl, err := impl.createQP(h, s, r, caps)
	if err != nil {
		return nil, fmt.Errorf("ibv_create_qp: %w", err)
	}
	qp := &QP{pd: pd, scq: send, rcq: recv, h: qh, num: num, inline: inl}
	pd.adopt(qp)
	return qp, nil
}

// CreateQPOnID creates an RC QP for an rdma_cm id (rdma_create_qp), whose
// device must be the PD's: librdmacm moves it through INIT, RTR and RTS as
// the id connects or accepts.
//
// Errors: as CreateQP, and rdmacm.ErrClosed for a closed (or nil) id.
func (pd *PD) CreateQPOnID(id *rdmacm.ID, send, recv *CQ, caps Caps) (*QP, error) {
	h, err := pd.handle("rdma_create_qp")
	if err != nil {
		return nil, err
	}
	s, r := send.handle(), recv.handle()
	if s == nil || r == nil {
		return nil, fmt.Errorf("rdma_create_qp: cq: %w", ErrClosed)
	}
	qh, num, inl, err := impl.createQPOnID(id, h, s, r, caps)
	if err != nil {
		return nil, fmt.Errorf("rdma_create_qp: %w", err)
	}
	qp := &QP{pd: pd, scq: send, rcq: recv, id: id, h: qh, num: num, inline: inl}
	pd.adopt(qp)
	return qp, nil
}

// Num is the QP number.
func (qp *QP) Num() uint32 { return qp.num }

// MaxInline is the inline data size the QP got.
func (qp *QP) MaxInline() int { return qp.inline }

func (qp *QP) do(op string, fn func(h handle) error) error {
	qp.mu.RLock()
	defer qp.mu.RUnlock()
	if qp.h == nil {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	if err := fn(qp.h); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// Init moves the QP to INIT on port with the remote access it grants.
//
// Errors: the errno of ibv_modify_qp, ErrClosed.
func (qp *QP) Init(port int, access Access) error {
	return qp.do("ibv_modify_qp INIT", func(h handle) error { return impl.toInit(h, port, access) })
}

// RTR moves the QP to RTR.
//
// Errors: the errno of ibv_modify_qp (EINVAL for a bad attribute), ErrClosed.
func (qp *QP) RTR(a RTRAttr) error {
	return qp.do("ibv_modify_qp RTR", func(h handle) error { return impl.toRTR(h, a) })
}

// RTS moves the QP to RTS.
//
// Errors: the errno of ibv_modify_qp, ErrClosed.
func (qp *QP) RTS(a RTSAttr) error {
	return qp.do("ibv_modify_qp RTS", func(h handle) error { return impl.toRTS(h, a) })
}

// Error moves the QP to the error state: its outstanding work requests
// complete with WCFlushErr.
//
// Errors: the errno of ibv_modify_qp, ErrClosed.
func (qp *QP) Error() error {
	return qp.do("ibv_modify_qp ERR", func(h handle) error { return impl.toErr(h) })
}

// PostSend posts one send work request (ibv_post_send).
//
// Errors: ENOMEM when the send queue is full, EINVAL, ErrClosed.
func (qp *QP) PostSend(w SendWR) error {
	qp.mu.RLock()
	defer qp.mu.RUnlock()
	if qp.h == nil {
		return fmt.Errorf("ibv_post_send: %w", ErrClosed)
	}
	if err := impl.postSend(qp.h, w); err != nil {
		return fmt.Errorf("ibv_post_send: %w", err)
	}
	return nil
}

// PostRecv posts one receive work request for length bytes at addr
// (ibv_post_recv).
//
// Errors: ENOMEM when the receive queue is full, EINVAL, ErrClosed.
func (qp *QP) PostRecv(id uint64, addr uintptr, length, lkey uint32) error {
	qp.mu.RLock()
	defer qp.mu.RUnlock()
	if qp.h == nil {
		return fmt.Errorf("ibv_post_recv: %w", ErrClosed)
	}
	if err := impl.postRecv(qp.h, id, addr, length, lkey); err != nil {
		return fmt.Errorf("ibv_post_recv: %w", err)
	}
	return nil
}

// Close destroys the QP (rdma_destroy_qp for one made on an id,
// ibv_destroy_qp otherwise). Safe to call more than once.
//
// Errors: the errno of ibv_destroy_qp.
func (qp *QP) Close() error {
	qp.mu.Lock()
	h := qp.h
	qp.h = nil
	qp.mu.Unlock()
	if h == nil {
		return nil
	}
	if err := impl.destroyQP(h, qp.id); err != nil {
		return fmt.Errorf("destroy qp %d: %w", qp.num, err)
	}
	return nil
}
