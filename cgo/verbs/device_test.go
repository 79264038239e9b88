package verbs

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"golang.org/x/sys/unix"
)

// loopPair is two RC QPs of one device connected to each other, the way
// the TCP rendezvous connects two hosts (QPN, GID and PSN exchanged, then
// INIT, RTR, RTS), over one port of the device: the RoCE or IB path with
// no rdma_cm and no peer.
type loopPair struct {
	pd        *PD
	cqA, cqB  *CQ
	qpA, qpB  *QP
	reg       *Region
	mr        *MR
	closeList []func() error
}

func (p *loopPair) close(t *testing.T) {
	for i := len(p.closeList) - 1; i >= 0; i-- {
		if err := p.closeList[i](); err != nil {
			t.Errorf("close: %v", err)
		}
	}
}

// newLoopPair connects two QPs of rxe0 (or RDMABIND_VERBS_DEVICE) port 1.
func newLoopPair(t *testing.T) *loopPair {
	t.Helper()
	testutil.SkipUnlessRDMA(t)
	ctx, closeID, err := deviceContext()
	if err != nil {
		t.Fatalf("context of %s: %v", deviceName(), err)
	}
	const port = 1
	pa, err := ctx.QueryPort(port)
	if err != nil {
		closeID()
		t.Fatalf("QueryPort: %v", err)
	}
	if pa.State != 4 {
		closeID()
		t.Fatalf("%s port %d: state %d, want ACTIVE (4)", ctx.Name(), port, pa.State)
	}
	p := &loopPair{closeList: []func() error{closeID}} // closed last
	must := func(c interface{ Close() error }, err error, what string) {
		t.Helper()
		if err != nil {
			p.close(t)
			t.Fatalf("%s: %v", what, err)
		}
		p.closeList = append(p.closeList, c.Close)
	}
	p.pd, err = ctx.AllocPD()
	must(p.pd, err, "AllocPD")
	p.cqA, err = ctx.NewCQ(16)
	must(p.cqA, err, "NewCQ A")
	p.cqB, err = ctx.NewCQ(16)
	must(p.cqB, err, "NewCQ B")
	p.reg, err = NewRegion(1 << 20)
	must(p.reg, err, "NewRegion")
	access := AccessLocalWrite | AccessRemoteWrite
	p.mr, err = p.pd.RegMR(p.reg, access)
	must(p.mr, err, "RegMR")
	caps := Caps{SendDepth: 8, RecvDepth: 8}
	p.qpA, err = p.pd.CreateQP(p.cqA, p.cqA, caps)
	must(p.qpA, err, "CreateQP A")
	p.qpB, err = p.pd.CreateQP(p.cqB, p.cqB, caps)
	must(p.qpB, err, "CreateQP B")

	// The GID: on RoCE the port's IPv4-mapped RoCE v2 entry (index 1 in
	// the SoftRoCE guest), on InfiniBand no GRH (by LID).
	sgid, gid := -1, netip.Addr{}
	if pa.Ethernet {
		sgid = 1
		if gid, err = ctx.QueryGID(port, sgid); err != nil {
			p.close(t)
			t.Fatalf("QueryGID: %v", err)
		}
	}
	const psnA, psnB = 0x1234, 0x4321
	for _, s := range []struct {
		qp, peer   *QP
		own, peer2 uint32
	}{{p.qpA, p.qpB, psnA, psnB}, {p.qpB, p.qpA, psnB, psnA}} {
		if err := s.qp.Init(port, access); err != nil {
			p.close(t)
			t.Fatalf("Init: %v", err)
		}
		rtr := RTRAttr{Port: port, MTU: pa.ActiveMTU, DestQPN: s.peer.Num(), RQPSN: s.peer2,
			DGID: gid, SGIDIndex: sgid, DLID: pa.LID, MinRNRTimer: 12}
		if err := s.qp.RTR(rtr); err != nil {
			p.close(t)
			t.Fatalf("RTR: %v", err)
		}
		if err := s.qp.RTS(RTSAttr{SQPSN: s.own, Timeout: 14, RetryCount: 7, RNRRetry: 7}); err != nil {
			p.close(t)
			t.Fatalf("RTS: %v", err)
		}
	}
	return p
}

func deviceName() string {
	if d := os.Getenv("RDMABIND_VERBS_DEVICE"); d != "" {
		return d
	}
	return "rxe0"
}

// deviceContext is the context of the device under test (deviceName), as
// qp's rendezvous takes it: from an rdma_cm id of its own, on a channel of
// its own, bound to an address the device serves with port 0. closeID
// destroys the id and the channel; call it after everything made on the
// context is closed.
func deviceContext() (ctx *Context, closeID func() error, err error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, nil, err
	}
	for _, a := range addrs {
		pfx, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(pfx.IP)
		if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			continue
		}
		ch, err := rdmacm.NewEventChannel()
		if err != nil {
			return nil, nil, err
		}
		closeID = ch.Close
		id, err := ch.CreateID(rdmacm.PortSpaceTCP)
		if err == nil {
			closeID = func() error { return errors.Join(id.Close(), ch.Close()) }
			err = id.Bind(netip.AddrPortFrom(ip.Unmap(), 0))
		}
		if err == nil && id.DeviceName() == deviceName() {
			if ctx, err = ContextOf(id); err == nil {
				return ctx, closeID, nil
			}
		}
		closeID()
	}
	return nil, nil, fmt.Errorf("no address of this host is served by %s: %w", deviceName(), unix.ENODEV)
}

// pollOne polls cq until one completion arrives, waiting on the completion
// channel (the netpoller) between polls.
func pollOne(t *testing.T, cq *CQ) WC {
	t.Helper()
	wcs := make([]WC, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := cq.PollArm(wcs)
		if err != nil {
			t.Fatalf("PollArm: %v", err)
		}
		if n == 1 {
			return wcs[0]
		}
		if err := cq.SetDeadline(deadline); err != nil {
			t.Fatalf("SetDeadline: %v", err)
		}
		if err := cq.Wait(); err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
}

// TestDeviceLoopback moves data between two connected QPs of one device:
// a SEND into a posted receive and an RDMA WRITE with immediate, checking
// the bytes, the completions and that every object closes (twice) and
// leaves no fd behind.
func TestDeviceLoopback(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	// Warm up before counting fds: librdmacm opens each device once per
	// process and keeps it while the device lives, and the first CQ puts
	// the runtime's netpoller up (its epoll fd and eventfd stay for the
	// process's life).
	ctx, closeID, err := deviceContext()
	if err != nil {
		t.Skipf("context of %s: %v", deviceName(), err)
	}
	cq, err := ctx.NewCQ(1)
	if err != nil {
		closeID()
		t.Fatalf("NewCQ: %v", err)
	}
	cq.Close()
	closeID()
	before := testutil.FDCount(t)
	p := newLoopPair(t)
	buf := p.reg.Bytes()
	const n = 4096
	src, dst := 0, 64<<10
	for i := range n {
		buf[src+i] = byte(i*7 + 1)
	}

	// SEND from A into B's receive.
	if err := p.qpB.PostRecv(7, p.reg.Addr(dst), n, p.mr.LKey()); err != nil {
		t.Fatalf("PostRecv: %v", err)
	}
	if err := p.qpA.PostSend(SendWR{ID: 8, Op: OpSend, Flags: SendSignaled, Addr: p.reg.Addr(src), Len: n, LKey: p.mr.LKey()}); err != nil {
		t.Fatalf("PostSend: %v", err)
	}
	if wc := pollOne(t, p.cqA); wc.Err() != nil || wc.ID != 8 {
		t.Fatalf("send completion %+v: %v", wc, wc.Err())
	}
	wc := pollOne(t, p.cqB)
	if wc.Err() != nil || wc.ID != 7 || wc.ByteLen != n || wc.Opcode&WCRecv == 0 {
		t.Fatalf("recv completion %+v: %v", wc, wc.Err())
	}
	if !bytes.Equal(buf[dst:dst+n], buf[src:src+n]) {
		t.Fatal("received bytes differ from those sent")
	}

	// RDMA WRITE with immediate from B into A's region, at another offset.
	wdst := 256 << 10
	for i := range n {
		buf[dst+i] = byte(i*13 + 5)
	}
	if err := p.qpA.PostRecv(9, 0, 0, p.mr.LKey()); err != nil {
		t.Fatalf("PostRecv (for the immediate): %v", err)
	}
	err = p.qpB.PostSend(SendWR{ID: 10, Op: OpWriteImm, Flags: SendSignaled, Addr: p.reg.Addr(dst), Len: n,
		LKey: p.mr.LKey(), Imm: 0xfeed, RemoteAddr: uint64(p.reg.Addr(wdst)), RKey: p.mr.RKey()})
	if err != nil {
		t.Fatalf("PostSend write: %v", err)
	}
	if wc := pollOne(t, p.cqB); wc.Err() != nil || wc.ID != 10 {
		t.Fatalf("write completion %+v: %v", wc, wc.Err())
	}
	wc = pollOne(t, p.cqA)
	if wc.Err() != nil || wc.ID != 9 || !wc.HasImm() || wc.Imm != 0xfeed || wc.ByteLen != n {
		t.Fatalf("write-with-immediate completion %+v: %v", wc, wc.Err())
	}
	if !bytes.Equal(buf[wdst:wdst+n], buf[dst:dst+n]) {
		t.Fatal("written bytes differ from the source")
	}

	// A QP in error flushes what is posted.
	if err := p.qpB.PostRecv(11, p.reg.Addr(dst), n, p.mr.LKey()); err != nil {
		t.Fatalf("PostRecv: %v", err)
	}
	if err := p.qpB.Error(); err != nil {
		t.Fatalf("QP to ERR: %v", err)
	}
	if wc := pollOne(t, p.cqB); wc.ID != 11 || !errors.Is(wc.Err(), unix.ECANCELED) {
		t.Fatalf("flushed receive %+v: %v, want a flush error matching ECANCELED", wc, wc.Err())
	}

	p.close(t)
	p.close(t) // Close twice: nil, nothing freed twice
	if after := testutil.FDCount(t); after != before {
		t.Errorf("fds: %d before, %d after Close", before, after)
	}
}
