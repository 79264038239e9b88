package bindcore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/rdma"
)

// Socket is a socket of a Binder: created unbound, bound once, closed. A nil
// or zero Socket, and a closed one, answer WSAENOTSOCK. It is safe for
// concurrent use.
type Socket struct {
	b      *Binder
	family Family
	handle uint64

	mu     sync.Mutex
	closed bool
	bound  *binding
	// released is closed once Close has released the binding: a second
	// Close waits for it.
	released chan struct{}
}

// binding is what a bound socket holds; every part is released by Close.
type binding struct {
	sa     Sockaddr         // the bound name (the chosen port for port 0)
	eps    []rdma.Endpoint  // what the address resolved to
	claim  *registry.Claim  // the registry record
	shadow *shadow.Socket   // the kernel TCP reservation
	times  [NumPhases]int64 // nanoseconds per phase of the Bind
	port   *cmport.Bound    // the rdma_cm id, which a listener of the port may park
	watch  devWatchers      // WatchDevice's functions (device.go)

	// Guarded by the Socket's mu (listen.go):
	lis        *listening         // set once listening
	joining    chan struct{}      // non-nil while a Listen joins the election; closed when it is done
	cancelJoin context.CancelFunc // cancels that Listen (Close)
}

// Endpoint is where a bound socket is bound.
type Endpoint struct {
	// Local is the bound address and port (the chosen port after port 0).
	Local netip.AddrPort `json:"local"`
	// Endpoint is the RDMA device, port and GID serving Local (GIDIndex -1
	// and no device for the wildcard). Device and Port are those rdma_cm
	// bound the id to.
	rdma.Endpoint
	// All lists, for the wildcard, every active RDMA port the bind covers;
	// for a specific address, the one Endpoint.
	All []rdma.Endpoint `json:"all"`
	// Lost names the device that served Local and went away, while no
	// device serves it again ("" otherwise): the socket's operations
	// answer WSAENETDOWN meanwhile (docs/lifecycle.md).
	Lost string `json:"lost,omitempty"`
}

// Handle returns the socket's handle, the descriptor Binder.Lookup takes.
func (s *Socket) Handle() uint64 {
	if s == nil {
		return 0
	}
	return s.handle
}

// Family returns the socket's address family.
func (s *Socket) Family() Family { return s.family }

// lock locks s and checks it is a live socket of a Binder.
func (s *Socket) lock(op string) error {
	if s == nil || s.b == nil {
		return wsa.New(wsa.WSAENOTSOCK, op, "socket", "not a socket of a binder (nil or zero)")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return wsa.New(wsa.WSAENOTSOCK, op, fmt.Sprintf("%#x", s.handle), "the socket is closed")
	}
	return nil
}

// Bind is WSPBind: it parses name (namelen = len(name)) as a sockaddr of
// the socket's family and binds the socket to it. See BindAddrPort for what
// binding does.
//
// Errors (*wsa.Error, matching the sentinel and the errno):
//   - WSAENOTSOCK: s is nil, zero or closed;
//   - WSAEINVAL: s is already bound;
//   - WSAEFAULT: name is nil, too short, or not of the socket's family;
//   - and those of BindAddrPort.
func (s *Socket) Bind(name []byte) error {
	return s.bind("bind", func() (Sockaddr, error) {
		return ParseSockaddr(s.family, name)
	})
}

// BindAddrPort binds the socket to ap, an address of the socket's family
// (an IPv4 address in an AF_INET6 socket binds its IPv4-mapped form):
//
//  1. it resolves the address to the RDMA device, port and GID serving it;
//  2. it claims the address and port in the registry of this network
//     namespace (port 0 picks a port free in the registry, in kernel TCP
//     and in rdma_cm);
//  3. it binds a kernel TCP socket there (SO_REUSEPORT), so no plain TCP
//     program can take the port;
//  4. it binds an rdma_cm id there, with REUSEADDR, so that sockets of the
//     same user share the port.
//
// Sockets of one user share an address and port, in one process and across
// processes (WSPBind's "bind more than one socket to the same local name").
// On failure nothing of the bind is left held.
//
// Errors (*wsa.Error, matching the sentinel and the errno; the error of the
// step that failed is its cause, see SpecError and docs/errors.md):
//   - WSAENOTSOCK, WSAEINVAL: as for Bind;
//   - WSAEFAULT: ap does not fit the socket's family;
//   - WSAENETDOWN: no RDMA subsystem (rdma.ErrNoRDMA, or librdmacm found
//     none: rdmacm.ErrNotSupported), or the port serving the address is
//     down (rdma.ErrPortDown);
//   - WSAEADDRNOTAVAIL: the address is not one of this host's
//     (rdma.ErrAddrNotLocal), is a loopback address, or is on a netdev no
//     RDMA device serves (rdma.ErrAddrNotServed);
//   - WSAEADDRINUSE: another user's socket, or a program outside rdmabind,
//     holds the port (registry.ErrConflict, or EADDRINUSE of kernel TCP or
//     rdma_cm);
//   - WSAENOBUFS: the registry is full (registry.ErrFull), or the kernel is
//     out of resources;
//
// and registry.ErrCorrupt / ErrVersion / ErrPermission when the registry
// file cannot be trusted.
func (s *Socket) BindAddrPort(ap netip.AddrPort) error {
	return s.bind("bind", func() (Sockaddr, error) {
		return SockaddrFromAddrPort(s.family, ap)
	})
}

func (s *Socket) bind(op string, name func() (Sockaddr, error)) error {
	if err := s.lock(op); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.bound != nil {
		return wsa.New(wsa.WSAEINVAL, op, s.bound.sa.String(), "the socket is already bound to %s", s.bound.sa)
	}
	var t phaseTimer
	t.start(s.b.opts.TracePhases)
	sa, err := name()
	t.mark(PhaseCodec)
	if err != nil {
		return err
	}
	bd, err := s.b.bind(op, sa, s.handle, &t)
	if err != nil {
		return err
	}
	bd.times = t.times
	bd.port.SetNotify(bd.watch.tell)
	s.bound = bd
	return nil
}

// Endpoint returns where the socket is bound.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket; WSAEINVAL when it
// is not bound.
func (s *Socket) Endpoint() (Endpoint, error) {
	if err := s.lock("endpoint"); err != nil {
		return Endpoint{}, err
	}
	defer s.mu.Unlock()
	if s.bound == nil {
		return Endpoint{}, wsa.New(wsa.WSAEINVAL, "endpoint", fmt.Sprintf("%#x", s.handle), "the socket is not bound")
	}
	bd := s.bound
	// bd.eps is shared with the Binder's resolution cache: the caller gets
	// a copy.
	ep := Endpoint{Local: bd.sa.AddrPort(), All: slices.Clone(bd.eps)}
	if len(bd.eps) == 1 {
		ep.Endpoint = bd.eps[0]
	} else {
		ep.Endpoint = rdma.Endpoint{Addr: bd.sa.Addr, GIDIndex: -1}
	}
	// A parked socket (see Listen) has no id: the resolution answers.
	if id := bd.cmID(); id != nil {
		ep.Device, ep.Port = id.DeviceName(), id.PortNum()
	}
	ep.Lost = bd.lostDevice()
	return ep, nil
}

// Close releases the socket: its listening (a designated listener hands over
// to its standby, see Listen; a Listen in progress is cancelled), its rdma_cm
// id, its kernel TCP reservation and its registry record, in that order. It
// does not hold the socket's lock meanwhile: other calls answer WSAENOTSOCK
// at once. It is safe to call more than once (a second call returns once
// the first is done); a nil or zero Socket gives WSAENOTSOCK.
func (s *Socket) Close() error {
	if s == nil || s.b == nil {
		return wsa.New(wsa.WSAENOTSOCK, "close", "socket", "not a socket of a binder (nil or zero)")
	}
	s.mu.Lock()
	if s.closed {
		released := s.released
		s.mu.Unlock()
		if released != nil {
			<-released
		}
		return nil
	}
	s.closed = true
	bd := s.bound
	s.bound = nil
	var joining chan struct{}
	if bd != nil && bd.joining != nil {
		joining = bd.joining
		bd.cancelJoin()
	}
	released := make(chan struct{})
	s.released = released
	s.mu.Unlock()
	defer close(released)
	s.b.forget(s)
	if bd == nil {
		return nil
	}
	if joining != nil {
		<-joining // the Listen leaves nothing of its own (listen.go)
	}
	return bd.release()
}

// cmID returns the rdma_cm id that stands for the socket: its bound id, or
// its listening id; nil when parked. The Socket's mu is held.
func (bd *binding) cmID() *rdmacm.ID {
	if id := bd.port.ID(); id != nil {
		return id
	}
	if bd.lis != nil {
		return bd.lis.cm.ID()
	}
	return nil
}

func (bd *binding) release() error {
	var errs []error
	if bd.lis != nil {
		errs = append(errs, bd.lis.m.Close())
	}
	if bd.port != nil {
		errs = append(errs, bd.port.Close())
	}
	if bd.shadow != nil {
		errs = append(errs, bd.shadow.Close())
	}
	if bd.claim != nil {
		errs = append(errs, bd.claim.Release())
	}
	return errors.Join(errs...)
}

// bind does the work of a Bind of sa; on failure it releases what it took.
func (b *Binder) bind(op string, sa Sockaddr, handle uint64, t *phaseTimer) (*binding, error) {
	if b.ch == nil {
		return nil, wsa.Wrap(wsa.WSAENETDOWN, op, sa.String(), b.chErr, "no RDMA subsystem")
	}
	eps, err := b.cache.resolve(sa.Addr, false)
	t.mark(PhaseResolve)
	if err != nil {
		return nil, SpecError(op, sa.String(), err)
	}
	if sa.Port != 0 {
		return b.bindPort(op, sa, eps, handle, t)
	}
	return b.bindEphemeral(op, sa, eps, handle, t)
}

// bindPort binds sa, whose port is not 0: registry first (it names a
// conflicting owner best), then kernel TCP, then rdma_cm.
func (b *Binder) bindPort(op string, sa Sockaddr, eps []rdma.Endpoint, handle uint64, t *phaseTimer) (*binding, error) {
	ap := sa.AddrPort()
	bd := &binding{sa: sa, eps: eps}
	var err error
	bd.claim, err = b.reg.Claim(registry.ClaimRequest{Addr: sa.Addr, Port: sa.Port, Role: registry.RoleBound, SocketID: handle})
	t.mark(PhaseRegistry)
	if err != nil {
		return nil, specError(op, ap, "registry", err)
	}
	if bd.shadow, err = shadow.Bind(ap); err != nil {
		bd.release()
		return nil, specError(op, ap, "kernel TCP", err)
	}
	t.mark(PhaseShadow)
	if bd.port, err = b.anchor.Bind(ap, sa.Family == AFInet6); err != nil {
		bd.release()
		return nil, specError(op, ap, "rdma_cm", err)
	}
	t.mark(PhaseRDMACM)
	return bd, nil
}

// ephemeralTries bounds the retries of a port 0 bind that loses a race
// for the port the kernel offered.
const ephemeralTries = 16

// bindEphemeral binds sa with port 0. rdma_cm's allocator picks the port
// (rdma_bind_addr to port 0 takes a port no rdma_cm id holds), then the
// shadow binds that very port in kernel TCP, and the registry claims it as
// a fresh port (no live claim of anyone may hold it). The order is the
// floor's (rdma_bind_addr, then bind(2) of a TCP socket to the port it
// got): no extra port search. A port taken in kernel TCP or in the registry
// is given back and another one tried.
func (b *Binder) bindEphemeral(op string, sa Sockaddr, eps []rdma.Endpoint, handle uint64, t *phaseTimer) (*binding, error) {
	var last error
	for try := 0; try < ephemeralTries; try++ {
		bd := &binding{sa: sa, eps: eps}
		var err error
		// Parkable before the claim (see cmport.Anchor.BindEphemeral).
		if bd.port, err = b.anchor.BindEphemeral(sa.Addr, sa.Family == AFInet6); err != nil {
			return nil, specError(op, sa.AddrPort(), "rdma_cm", err)
		}
		t.mark(PhaseRDMACM)
		bd.sa.Port = bd.port.Port()
		ap := bd.sa.AddrPort()
		if bd.shadow, err = shadow.Bind(ap); err != nil {
			bd.release()
			last = specError(op, ap, "kernel TCP", err)
			if errors.Is(err, unix.EADDRINUSE) {
				continue
			}
			return nil, last
		}
		t.mark(PhaseShadow)
		bd.claim, err = b.reg.Claim(registry.ClaimRequest{Addr: sa.Addr, Port: bd.sa.Port, Role: registry.RoleBound, SocketID: handle, Fresh: true})
		t.mark(PhaseRegistry)
		if err != nil {
			bd.release()
			last = specError(op, ap, "registry", err)
			if errors.Is(err, unix.EADDRINUSE) {
				continue
			}
			return nil, last
		}
		return bd, nil
	}
	return nil, fmt.Errorf("%w (port 0: %d ports offered by rdma_cm were taken in kernel TCP or the registry)", last, ephemeralTries)
}
