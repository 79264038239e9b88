package qp

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/cgo/verbs"
	"github.com/rdmabind/rdmabind/rdma"
)

// verbsTransport is the transport over cgo/verbs: the verbs objects of one
// connection, freed in the order QP, CQs, MRs, region, PD (the link, the
// rdma_cm id and channel, or the TCP connection and the rendezvous' id and
// channel, comes after, in Conn.close). Its context is librdmacm's, of the
// connection's rdma_cm id (verbs.ContextOf), never closed here.
type verbsTransport struct {
	ctx      *verbs.Context
	pd       *verbs.PD
	scq, rcq *verbsCQ
	reg      *verbs.Region
	qp       *verbs.QP

	m    region
	base uintptr
	// segs are the registered parts of reg, in the order registered; a
	// new slice each time (work requests read it without a lock).
	segMu sync.Mutex
	segs  atomic.Pointer[[]verbsSeg]

	// The rendezvous' QP (openVerbsQP): its endpoint and port, for connect.
	rep rdma.Endpoint
	pa  verbs.PortAttr
}

// newVerbsTransport allocates everything but the QP, with memory for lay.
func newVerbsTransport(ctx *verbs.Context, lay layout) (*verbsTransport, error) {
	t := &verbsTransport{ctx: ctx}
	var err error
	fail := func(e error) (*verbsTransport, error) {
		t.close()
		return nil, e
	}
	if t.pd, err = ctx.AllocPD(); err != nil {
		return fail(err)
	}
	if t.reg, err = verbs.ReserveRegion(lay.size); err != nil {
		return fail(err)
	}
	t.base = t.reg.Addr(0)
	t.m = region{buf: t.reg.Bytes(), addr: uint64(t.base)}
	// One CQE per send buffer, credit write, goodbye and bulk write; one
	// per receive buffer.
	var cq *verbs.CQ
	if cq, err = ctx.NewCQ(lay.sendDepth()); err != nil {
		return fail(err)
	}
	t.scq = &verbsCQ{cq: cq}
	if cq, err = ctx.NewCQ(lay.nrecv + 1); err != nil {
		return fail(err)
	}
	t.rcq = &verbsCQ{cq: cq}
	return t, nil
}

func caps(lay layout) verbs.Caps {
	return verbs.Caps{SendDepth: lay.sendDepth(), RecvDepth: lay.nrecv, MaxInline: 64}
}

// openVerbsQP is the rendezvous' qpOpener. The device's context comes
// from an rdma_cm id of the connection's own, on an event channel of its
// own, bound to local (the address of the TCP connection) with port 0 (an
// ephemeral rdma_cm port, never the socket's): librdmacm counts the id as
// a user of the device, so it keeps the context open while the
// connection lives, and the id's DEVICE_REMOVAL tells the connection its
// device went (the returned link, a cmLink, closed after the transport).
// The port and GID index are those of the socket's endpoint (for a
// wildcard socket, of local); it allocates the memory and creates the QP,
// moved to INIT.
//
// Errors: those of endpointFor, of rdma_cm (ENODEV: no RDMA device serves
// local), ENODEV when the id's device is not the endpoint's, and of verbs.
func openVerbsQP(ep bindcore.Endpoint, local netip.Addr, lay layout) (_ rendezvousQP, _ link, err error) {
	rep, err := endpointFor(ep, local)
	if err != nil {
		return nil, nil, err
	}
	ch, err := rdmacm.NewEventChannel()
	if err != nil {
		return nil, nil, err
	}
	l := &cmLink{ch: ch}
	var t *verbsTransport
	defer func() {
		if err != nil {
			if t != nil {
				t.close()
			}
			l.close()
		}
	}()
	if l.id, err = ch.CreateID(rdmacm.PortSpaceTCP); err != nil {
		return nil, nil, err
	}
	if err = l.id.Bind(netip.AddrPortFrom(local, 0)); err != nil {
		return nil, nil, err
	}
	vctx, err := verbs.ContextOf(l.id)
	if err != nil {
		return nil, nil, err
	}
	if vctx.Name() != rep.Device {
		return nil, nil, fmt.Errorf("rendezvous: %v is on device %s, the endpoint's is %s: %w", local, vctx.Name(), rep.Device, unix.ENODEV)
	}
	l.device()
	pa, err := vctx.QueryPort(rep.Port)
	if err != nil {
		return nil, nil, err
	}
	if t, err = newVerbsTransport(vctx, lay); err != nil {
		return nil, nil, err
	}
	t.rep, t.pa = rep, pa
	if t.qp, err = t.pd.CreateQP(t.scq.cq, t.rcq.cq, caps(lay)); err != nil {
		return nil, nil, err
	}
	if err = t.qp.Init(rep.Port, verbs.AccessLocalWrite|verbs.AccessRemoteWrite); err != nil {
		return nil, nil, err
	}
	return t, l, nil
}

// endpointFor is the RDMA port and GID to use for a connection whose TCP
// side is local: the socket's own, or for a wildcard socket the one of
// the address the connection came in on.
func endpointFor(ep bindcore.Endpoint, local netip.Addr) (rdma.Endpoint, error) {
	if ep.GIDIndex >= 0 && ep.Device != "" {
		return ep.Endpoint, nil
	}
	eps, err := rdma.Resolve(local)
	if err != nil {
		return rdma.Endpoint{}, err
	}
	return eps[0], nil
}

func (t *verbsTransport) self() qpAddr {
	return qpAddr{qpn: t.qp.Num(), gid: netip.AddrFrom16(t.rep.GID.As16()), lid: t.pa.LID, mtu: uint8(t.pa.ActiveMTU)}
}

// connect moves the QP to RTR (GRH with the peer's GID and our GID index,
// the smaller MTU, min RNR timer 0.64 ms) and RTS (timeout 14, 7 retries,
// RNR retries forever).
func (t *verbsTransport) connect(psn uint32, peer hello) error {
	sgid := t.rep.GIDIndex
	if !t.pa.Ethernet && peer.lid != 0 {
		sgid = -1 // InfiniBand in one subnet: by LID, no GRH
	}
	err := t.qp.RTR(verbs.RTRAttr{
		Port: t.rep.Port, MTU: verbs.MTU(min(peer.mtu, uint8(t.pa.ActiveMTU))), DestQPN: peer.qpn, RQPSN: peer.psn,
		DGID: peer.gid, SGIDIndex: sgid, DLID: peer.lid, MinRNRTimer: 12,
	})
	if err != nil {
		return err
	}
	return t.qp.RTS(verbs.RTSAttr{SQPSN: psn, Timeout: 14, RetryCount: 7, RNRRetry: 7})
}

// verbsSeg is a registered part of the memory: [off, end) with its MR.
type verbsSeg struct {
	off, end int
	lkey     uint32
	mr       *verbs.MR
}

func (t *verbsTransport) register(off, n int, remote bool) (uint32, error) {
	access := verbs.AccessLocalWrite
	if remote {
		access |= verbs.AccessRemoteWrite
	}
	mr, err := t.pd.RegMRRange(t.reg, off, n, access)
	if err != nil {
		return 0, err
	}
	t.segMu.Lock()
	defer t.segMu.Unlock()
	var segs []verbsSeg
	if p := t.segs.Load(); p != nil {
		segs = append(segs, *p...)
	}
	segs = append(segs, verbsSeg{off: off, end: off + n, lkey: mr.LKey(), mr: mr})
	t.segs.Store(&segs)
	return mr.RKey(), nil
}

// lkey is the key of the registered part that holds [off, off+n); 0 (which
// the device refuses) when none does.
func (t *verbsTransport) lkey(off, n int) uint32 {
	if p := t.segs.Load(); p != nil {
		for _, s := range *p {
			if off >= s.off && off+n <= s.end {
				return s.lkey
			}
		}
	}
	return 0
}

func (t *verbsTransport) mem() region    { return t.m }
func (t *verbsTransport) sendCQ() cq     { return t.scq }
func (t *verbsTransport) recvCQ() cq     { return t.rcq }
func (t *verbsTransport) maxInline() int { return t.qp.MaxInline() }
func (t *verbsTransport) setError() error {
	return t.qp.Error()
}

var verbsOps = [...]verbs.Opcode{opSend: verbs.OpSend, opSendImm: verbs.OpSendImm, opWrite: verbs.OpWrite, opWriteImm: verbs.OpWriteImm}

func (t *verbsTransport) postSend(w sendWR) error {
	flags := verbs.SendSignaled
	if w.inline {
		flags |= verbs.SendInline
	}
	return t.qp.PostSend(verbs.SendWR{
		ID: w.id, Op: verbsOps[w.op], Flags: flags,
		Addr: t.base + uintptr(w.off), Len: uint32(w.n), LKey: t.lkey(w.off, w.n),
		Imm: w.imm, RemoteAddr: w.raddr, RKey: w.rkey,
	})
}

func (t *verbsTransport) postRecv(id uint64, off, n int) error {
	return t.qp.PostRecv(id, t.base+uintptr(off), uint32(n), t.lkey(off, n))
}

// close frees what there is, in order: QP, CQs, MRs, region, PD. Safe
// twice.
func (t *verbsTransport) close() error {
	var errs []error
	add := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if t.qp != nil {
		add("qp", t.qp.Close())
	}
	if t.scq != nil {
		add("send cq", t.scq.cq.Close())
	}
	if t.rcq != nil {
		add("recv cq", t.rcq.cq.Close())
	}
	if p := t.segs.Load(); p != nil {
		for _, s := range *p {
			add("mr", s.mr.Close())
		}
	}
	if t.reg != nil {
		add("region", t.reg.Close())
	}
	if t.pd != nil {
		add("pd", t.pd.Close())
	}
	return errors.Join(errs...)
}

// verbsCQ is a verbs.CQ as a cq: it polls into wcs (which the calls into C
// write, so it is not on the stack) and converts.
type verbsCQ struct {
	cq  *verbs.CQ
	wcs [32]verbs.WC
}

func (q *verbsCQ) conv(out []completion, n int, err error) (int, error) {
	for i, wc := range q.wcs[:n] {
		out[i] = completion{id: wc.ID, n: int(wc.ByteLen), imm: wc.Imm, hasImm: wc.HasImm(), err: wc.Err()}
	}
	return n, err
}

func (q *verbsCQ) buf(out []completion) []verbs.WC { return q.wcs[:min(len(out), len(q.wcs))] }

func (q *verbsCQ) poll(out []completion) (int, error) {
	n, err := q.cq.Poll(q.buf(out))
	return q.conv(out, n, err)
}

func (q *verbsCQ) pollSpin(out []completion, d time.Duration) (int, error) {
	n, err := q.cq.PollSpin(q.buf(out), d)
	return q.conv(out, n, err)
}

func (q *verbsCQ) pollArm(out []completion) (int, error) {
	n, err := q.cq.PollArm(q.buf(out))
	return q.conv(out, n, err)
}

func (q *verbsCQ) waitPoll(out []completion) (int, error) {
	n, err := q.cq.WaitPoll(q.buf(out))
	return q.conv(out, n, err)
}

func (q *verbsCQ) arm() error                    { return q.cq.Arm() }
func (q *verbsCQ) wait() error                   { return q.cq.Wait() }
func (q *verbsCQ) setDeadline(t time.Time) error { return q.cq.SetDeadline(t) }
