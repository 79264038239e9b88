package bindcore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// listening is what a listening socket holds on top of its binding.
type listening struct {
	d  *designation
	cm *cmPort
}

// maxRDMAQueue bounds the queue of connect requests waiting for AcceptRDMA.
const maxRDMAQueue = 4096

// Listen makes a bound socket listen for connection requests (WSPListen),
// with backlog as the length of its queues (DefaultBacklog for 0 or less).
//
// Sockets of one user may share an address and port (Bind), and several
// may listen on it; "if more than one socket is listening on the same port,
// only one should receive connection requests". So a Listen makes the
// socket, among the listeners of its address and port in every process of
// the network namespace:
//
//   - the designated listener, if there is none: it alone receives the
//     connection requests, in rdma_cm (its id alone listens on the port;
//     the other rdmabind sockets of the port give their ids up, see
//     docs/listen.md) and in TCP (the BPF steering program selects its
//     kernel TCP socket);
//   - else the standby, if there is none: it receives nothing while the
//     designated listener lives, and takes over when it closes or its
//     process dies (Designated is closed then). With steering, the kernel
//     sends TCP requests, and the old listener's queue, to the standby at
//     once; its rdma_cm id listens once it has taken over;
//   - else a listener in line, which becomes the standby when the standby
//     takes over or goes.
//
// Listen returns once the socket has its role (ListenState); promotions
// happen in the background. Without BPF privilege or kernel support the
// steering is off (Steering says why): only the designated socket's kernel
// TCP socket listens, and a handover loses its queue and refuses TCP
// requests until the successor listens.
//
// Errors (*wsa.Error):
//   - WSAENOTSOCK: s is nil, zero or closed;
//   - WSAEINVAL: s is not bound, or already listening;
//   - WSAEADDRINUSE: the rdma_cm port is held by something that does not
//     give it up: a program outside rdmabind, a designated listener on an
//     overlapping address (a wildcard and a specific address of one port),
//     or rdmabind sockets whose processes did not release their rdma_cm
//     ids within 2 s (the message names them);
//   - WSAENETDOWN, WSAENOBUFS: as for Bind;
//
// and the errors of the registry and of the steering group (not spec
// errors). On failure the socket stays bound, without an rdma_cm id.
func (s *Socket) Listen(backlog int) error {
	if err := s.lock("listen"); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.bound == nil {
		return wsa.New(wsa.WSAEINVAL, "listen", fmt.Sprintf("%#x", s.handle), "the socket is not bound")
	}
	bd := s.bound
	in := bd.sa.String()
	if bd.lis != nil {
		return wsa.New(wsa.WSAEINVAL, "listen", in, "the socket is already listening")
	}
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	cm := &cmPort{
		b:    s.b,
		bd:   bd,
		own:  bd.takeID(s.b.anchor), // no listener may park it now: it is ours to listen on or close
		reqs: make(chan RDMARequest, min(backlog, maxRDMAQueue)),
		done: make(chan struct{}),
	}
	d, err := startDesignation(listenConfig{
		reg:     s.b.reg,
		claim:   bd.claim,
		shadow:  bd.shadow,
		backlog: backlog,
		cm:      cm,
		anchor:  s.b.anchor,
	})
	if err != nil {
		if shadowListens(bd.shadow) {
			// A bound socket does not listen: replace the kernel TCP
			// reservation (its queue migrates or is reset).
			if ns, berr := shadow.Bind(bd.sa.AddrPort()); berr == nil {
				old := bd.shadow
				bd.shadow = ns
				old.Close()
			} else {
				err = errors.Join(err, berr)
			}
		}
		if _, ok := wsa.CodeOf(err); ok {
			return err
		}
		return specError("listen", bd.sa.AddrPort(), "listen", err)
	}
	bd.lis = &listening{d: d, cm: cm}
	return nil
}

// listening returns s's listening state, or WSAENOTSOCK / WSAEINVAL.
func (s *Socket) listening(op string) (*listening, error) {
	if err := s.lock(op); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if s.bound == nil || s.bound.lis == nil {
		return nil, wsa.New(wsa.WSAEINVAL, op, fmt.Sprintf("%#x", s.handle), "the socket is not listening")
	}
	return s.bound.lis, nil
}

// ListenState returns what the listening socket is doing: its role, its
// backlog, whether steering and its rdma_cm listen are on.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket; WSAEINVAL when it
// is not listening.
func (s *Socket) ListenState() (ListenState, error) {
	l, err := s.listening("listen state")
	if err != nil {
		return ListenState{}, err
	}
	st := l.d.state()
	if st.Role == registry.RoleDesignated && !st.RDMA && st.Error == "" {
		c := l.cm
		c.mu.Lock()
		if c.lastErr != nil {
			st.Error = "waiting for the rdma_cm port: " + c.lastErr.Error()
		}
		c.mu.Unlock()
	}
	return st, nil
}

// Steering reports whether the BPF steering program picks the TCP listener
// of the socket's port; when it does not, why is the reason (matching
// steer.ErrNotPermitted or steer.ErrNotSupported). For a socket that is not
// listening it returns false and the WSAENOTSOCK or WSAEINVAL error.
func (s *Socket) Steering() (on bool, why error) {
	l, err := s.listening("steering")
	if err != nil {
		return false, err
	}
	return l.d.group != nil, l.d.steerErr
}

// Designated returns a channel closed once the socket is the designated
// listener: at once for the first listener of its address and port, on
// takeover for a standby. It is nil for a socket that is not listening.
func (s *Socket) Designated() <-chan struct{} {
	l, err := s.listening("designated")
	if err != nil {
		return nil
	}
	return l.d.designated
}

// AcceptTCP accepts the next connection queued on the socket's kernel TCP
// listener (the reservation that also receives the port's TCP requests,
// which the steering sends to the designated listener). It waits until the
// socket listens in TCP (a standby without steering listens once
// designated) and a connection arrives, or ctx ends. The caller owns the
// net.Conn. Concurrent calls are fine; each ends with its own ctx.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket, also when it is
// closed while waiting (matching net.ErrClosed then); WSAEINVAL when it is
// not listening; ctx.Err(); the errno of accept4(2).
func (s *Socket) AcceptTCP(ctx context.Context) (net.Conn, error) {
	l, err := s.listening("accept")
	if err != nil {
		return nil, err
	}
	c, err := l.d.acceptTCP(ctx)
	if errors.Is(err, net.ErrClosed) {
		return nil, wsa.Wrap(wsa.WSAENOTSOCK, "accept", fmt.Sprintf("%#x", s.handle), err, "the socket was closed")
	}
	return c, err
}

// AcceptRDMA returns the next rdma_cm connection request that reached the
// socket: only the designated listener receives them (a standby once it has
// taken over). The caller owns the request's ID and must Close it (which
// rejects the request unless it was accepted). At most backlog requests
// wait; more are rejected.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket, also when it is
// closed while waiting (matching net.ErrClosed then); WSAEINVAL when it is
// not listening; ctx.Err().
func (s *Socket) AcceptRDMA(ctx context.Context) (RDMARequest, error) {
	l, err := s.listening("accept")
	if err != nil {
		return RDMARequest{}, err
	}
	select {
	case r := <-l.cm.reqs:
		return r, nil
	case <-ctx.Done():
		return RDMARequest{}, ctx.Err()
	case <-l.cm.done:
		return RDMARequest{}, wsa.Wrap(wsa.WSAENOTSOCK, "accept", fmt.Sprintf("%#x", s.handle), errListenClosed, "the socket was closed")
	}
}

// cmPort is the rdma_cm half of a listening Socket: the listening id, and
// the queue its connect requests go to.
type cmPort struct {
	b    *Binder
	bd   *binding
	reqs chan RDMARequest
	done chan struct{} // closed by close

	mu      sync.Mutex
	own     *rdmacm.ID // the socket's bound id, until listen uses it or standby closes it
	id      *rdmacm.ID // the listening id
	closed  bool
	lastErr error // why the last attempt to listen failed
	// tries and waited: how many rdma_listen calls the last successful
	// listen made, and how long it waited for the port (diagnostics).
	tries  int
	waited time.Duration
}

func (c *cmPort) listenID() *rdmacm.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// listen listens on the socket's address and port: with the socket's own
// bound id if it still had one at Listen, else a new one (bound with REUSEADDR, like
// Bind's). While rdma_cm refuses (EADDRINUSE, EADDRNOTAVAIL: other ids are
// still on the port), it retries, with a growing pause (50 µs to 1 ms),
// ringing the doorbell every 100 ms, until ctx ends. With a deadline on ctx
// (a first Listen) it gives up early when nothing of rdmabind holds the
// port (a program outside rdmabind does), or a designated listener on an
// overlapping address does; without one (a takeover) it goes on until ctx
// is cancelled.
func (c *cmPort) listen(ctx context.Context, backlog int) error {
	sa := c.bd.sa
	ap := sa.AddrPort()
	_, bounded := ctx.Deadline()
	c.mu.Lock()
	id := c.own
	c.own = nil
	c.mu.Unlock()
	pause := 50 * time.Microsecond
	start := time.Now()
	lastCheck := start
	var last error
	for tries := 1; ; tries++ {
		var err error
		if id == nil {
			id, err = c.b.newCMID(sa)
		}
		if err == nil {
			if err = id.Listen(backlog); err == nil {
				c.mu.Lock()
				if c.closed {
					c.mu.Unlock()
					id.Close()
					return errListenClosed
				}
				c.id = id
				c.lastErr = nil
				c.tries, c.waited = tries, time.Since(start)
				c.b.route(id, c.reqs)
				c.mu.Unlock()
				return nil
			}
		}
		if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			if id != nil {
				id.Close()
			}
			return specError("listen", ap, "rdma_cm", err)
		}
		last = err
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		if time.Since(lastCheck) >= 100*time.Millisecond {
			lastCheck = time.Now()
			ringDoorbell(c.b.reg.Path())
			if bounded {
				if err := c.heldElsewhere(ap, last); err != nil {
					if id != nil {
						id.Close()
					}
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			if id != nil {
				id.Close()
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return c.busy(ap, last, time.Since(start))
			}
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, time.Millisecond)
	}
}

// newCMID creates an rdma_cm id on the Binder's channel and binds it to sa
// with REUSEADDR (and AFONLY for IPv6), as Bind does.
func (b *Binder) newCMID(sa Sockaddr) (*rdmacm.ID, error) {
	id, err := b.ch.CreateID(rdmacm.PortSpaceTCP)
	if err != nil {
		return nil, err
	}
	if err = id.SetReuseAddr(true); err == nil && sa.Family == AFInet6 {
		err = id.SetAFOnly(true)
	}
	if err == nil {
		err = id.Bind(sa.AddrPort())
	}
	if err != nil {
		id.Close()
		return nil, err
	}
	return id, nil
}

// others returns the live claims of the registry that overlap ap, other
// than the socket's own.
func (c *cmPort) others(ap netip.AddrPort) []registry.Record {
	recs, _ := c.b.reg.List()
	own := c.bd.claim.Record()
	var out []registry.Record
	for _, r := range recs {
		if r.Slot == own.Slot && r.Generation == own.Generation {
			continue
		}
		if r.Port == ap.Port() && registry.Overlap(r.Addr, r.DualStack, ap.Addr(), false) {
			out = append(out, r)
		}
	}
	return out
}

// heldElsewhere returns the error to give up with, or nil to go on
// waiting: WSAEADDRINUSE when no other rdmabind socket overlaps the port
// (a program outside rdmabind holds it), or a designated listener on
// another, overlapping address does (rdma_cm lets only one of them listen).
func (c *cmPort) heldElsewhere(ap netip.AddrPort, last error) error {
	others := c.others(ap)
	if len(others) == 0 {
		return wsa.Wrap(wsa.WSAEADDRINUSE, "listen", ap.String(), last,
			"port %d is held in the rdma_cm port space by a program outside rdmabind (no other rdmabind socket of this user holds it)", ap.Port())
	}
	for _, r := range others {
		if r.Role == registry.RoleDesignated && r.Addr != ap.Addr().Unmap().WithZone("") {
			return wsa.Wrap(wsa.WSAEADDRINUSE, "listen", ap.String(), last,
				"pid %d listens on %s (socket %#x), which overlaps %s: rdma_cm lets one id listen where a wildcard and a specific address of a port meet",
				r.PID, r.AddrPort(), r.SocketID, ap)
		}
	}
	return nil
}

// busy is the error of a first Listen that waited in vain.
func (c *cmPort) busy(ap netip.AddrPort, last error, waited time.Duration) error {
	var who []string
	for _, r := range c.others(ap) {
		who = append(who, fmt.Sprintf("pid %d (%s on %s, socket %#x)", r.PID, r.Role, r.AddrPort(), r.SocketID))
	}
	holders := "no rdmabind socket (a program outside rdmabind, or ids of a process just gone)"
	if len(who) > 0 {
		holders = strings.Join(who, ", ")
	}
	return wsa.Wrap(wsa.WSAEADDRINUSE, "listen", ap.String(), last,
		"the rdma_cm port is still held after %v; sharing it: %s (a listener's rdma_cm id must be alone on its port: these did not give theirs up)",
		waited.Round(time.Millisecond), holders)
}

// standby closes the socket's bound id: only the designated listener has
// an rdma_cm id on the port.
func (c *cmPort) standby() {
	c.mu.Lock()
	id := c.own
	c.own = nil
	c.mu.Unlock()
	if id != nil {
		id.Close()
	}
}

// close stops listening and rejects the requests nobody accepted. Safe
// twice.
func (c *cmPort) close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	id, own := c.id, c.own
	c.id, c.own = nil, nil
	c.mu.Unlock()
	close(c.done)
	var errs []error
	if own != nil {
		errs = append(errs, own.Close())
	}
	if id != nil {
		c.b.unroute(id)
		errs = append(errs, id.Close())
	}
	err := errors.Join(errs...)
	for {
		select {
		case r := <-c.reqs:
			r.ID.Close()
		default:
			return err
		}
	}
}
