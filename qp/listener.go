package qp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
)

// Listener accepts connections on a listening socket, over rdma_cm and
// over the TCP rendezvous at once: both reach the designated listener of
// the port (rdma_cm requests through its listening id, TCP connections
// through the steering), so a standby's Listener accepts once it has taken
// over.
type Listener struct {
	ep   bindcore.Endpoint
	opts Options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	conns  chan *Conn
	errs   chan error
	setups setups

	closeOnce sync.Once
}

// NewListener starts accepting on s, which must be listening
// (Socket.Listen). Handshakes run in the background; Accept returns the
// connections that completed them. A connect request or TCP connection
// that is not an rdmabind qp peer (bad hello) is refused.
//
// Errors: those of s.Endpoint and s.ListenState (WSAENOTSOCK, WSAEINVAL
// when s is not listening).
func NewListener(s *bindcore.Socket, o *Options) (*Listener, error) {
	ep, err := s.Endpoint()
	if err != nil {
		return nil, fmt.Errorf("qp listen: %w", err)
	}
	if _, err := s.ListenState(); err != nil {
		return nil, fmt.Errorf("qp listen %v: %w", ep.Local, err)
	}
	l := newListener(ep, o.withDefaults())
	l.wg.Add(2)
	go acceptLoop(l, "cm", s.AcceptRDMA, func(ctx context.Context, req bindcore.RDMARequest) (*Conn, error) {
		return acceptCM(ctx, ep.Local, req, l.opts)
	})
	go acceptLoop(l, "tcp", s.AcceptTCP, func(ctx context.Context, tc net.Conn) (*Conn, error) {
		return acceptRendezvous(ctx, ep, tc, l.opts, openVerbsQP)
	})
	return l, nil
}

// newListener is a Listener with no accept loop yet: NewListener starts
// one per transport (acceptLoop), the tests their own.
func newListener(ep bindcore.Endpoint, o Options) *Listener {
	l := &Listener{ep: ep, opts: o, conns: make(chan *Conn, 64), errs: make(chan error, 64), setups: setups{max: o.MaxSetups}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// deliver hands a connection to Accept, or a failed handshake to
// SetupErrors: when 64 wait there, the oldest is dropped for it.
func (l *Listener) deliver(c *Conn, err error) {
	for err != nil {
		select {
		case l.errs <- err:
			return
		default:
		}
		select {
		case <-l.errs:
		default:
		}
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

func (l *Listener) setupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(l.ctx, l.opts.SetupTimeout)
}

// acceptLoop takes what next receives (an rdma_cm connect request or a TCP
// connection) until the Listener closes or next says that the socket
// accepts no more (socketGone), and runs each one's handshake (setup) in
// its own goroutine under the setup timeout, at most Options.MaxSetups at
// once (of both transports; one more cancels the oldest, see setups). Any other error of next
// (EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, a timeout, ...) is
// reported on SetupErrors and next is tried again after a pause, 5 ms
// doubling up to 1 s, as net/http's Server does: a passing shortage of
// fds must not end accepting for the Listener's life.
func acceptLoop[T any](l *Listener, mode string, next func(context.Context) (T, error), setup func(context.Context, T) (*Conn, error)) {
	defer l.wg.Done()
	var pause time.Duration
	for {
		in, err := next(l.ctx)
		if err != nil {
			if l.ctx.Err() != nil || socketGone(err) {
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.deliver(nil, fmt.Errorf("qp accept %s on %v: %w (retrying in %v)", mode, l.ep.Local, err, pause))
			t := time.NewTimer(pause)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		pause = 0
		ctx, cancel := l.setupCtx()
		ctx, done := l.setups.start(ctx)
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer cancel()
			defer done()
			c, err := setup(ctx, in)
			if err != nil {
				var full errSetupsFull
				if cause := context.Cause(ctx); errors.As(cause, &full) {
					err = fmt.Errorf("%w (%w)", cause, err)
				}
				err = fmt.Errorf("qp accept %s on %v: %w", mode, l.ep.Local, err)
			}
			l.deliver(c, err)
		}()
	}
}

// socketGone reports whether an accept error says that the socket will
// accept nothing more: it was closed (net.ErrClosed, WSAENOTSOCK) or is not
// listening (WSAEINVAL, EINVAL).
func socketGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, unix.ENOTSOCK) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EBADF)
}

// Accept returns the next connection, over either transport.
//
// Errors: ErrClosed after Close, ctx.Err().
func (l *Listener) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("qp accept %v: %w", l.ep.Local, ctx.Err())
	case <-l.ctx.Done():
		return nil, fmt.Errorf("qp accept %v: %w", l.ep.Local, ErrClosed)
	}
}

// SetupErrors returns a channel of the handshakes that failed, and of the
// accepts that failed and are retried (EMFILE, say), for diagnostics: the
// last 64 at most; older ones are dropped.
func (l *Listener) SetupErrors() <-chan error { return l.errs }

// Close stops accepting, waits for the handshakes under way and closes the
// connections nobody accepted. The socket stays listening; connections
// already accepted stay open. Safe to call more than once.
//
// Errors: those of closing the connections nobody accepted, joined (first
// call only).
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.cancel()
		l.wg.Wait()
		var errs []error
		for {
			select {
			case c := <-l.conns:
				errs = append(errs, c.Close())
				continue
			default:
			}
			break
		}
		err = errors.Join(errs...)
	})
	return err
}
