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
)

// The TCP rendezvous: over a kernel TCP connection between the two
// sockets' own addresses and ports, each side sends its hello (QP number,
// PSN, GID, MTU, buffers, credit word), moves its QP to RTR and RTS with
// the other's, and sends one byte "ready"; a side posts nothing before it
// has the other's "ready" (so the other is at RTR at least). The TCP
// connection stays open: its end (the peer process died, or closed) breaks
// the connection.
//
// The accepting side reads the dialer's hello before it opens a QP (the
// dialer sends its hello first, then reads): a connection that sends
// nothing, a truncated or malformed hello, costs the listener a goroutine
// and a socket until the setup's deadline or until newer setups push it
// out (Options.MaxSetups), never a QP or registered memory.

const readyByte = 'R'

// rendezvousQP is the transport of a connection the rendezvous sets up: its
// QP is in INIT, with nothing posted, until connect.
type rendezvousQP interface {
	transport
	// self is the QP's half of the hello: QP number, GID, LID, MTU.
	self() qpAddr
	// connect moves the QP to RTR and RTS towards the peer (its hello),
	// sending from our first packet number psn.
	connect(psn uint32, peer hello) error
}

// qpAddr is how the peer reaches a QP.
type qpAddr struct {
	qpn uint32
	gid netip.Addr // 16-byte form
	lid uint16
	mtu uint8 // enum ibv_mtu
}

// qpOpener opens a rendezvousQP with memory for lay, on the RDMA port of
// the socket's endpoint ep (for a wildcard socket, the one serving local,
// the address the TCP connection came in on), and the link its device
// hangs off (openVerbsQP: an rdma_cm id of its own bound to local, on a
// channel of its own, whose DEVICE_REMOVAL says the device went; nil in
// some fakes), which the connection closes after the transport.
type qpOpener func(ep bindcore.Endpoint, local netip.Addr, lay layout) (rendezvousQP, link, error)

// dialRendezvous connects from the socket's address and port to remote.
func dialRendezvous(ctx context.Context, ep bindcore.Endpoint, remote netip.AddrPort, o Options, open qpOpener) (*Conn, error) {
	tc, err := dialTCPFrom(ctx, ep.Local, remote)
	if err != nil {
		return nil, err
	}
	return rendezvous(ctx, ep, tc, o, open, false)
}

// acceptRendezvous finishes a TCP connection the listening socket accepted.
func acceptRendezvous(ctx context.Context, ep bindcore.Endpoint, tc net.Conn, o Options, open qpOpener) (*Conn, error) {
	return rendezvous(ctx, ep, tc, o, open, true)
}

// readHello reads the peer's hello from tc into b (helloLen bytes).
func readHello(tc net.Conn, b []byte) (hello, error) {
	if _, err := io.ReadFull(tc, b); err != nil {
		return hello{}, fmt.Errorf("rendezvous: read hello: %w", err)
	}
	return parseHello(b)
}

// rendezvous sets up a connection over tc; accepting: the peer dialled,
// and its hello is read (and checked) before a QP is opened.
func rendezvous(ctx context.Context, ep bindcore.Endpoint, tc net.Conn, o Options, open qpOpener, accepting bool) (c *Conn, err error) {
	la := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	ra := tc.RemoteAddr().(*net.TCPAddr).AddrPort()
	tl := &tcpLink{tc: tc}
	local := ep.Local
	if local.Addr().IsUnspecified() { // a wildcard socket: the connection's own address
		local = netip.AddrPortFrom(la.Addr().Unmap(), local.Port())
	}
	c = &Conn{mode: ModeTCP, local: local, remote: netip.AddrPortFrom(ra.Addr().Unmap(), ra.Port()), opts: o, lay: newLayout(o), link: tl}
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

	b := make([]byte, helloLen)
	var peer hello
	if accepting {
		if peer, err = readHello(tc, b); err != nil {
			return c, err
		}
	}
	q, dev, err := open(ep, la.Addr().Unmap(), c.lay)
	if err != nil {
		return c, err
	}
	tl.dev = dev
	g := guardSetup(tl.device(), func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer g.stop()
	defer func() { err = g.err(err) }()
	c.setTransport(q)
	if err = c.postRecvs(); err != nil {
		return c, err
	}
	var psnb [4]byte
	rand.Read(psnb[:])
	my := c.hello(ep.Local.Port())
	a := q.self()
	my.qpn, my.gid, my.lid, my.mtu = a.qpn, a.gid, a.lid, a.mtu
	my.psn = binary.BigEndian.Uint32(psnb[:]) & 0xffffff
	if _, err = tc.Write(my.marshal()); err != nil {
		return c, fmt.Errorf("rendezvous: send hello: %w", err)
	}
	if !accepting {
		if peer, err = readHello(tc, b); err != nil {
			return c, err
		}
	}
	c.remote = netip.AddrPortFrom(c.remote.Addr(), peer.port)
	if err = q.connect(my.psn, peer); err != nil {
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
	tl.established = true
	c.start(peer)
	return c, nil
}

// tcpLink is the link of a rendezvous connection: the TCP connection it
// was set up over, kept open as the liveness channel, and the link the
// QP's device hangs off (the rdma_cm id of openVerbsQP), which reports the
// device's removal.
type tcpLink struct {
	tc          net.Conn
	dev         link // nil: none
	established bool // set before watch starts
}

func (l *tcpLink) device() string {
	if l.dev == nil {
		return ""
	}
	return l.dev.device()
}

// watch waits for the end of the TCP connection (the peer's Close, after
// its goodbye over the QP, or its death) and, at the same time, for what
// the device's link reports; it returns when both are closed.
func (l *tcpLink) watch(broke func(error)) {
	if l.dev != nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.dev.watch(broke)
		}()
		defer func() { <-done }()
	}
	var b [1]byte
	_, err := l.tc.Read(b[:])
	if errors.Is(err, net.ErrClosed) {
		return
	}
	if err == nil || err == io.EOF || errors.Is(err, unix.ECONNRESET) {
		broke(fmt.Errorf("rendezvous connection ended: %w", unix.ECONNRESET))
		return
	}
	broke(fmt.Errorf("rendezvous connection ended: %w (%w)", err, unix.ECONNRESET))
}

// disconnect has nothing to do: the goodbye went over the QP, and close
// ends the TCP connection.
func (l *tcpLink) disconnect() {}

// close closes the TCP connection, an established one with a reset
// (SO_LINGER 0) so that no TIME_WAIT holds the socket's port, then the
// device's link (the rdma_cm id, then its channel); that ends watch.
func (l *tcpLink) close() error {
	if tc, ok := l.tc.(*net.TCPConn); ok && l.established {
		tc.SetLinger(0)
	}
	err := l.tc.Close()
	if l.dev != nil {
		err = errors.Join(err, l.dev.close())
	}
	return err
}
