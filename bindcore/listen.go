package bindcore

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/election"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// DefaultBacklog is the backlog Listen uses for a backlog of 0 or less.
const DefaultBacklog = election.DefaultBacklog

// ListenState is what a listening socket is doing (election.State).
type ListenState = election.State

// RDMARequest is an rdma_cm connection request received by a listening
// socket (cmport.Request): the receiver owns its ID and must Close it
// (which rejects the request unless it was accepted).
type RDMARequest = cmport.Request

// RetryRejectData is the private data of a reject that asks the client
// to dial again (a closing listener's, while its standby takes over).
var RetryRejectData = cmport.RetryData

// listening is what a listening socket holds on top of its binding: its
// part in the election of its address and port, and its rdma_cm half.
type listening struct {
	m  *election.Member
	cm *cmport.Listener
}

// Listen makes a bound socket listen for connection requests (WSPListen),
// with backlog as the length of its queues (DefaultBacklog for 0 or less).
// It is ListenContext with no deadline of its own: a first designated
// listener waits at most 2 s (election.DefaultTimeout) for its rdma_cm
// port, and the socket's lock is not held meanwhile.
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
	return s.ListenContext(context.Background(), backlog)
}

// ListenContext is Listen, giving up when ctx ends first (with ctx.Err())
// while a first designated listener waits for its rdma_cm port.
func (s *Socket) ListenContext(ctx context.Context, backlog int) error {
	if err := s.lock("listen"); err != nil {
		return err
	}
	if s.bound == nil {
		s.mu.Unlock()
		return wsa.New(wsa.WSAEINVAL, "listen", fmt.Sprintf("%#x", s.handle), "the socket is not bound")
	}
	bd := s.bound
	in := bd.sa.String()
	if bd.lis != nil || bd.joining != nil {
		s.mu.Unlock()
		return wsa.New(wsa.WSAEINVAL, "listen", in, "the socket is already listening")
	}
	if dev := bd.port.Lost(); dev != "" {
		s.mu.Unlock()
		return wsa.Wrap(wsa.WSAENETDOWN, "listen", in, cmport.ErrDeviceLost,
			"the RDMA device %s that served %s went away; the socket stays bound until closed, and listens once a device serves its address again", dev, bd.sa.Addr)
	}
	if backlog <= 0 {
		backlog = DefaultBacklog
	}
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	joining := make(chan struct{})
	bd.joining, bd.cancelJoin = joining, cancel
	// No listener may park the bound id now: it is ours to listen on or
	// close.
	cm := s.b.anchor.NewListener(s.b.events, bd.sa.AddrPort(), bd.sa.Family == AFInet6, bd.port.Take(), bd.claim, backlog)
	s.mu.Unlock()

	m, err := election.Join(jctx, election.Config{
		Registry: s.b.reg,
		Claim:    bd.claim,
		Shadow:   bd.shadow,
		Backlog:  backlog,
		RDMA:     cm,
		Announce: s.b.anchor.ParkLocal,
	})

	s.mu.Lock()
	defer close(joining)
	defer s.mu.Unlock()
	bd.joining, bd.cancelJoin = nil, nil
	if s.closed {
		// Close is waiting for joining: leave nothing behind for it.
		if m != nil {
			m.Close()
		}
		return wsa.New(wsa.WSAENOTSOCK, "listen", in, "the socket was closed during Listen")
	}
	if err != nil {
		if election.ShadowListens(bd.shadow) {
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
		return specError("listen", bd.sa.AddrPort(), "rdma_cm", err)
	}
	cm.SetNotify(bd.watch.tell)
	bd.lis = &listening{m: m, cm: cm}
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
	st := l.m.State()
	if st.Role == registry.RoleDesignated && !st.RDMA && st.Error == "" {
		if err := l.cm.LastError(); err != nil {
			st.Error = "waiting for the rdma_cm port: " + err.Error()
		}
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
	return l.m.Steering()
}

// closedChan is what Designated returns for a socket that cannot become
// designated.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Designated returns a channel closed once the socket is the designated
// listener (at once for the first listener of its address and port, on
// takeover for a standby), or once it is closed, whichever comes first; for
// a socket that is not listening, a closed channel. So `<-s.Designated()`
// never waits for ever; WaitDesignated says which it was.
func (s *Socket) Designated() <-chan struct{} {
	l, err := s.listening("designated")
	if err != nil {
		return closedChan
	}
	return l.m.Resolved()
}

// WaitDesignated waits until the listening socket is the designated
// listener, it is closed, or ctx ends.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket, also when it is
// closed while waiting; WSAEINVAL when it is not listening; ctx.Err().
func (s *Socket) WaitDesignated(ctx context.Context) error {
	l, err := s.listening("wait designated")
	if err != nil {
		return err
	}
	select {
	case <-l.m.Resolved():
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-l.m.Done():
		return wsa.Wrap(wsa.WSAENOTSOCK, "wait designated", fmt.Sprintf("%#x", s.handle), election.ErrClosed, "the socket was closed")
	default:
		return nil
	}
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
	c, err := l.m.AcceptTCP(ctx)
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
	case r := <-l.cm.Requests():
		return r, nil
	case <-ctx.Done():
		return RDMARequest{}, ctx.Err()
	case <-l.cm.Done():
		return RDMARequest{}, wsa.Wrap(wsa.WSAENOTSOCK, "accept", fmt.Sprintf("%#x", s.handle), election.ErrClosed, "the socket was closed")
	}
}

// QueuedRDMA is how many rdma_cm connection requests wait in the socket's
// queue for AcceptRDMA (0 when it does not listen): diagnostics, and what
// a test waits for.
func (s *Socket) QueuedRDMA() int {
	l, err := s.listening("queued")
	if err != nil {
		return 0
	}
	return len(l.cm.Requests())
}
