package election

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/internal/ofdlock"
)

// The election: among the listening sockets of one address and port (of one
// user, in one network namespace), exactly one, the designated listener,
// receives connection requests, in TCP (the steering program) and in
// rdma_cm (it alone listens there). One more, the standby, is ready to take
// over; the others wait in line. docs/listen.md has the protocol; in short:
//
//   - the election lock of the address and port (lock.go) is held by
//     the designated listener, the standby lock by the standby; a new
//     listener that gets neither waits (ofdlock.Wait) for the standby lock,
//     and the standby waits for the election lock. The kernel drops a lock
//     when its holder closes it or dies, and grants it to one waiter;
//   - the registry record's role says the same for people and for binders
//     (designated, standby, listening);
//   - TCP: the designated socket's shadow is in the designated slot of the
//     steering group, the standby's in the standby slot, so the kernel
//     itself sends requests, and migrates queued ones, to the standby the
//     moment the designated socket closes; queued listeners do not listen
//     in TCP yet. Without BPF steering (steer.Degraded) only the designated
//     socket listens.
//   - rdma_cm: only the designated socket has an id there (package cmport,
//     driven through RDMAPort), under the rdma_cm lock of the address and
//     port (lock.go), which a successor waits for, so that it listens the
//     moment the closing listener's id is gone.

// RDMAPort is the rdma_cm half of a listening socket, as the election
// drives it (package cmport's Listener); nil where there is no rdma_cm part.
type RDMAPort interface {
	// Listen listens on the socket's address and port, retrying while
	// other ids still hold the port, until ctx ends.
	Listen(ctx context.Context, backlog int) error
	// Standby gives up any rdma_cm id of the socket: it is not designated.
	Standby()
	// Unlisten destroys the socket's rdma_cm ids (the port is free for a
	// successor) and keeps the requests queued, for Close.
	Unlisten() error
	// Close stops listening and rejects the requests not accepted (with
	// the retry mark: the client dials again).
	Close() error
}

// DefaultTimeout bounds how long a first Join waits for its rdma_cm port
// (the other rdmabind sockets of the port giving up their ids), when
// Config.Timeout is 0.
const DefaultTimeout = 2 * time.Second

// DefaultBacklog is the backlog Listen uses for a backlog of 0 or less.
const DefaultBacklog = 128

// Config is what a Member works with. The caller owns every part but the
// lock file and the steering group, which the Member opens, and must keep
// them until the Member is closed.
type Config struct {
	Registry *registry.Registry
	Claim    *registry.Claim // the socket's record: its role follows the election
	Shadow   *shadow.Socket  // the socket's kernel TCP socket
	Backlog  int             // 0 or less: DefaultBacklog
	RDMA     RDMAPort        // nil: no rdma_cm part
	// Announce, if set, is called once the socket is designated, after the
	// doorbell rang: this process parks its own rdma_cm ids of the port.
	Announce func(netip.AddrPort)
	Steer    *steer.Options // nil: the default pin root
	Timeout  time.Duration  // 0: DefaultTimeout
}

// Member is one listening socket's part in the election of its address and
// port: designated, standby or in line. Its methods are safe for concurrent
// use.
type Member struct {
	cfg      Config
	ap       netip.AddrPort
	lf       *lockFile
	group    *steer.Group // nil without steering
	steerErr error        // why there is no steering

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	designated chan struct{} // closed once designated
	desOnce    sync.Once
	done       chan struct{} // closed when Close starts
	resolved   chan struct{} // closed once designated or closed
	resOnce    sync.Once
	tcp        chan struct{} // closed once the shadow listens
	tcpOnce    sync.Once

	mu      sync.Mutex
	role    registry.Role
	rdma    bool
	err     error // the last failure of a background step
	closed  bool
	accepts map[*os.File]struct{} // AcceptTCP's descriptors in use
}

// Join makes cfg's socket a listener of its address and port: the
// designated one if the election lock is free, else the standby if the
// standby lock is, else a queued listener. It returns once the socket has
// its first role; promotions happen in the background. A first designation
// waits for its rdma_cm port until ctx ends or cfg.Timeout passes,
// whichever comes first.
//
// On failure nothing of it is left: the record's role is back to bound, no
// lock is held, no group open, and no rdma_cm id listens. The shadow may
// have listened (check with ShadowListens) if the failure came after its
// listen(2).
//
// Errors: those of the lock file, of steer (except the degraded ones, which
// turn steering off), of SetRole, of RDMAPort.Listen, of listen(2);
// ctx.Err() when ctx ended first.
func Join(ctx context.Context, cfg Config) (*Member, error) {
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultBacklog
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	d := &Member{
		cfg:        cfg,
		ap:         cfg.Shadow.Addr(),
		designated: make(chan struct{}),
		done:       make(chan struct{}),
		resolved:   make(chan struct{}),
		tcp:        make(chan struct{}),
		accepts:    map[*os.File]struct{}{},
	}
	var err error
	if d.lf, err = openLockFile(cfg.Registry); err != nil {
		return nil, err
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	key, err := steer.KeyOf(cfg.Shadow)
	if err == nil {
		d.group, err = steer.Open(key, cfg.Steer)
	}
	if err != nil {
		if !steer.Degraded(err) {
			d.abort()
			return nil, err
		}
		d.steerErr = err
	}
	won, err := d.lf.try(ofdlock.Write, listenOffset(d.ap, lockElect))
	if err != nil {
		d.abort()
		return nil, err
	}
	if won {
		if err := d.designate(ctx, true); err != nil {
			d.abort()
			return nil, err
		}
		return d, nil
	}
	won, err = d.lf.try(ofdlock.Write, listenOffset(d.ap, lockStandby))
	if err != nil {
		d.abort()
		return nil, err
	}
	if won {
		if err := d.becomeStandby(); err != nil {
			d.abort()
			return nil, err
		}
		d.background(false)
		return d, nil
	}
	if err := d.cfg.Claim.SetRole(registry.RoleListening); err != nil {
		d.abort()
		return nil, err
	}
	d.setRole(registry.RoleListening)
	if d.cfg.RDMA != nil {
		d.cfg.RDMA.Standby()
	}
	d.background(true)
	return d, nil
}

func (d *Member) setRole(r registry.Role) {
	d.mu.Lock()
	d.role = r
	d.mu.Unlock()
}

func (d *Member) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

func (d *Member) listening() {
	d.tcpOnce.Do(func() { close(d.tcp) })
}

// designate makes the socket the designated listener; the caller holds the
// election lock. first: this is the socket's Join (TCP, then rdma_cm
// bounded by ctx and the timeout). Otherwise it is a standby taking over
// (TCP, where it listens already; then rdma_cm, for as long as it takes).
func (d *Member) designate(ctx context.Context, first bool) error {
	if _, err := d.lf.try(ofdlock.Read, flagOffset(d.ap.Port())); err != nil {
		return err
	}
	if err := d.cfg.Claim.SetRole(registry.RoleDesignated); err != nil {
		return err
	}
	d.setRole(registry.RoleDesignated)
	// Binders of other processes park their ids on the doorbell; this
	// process's at once. An error here only slows the rdma_cm part down
	// (its retry rings again).
	RingDoorbell(d.cfg.Registry)
	if d.cfg.Announce != nil {
		d.cfg.Announce(d.ap)
	}
	if first {
		// TCP first: a standby arriving meanwhile must find the
		// designated slot taken, or the program would send it the
		// requests. If rdma_cm then fails, the caller replaces the
		// listening shadow.
		if d.group != nil {
			if err := d.group.Listen(d.cfg.Shadow, d.cfg.Backlog); err != nil {
				return err
			}
			if err := d.group.Designate(d.cfg.Shadow); err != nil {
				return err
			}
		} else if err := d.cfg.Shadow.Listen(d.cfg.Backlog); err != nil {
			return err
		}
		if d.cfg.RDMA != nil {
			// Bounded by the caller's ctx, the timeout, and Close.
			lctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
			stop := context.AfterFunc(d.ctx, cancel)
			err := d.listenRDMA(lctx)
			stop()
			cancel()
			if err != nil {
				return err
			}
		}
		d.listening()
		d.desOnce.Do(func() { close(d.designated) })
		d.resolve()
		return nil
	}
	// Taking over. The kernel has been sending TCP requests to this socket
	// (the standby slot) since the designated socket closed; designating it
	// frees the standby slot for the next in line.
	var errs []error
	if d.group != nil {
		errs = append(errs, d.group.Designate(d.cfg.Shadow))
	} else {
		errs = append(errs, d.cfg.Shadow.Listen(d.cfg.Backlog))
	}
	d.listening()
	errs = append(errs, d.lf.unlock(listenOffset(d.ap, lockStandby)))
	if d.cfg.RDMA != nil {
		errs = append(errs, d.listenRDMA(d.ctx))
	}
	if d.ctx.Err() != nil {
		return nil
	}
	d.desOnce.Do(func() { close(d.designated) })
	d.resolve()
	return errors.Join(errs...)
}

// listenRDMA listens in rdma_cm under the rdma_cm lock of the address and
// port (lock.go): it waits for the write lock while the previous designated
// listener, closing, still has its id on the port (its Close unlocks the
// moment the id is gone), listens, and turns the lock into a read lock,
// which tells the closing listener that the port listens again.
//
// Errors: ctx.Err() when ctx is cancelled during the wait, an error
// matching unix.EADDRINUSE when its deadline passes; those of
// RDMAPort.Listen. A lock that cannot be had for another reason is passed
// by: Listen then retries while the old id is there.
func (d *Member) listenRDMA(ctx context.Context) error {
	off := rdmaOffset(d.ap)
	start := time.Now()
	won, err := d.lf.try(ofdlock.Write, off)
	if err == nil && !won {
		err = d.lf.wait(ctx, off)
	}
	locked := err == nil
	switch {
	case err == nil:
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%v: the previous designated listener, closing, still had its rdma_cm id on the port after %v (%w): %w",
			d.ap, time.Since(start).Round(time.Millisecond), unix.EADDRINUSE, err)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		// The lock only spares the successor its retries: without it,
		// Listen retries while the old id is there.
	}
	if err := d.cfg.RDMA.Listen(ctx, d.cfg.Backlog); err != nil {
		if locked {
			d.lf.unlock(off)
		}
		return err
	}
	d.mu.Lock()
	d.rdma = true
	d.mu.Unlock()
	if locked {
		if _, err := d.lf.try(ofdlock.Read, off); err != nil {
			return err
		}
	}
	return nil
}

// becomeStandby makes the socket the standby; the caller holds the standby
// lock. With steering its shadow listens, in the standby slot; without, it
// does not listen before it is designated.
func (d *Member) becomeStandby() error {
	if d.group != nil {
		if err := d.group.Listen(d.cfg.Shadow, d.cfg.Backlog); err != nil {
			return err
		}
		if err := d.group.Standby(d.cfg.Shadow); err != nil {
			return err
		}
		d.listening()
	}
	if err := d.cfg.Claim.SetRole(registry.RoleStandby); err != nil {
		return err
	}
	d.setRole(registry.RoleStandby)
	if d.cfg.RDMA != nil {
		d.cfg.RDMA.Standby()
	}
	return nil
}

// background waits, in a goroutine, for the standby lock (queued) and then
// for the election lock, and takes each role as it comes.
func (d *Member) background(queued bool) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if queued {
			if err := d.lf.wait(d.ctx, listenOffset(d.ap, lockStandby)); err != nil {
				d.fail(err)
				return
			}
			if err := d.becomeStandby(); err != nil {
				d.fail(err)
			}
		}
		if err := d.lf.wait(d.ctx, listenOffset(d.ap, lockElect)); err != nil {
			d.fail(err)
			return
		}
		if err := d.designate(d.ctx, false); err != nil {
			d.fail(err)
		}
	}()
}

// fail records a failure of a background step, unless the designation is
// being closed.
func (d *Member) fail(err error) {
	if d.ctx.Err() != nil {
		return
	}
	d.mu.Lock()
	d.err = err
	d.mu.Unlock()
}

// abort undoes a failed start: no lock, no group, no rdma_cm listen, the
// role back to bound.
func (d *Member) abort() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.cfg.RDMA != nil {
		d.cfg.RDMA.Close()
	}
	d.cfg.Claim.SetRole(registry.RoleBound)
	d.lf.close()
	if d.group != nil {
		d.group.Close()
	}
}

// State is what a listening socket is doing.
type State struct {
	// Role is registry.RoleDesignated (it receives the connection
	// requests), RoleStandby (it takes over when the designated listener
	// goes) or RoleListening (in line to become the standby).
	Role registry.Role `json:"-"`
	// RoleName is Role as a string, "designated", "standby", "listening".
	RoleName string `json:"role"`
	Backlog  int    `json:"backlog"`
	// Steering says the BPF steering program chooses the TCP listener;
	// without it (SteeringError says why) only the designated socket
	// listens in TCP and a handover loses the old listener's queue.
	Steering      bool   `json:"steering"`
	SteeringError string `json:"steering_error,omitempty"`
	// RDMA says the socket's rdma_cm id listens (designated only).
	RDMA bool `json:"rdma"`
	// Error is the last failure of a background step of the takeover, if
	// any ("" when none).
	Error string `json:"error,omitempty"`
}

// State returns the member's role, backlog, steering and rdma_cm state.
func (d *Member) State() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := State{Role: d.role, RoleName: d.role.String(), Backlog: d.cfg.Backlog, Steering: d.group != nil, RDMA: d.rdma}
	if d.steerErr != nil {
		st.SteeringError = d.steerErr.Error()
	}
	if d.err != nil {
		st.Error = d.err.Error()
	}
	return st
}

// ErrClosed is what accepts return once the member is closed; it matches
// net.ErrClosed.
var ErrClosed = fmt.Errorf("listening socket closed: %w", net.ErrClosed)

// Steering reports whether the BPF steering program picks the port's TCP
// listener, and if not, why (an error matching steer.ErrNotPermitted or
// steer.ErrNotSupported).
func (d *Member) Steering() (on bool, why error) { return d.group != nil, d.steerErr }

// Designated returns a channel closed once the member is designated: at
// once for the first listener of its address and port, on takeover for a
// standby. It is never closed for a member closed before that (see Done).
func (d *Member) Designated() <-chan struct{} { return d.designated }

// Done returns a channel closed when Close starts.
func (d *Member) Done() <-chan struct{} { return d.done }

// Resolved returns a channel closed once the member is designated or
// closed, whichever comes first: what a caller waiting for its designation
// selects on so that a Close does not leave it waiting for ever.
func (d *Member) Resolved() <-chan struct{} { return d.resolved }

func (d *Member) resolve() { d.resOnce.Do(func() { close(d.resolved) }) }

// AcceptTCP accepts the next connection of the shadow listener's queue,
// waiting until the shadow listens (a standby without steering listens once
// designated). Each call waits on a duplicate of the listener's fd of its
// own, so that ctx cancels only this call; close closes them all. The
// connection is a plain TCP net.Conn.
//
// Errors: ErrClosed once the member is closed; ctx.Err(); the errno of
// accept4(2).
func (d *Member) AcceptTCP(ctx context.Context) (net.Conn, error) {
	select {
	case <-d.tcp:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.ctx.Done():
		return nil, ErrClosed
	}
	f, err := d.cfg.Shadow.Dup()
	if err != nil {
		if errors.Is(err, shadow.ErrClosed) {
			return nil, ErrClosed
		}
		return nil, err
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		f.Close()
		return nil, ErrClosed
	}
	d.accepts[f] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.accepts, f)
		d.mu.Unlock()
		f.Close()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	nfd := -1
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			nfd, _, aerr = accept4(int(fd))
			if aerr != unix.ECONNABORTED && aerr != unix.EINTR {
				break
			}
		}
		return aerr != unix.EAGAIN
	})
	switch {
	case err != nil && ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return nil, ctx.Err()
	case err != nil && d.isClosed():
		// The file's error is internal/poll's ErrFileClosing.
		return nil, ErrClosed
	case err != nil:
		return nil, err
	case aerr != nil:
		return nil, fmt.Errorf("accept4 %s: %w", d.ap, aerr)
	}
	cf := os.NewFile(uintptr(nfd), "tcp:"+d.ap.String())
	c, err := net.FileConn(cf)
	cf.Close()
	return c, err
}

// Close leaves the election. A designated listener with a standby hands
// over first ("designate the successor, then close", docs/listen.md):
//
//  1. stop the background work and the pending accepts;
//  2. without steering, close the TCP listener (the successor must not
//     listen while it does: the kernel would share the requests between
//     the two);
//  3. drop the election lock, which the kernel grants to the standby; it
//     designates itself (with steering one map update switches the slots)
//     and waits for the rdma_cm lock. Close waits (handoverWait at most)
//     until the group's status shows the switch, or without steering until
//     the election lock is the standby's;
//  4. destroy the rdma_cm listening id and drop the rdma_cm lock: the
//     successor, woken by the kernel, listens on the freed port at once;
//     Close waits (handoverWait at most) until its read lock says it does,
//     and then rejects the requests still queued with the retry mark (the
//     clients dial again, and find the successor);
//  5. close the TCP listener if step 2 did not (its queue migrates to the
//     successor), drop the locks, leave the steering group.
//
// Otherwise it does 1, closes the rdma_cm listener (rejecting its queue)
// and does 5, which drops the rdma_cm lock with the others. The registry
// claim is the caller's. Safe twice.
func (d *Member) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.done)
	d.resolve()
	acc := make([]*os.File, 0, len(d.accepts))
	for f := range d.accepts {
		acc = append(acc, f)
	}
	d.mu.Unlock()
	d.cancel()
	for _, f := range acc {
		f.Close()
	}
	d.wg.Wait()
	// The background work is over: role and rdma are final.
	d.mu.Lock()
	role, rdma := d.role, d.rdma
	d.mu.Unlock()
	var errs []error
	tcpOpen := true
	handing := role == registry.RoleDesignated && d.hasStandby()
	if handing {
		if d.group == nil {
			errs = append(errs, d.cfg.Shadow.Close())
			tcpOpen = false
		}
		errs = append(errs, d.handOver())
	}
	if d.cfg.RDMA != nil {
		if handing && rdma {
			errs = append(errs, d.cfg.RDMA.Unlisten())
			off := rdmaOffset(d.ap)
			errs = append(errs, d.lf.unlock(off))
			awaitFor(handoverWait, func() bool {
				on, err := d.lf.readHeld(off)
				return on || err != nil
			})
		}
		errs = append(errs, d.cfg.RDMA.Close())
	}
	if tcpOpen {
		errs = append(errs, d.cfg.Shadow.Close())
	}
	errs = append(errs, d.lf.close())
	if d.group != nil {
		_, err := d.group.Release()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// handoverWait bounds each wait of a closing designated listener for its
// successor: to take the designated slot (or the election lock), then to
// listen in rdma_cm.
var handoverWait = 500 * time.Millisecond

// hasStandby reports whether a standby waits to take over: in the group's
// standby slot (with steering, while this socket is in the designated
// one), or holding the standby lock (without).
func (d *Member) hasStandby() bool {
	if d.group == nil {
		held, err := d.lf.held(listenOffset(d.ap, lockStandby))
		return held && err == nil
	}
	cookie, err := d.cfg.Shadow.Cookie()
	if err != nil {
		return false
	}
	st, err := d.group.Status()
	return err == nil && st.Designated == cookie && st.Standby != 0
}

// handOver is step 3 of Close: drop the election lock, which the kernel
// grants to the standby, and wait until the standby has designated itself:
// with steering, until the group's designated slot is no longer this
// socket's (from then on no new TCP request reaches it; closing while
// still designated would rely on the standby slot alone, and the requests
// of handshakes the closing socket had started then migrate lazily, which
// was seen to reset one connection in about half a million under a storm);
// without, until the election lock is the standby's.
func (d *Member) handOver() error {
	if err := d.lf.unlock(listenOffset(d.ap, lockElect)); err != nil {
		return err
	}
	if d.group == nil {
		awaitFor(handoverWait, func() bool {
			held, err := d.lf.held(listenOffset(d.ap, lockElect))
			return held || err != nil
		})
		return nil
	}
	cookie, err := d.cfg.Shadow.Cookie()
	if err != nil {
		return nil
	}
	awaitFor(handoverWait, func() bool {
		st, err := d.group.Status()
		return err != nil || st.Designated != cookie
	})
	return nil
}

// awaitFor polls done until it reports true or max passes. The other side
// takes tens of microseconds: it polls without sleeping for the first
// millisecond (a Go sleep that short can last a millisecond), then every
// 100 µs.
func awaitFor(max time.Duration, done func() bool) {
	start := time.Now()
	for !done() {
		switch el := time.Since(start); {
		case el > max:
			return
		case el < time.Millisecond:
			runtime.Gosched()
		default:
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// ShadowListens reports whether sh is listening (SO_ACCEPTCONN).
func ShadowListens(sh *shadow.Socket) bool {
	on := false
	sh.Control(func(fd int) error {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		on = err == nil && v != 0
		return nil
	})
	return on
}
