package qp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/cgo/verbs"
	"github.com/rdmabind/rdmabind/rdma"
)

// The TCP rendezvous: over a kernel TCP connection between the two
// sockets' own addresses and ports, each side sends its hello (QP number,
// PSN, GID, MTU, buffers, credit word), moves its QP to RTR and RTS with
// the other's, and sends one byte "ready"; a side posts nothing before it
// has the other's "ready" (so the other is at RTR at least). The TCP
// connection stays open: its end (the peer process died, or closed) breaks
// the connection.

const readyByte = 'R'

// dialRendezvous connects from the socket's address and port to remote.
func dialRendezvous(ctx context.Context, ep bindcore.Endpoint, remote netip.AddrPort, o Options) (*Conn, error) {
	tc, err := dialTCPFrom(ctx, ep.Local, remote)
	if err != nil {
		return nil, err
	}
	return rendezvous(ctx, ep, tc, o)
}

// acceptRendezvous finishes a TCP connection the listening socket accepted.
func acceptRendezvous(ctx context.Context, ep bindcore.Endpoint, tc net.Conn, o Options) (*Conn, error) {
	return rendezvous(ctx, ep, tc, o)
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

func rendezvous(ctx context.Context, ep bindcore.Endpoint, tc net.Conn, o Options) (c *Conn, err error) {
	la := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	ra := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
	c = &Conn{mode: ModeTCP, local: ep.Local, remote: netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port()), opts: o, tcp: tc}
	defer func() {
		if err != nil {
			c.freeSetup()
			c = nil
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		tc.SetDeadline(d)
	} else {
		tc.SetDeadline(time.Now().Add(o.SetupTimeout))
	}
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rep, err := endpointFor(ep, la.Addr().Unmap())
	if err != nil {
		return c, err
	}
	vctx, err := verbs.OpenDevice(rep.Device)
	if err != nil {
		return c, err
	}
	pa, err := vctx.QueryPort(rep.Port)
	if err != nil {
		return c, err
	}
	if c.res, err = newResources(vctx, o); err != nil {
		return c, err
	}
	if c.res.qp, err = c.res.pd.CreateQP(c.res.scq, c.res.rcq, c.res.caps()); err != nil {
		return c, err
	}
	if err = c.res.qp.Init(rep.Port, verbs.AccessLocalWrite|verbs.AccessRemoteWrite); err != nil {
		return c, err
	}
	if err = c.res.postRecvs(); err != nil {
		return c, err
	}
	var psnb [4]byte
	rand.Read(psnb[:])
	my := c.hello(ep.Local.Port())
	my.qpn = c.res.qp.Num()
	my.psn = binary.BigEndian.Uint32(psnb[:]) & 0xffffff
	my.gid = rep.GID
	my.lid = pa.LID
	my.mtu = uint8(pa.ActiveMTU)
	if _, err = tc.Write(my.marshal()); err != nil {
		return c, fmt.Errorf("rendezvous: send hello: %w", err)
	}
	b := make([]byte, helloLen)
	if _, err = io.ReadFull(tc, b); err != nil {
		return c, fmt.Errorf("rendezvous: read hello: %w", err)
	}
	peer, err := parseHello(b)
	if err != nil {
		return c, err
	}
	c.remote = netip.AddrPortFrom(c.remote.Addr(), peer.port)
	sgid := rep.GIDIndex
	if !pa.Ethernet && peer.lid != 0 {
		sgid = -1 // InfiniBand in one subnet: by LID, no GRH
	}
	err = c.res.qp.RTR(verbs.RTRAttr{
		Port: rep.Port, MTU: verbs.MTU(min(peer.mtu, my.mtu)), DestQPN: peer.qpn, RQPSN: peer.psn,
		DGID: peer.gid, SGIDIndex: sgid, DLID: peer.lid, MinRNRTimer: 12,
	})
	if err != nil {
		return c, err
	}
	if err = c.res.qp.RTS(verbs.RTSAttr{SQPSN: my.psn, Timeout: 14, RetryCount: 7, RNRRetry: 7}); err != nil {
		return c, err
	}
	if _, err = tc.Write([]byte{readyByte}); err != nil {
		return c, fmt.Errorf("rendezvous: send ready: %w", err)
	}
	if _, err = io.ReadFull(tc, b[:1]); err != nil || b[0] != readyByte {
		if err == nil {
			err = fmt.Errorf("rendezvous: ready byte %#x: %w", b[0], ErrProtocol)
		}
		return c, fmt.Errorf("rendezvous: read ready: %w", err)
	}
	tc.SetDeadline(time.Time{})
	c.init(peer)
	go c.monitorTCP()
	return c, nil
}

// monitorTCP waits for the end of the rendezvous connection: the peer's
// Close (after its goodbye over the QP) or its death.
func (c *Conn) monitorTCP() {
	defer close(c.monDone)
	var b [1]byte
	_, err := c.tcp.Read(b[:])
	if c.closing.Load() || errors.Is(err, net.ErrClosed) {
		return
	}
	if err == nil || err == io.EOF || errors.Is(err, unix.ECONNRESET) {
		c.fail(fmt.Errorf("rendezvous connection ended: %w", unix.ECONNRESET))
		return
	}
	c.fail(fmt.Errorf("rendezvous connection ended: %w (%w)", err, unix.ECONNRESET))
}
