package qp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
)

// Dial connects the bound socket s to remote, a listening socket's address
// and port, in o.Mode (nil o: rdma_cm with the defaults). Several sockets
// bound to one address and port dial independently; each connection is its
// own (the spec's outgoing sharing). The socket stays bound and may dial
// again; closing it does not close its connections.
//
// A listener that closes while its standby takes the port over rejects
// with bindcore.RetryRejectData; Dial then dials again (1 ms, 2 ms, ... up
// to 50 ms apart) within ctx's deadline, so that a graceful restart of a
// server loses no connection (docs/netapi.md). A request that finds no
// listener at all (the peer's reject reason 8: between the closing
// listener's id and its successor's rdma_listen, or nothing listens) is
// dialled again the same way for Options.RefusedRetry (500 ms by default)
// before Dial gives up with ECONNREFUSED.
//
// In ModeCM the connecting rdma_cm id is bound to the socket's address and
// a port of its own (rdma_cm's source port), not the socket's port: see
// docs/qp.md for why. The peer learns the socket's port from the hello
// (Conn.RemoteAddr). In ModeTCP the rendezvous TCP connection comes from
// the socket's own address and port.
//
// Errors (wrapped with "qp dial", the mode and the addresses):
//   - the socket's WSAENOTSOCK / WSAEINVAL (not bound) from Endpoint;
//   - unix.EINVAL for an invalid remote or mode;
//   - unix.ECONNREFUSED: rejected (nothing listens there in rdma_cm for
//     RefusedRetry, or the listener refused) or refused by TCP;
//   - unix.ETIMEDOUT, unix.EHOSTUNREACH, ctx.Err(): resolution or
//     connection did not complete;
//   - unix.EADDRNOTAVAIL (ModeTCP): a connection between these two
//     addresses and ports exists already;
//   - ErrProtocol: the peer is not an rdmabind qp listener;
//   - ErrNotSupported (built without cgo), and the errnos of the verbs
//     and rdma_cm calls (ENOMEM, ENODEV, ...).
func Dial(ctx context.Context, s *bindcore.Socket, remote netip.AddrPort, o *Options) (*Conn, error) {
	opts := o.withDefaults()
	op := fmt.Sprintf("qp dial %s -> %v", opts.Mode, remote)
	ep, err := s.Endpoint()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	op = fmt.Sprintf("qp dial %s %v -> %v", opts.Mode, ep.Local, remote)
	if !remote.IsValid() || remote.Port() == 0 {
		return nil, fmt.Errorf("%s: invalid remote address: %w", op, unix.EINVAL)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.SetupTimeout)
		defer cancel()
	}
	var c *Conn
	switch opts.Mode {
	case ModeCM:
		// A listener that closes rejects with "dial again" while its
		// standby takes over, and between the two ids no listener
		// answers: dial again, pausing 1 ms, then longer, up to 50 ms,
		// within the deadline (and for want of a listener, within
		// RefusedRetry of the first such refusal).
		tries := 0
		var refused time.Time
		for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
			tries++
			c, err = dialCM(ctx, ep, remote, opts)
			if err == nil {
				c.tries = tries
			}
			if errors.As(err, new(*refusedError)) {
				if refused.IsZero() {
					refused = time.Now()
				}
				if opts.RefusedRetry < 0 || time.Since(refused) >= opts.RefusedRetry {
					break
				}
			} else if !errors.As(err, new(*retryError)) {
				break
			}
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			if ctx.Err() != nil {
				// Out of time while the listener kept asking: the
				// dial did not complete (ctx.Err()), and was refused.
				err = fmt.Errorf("%w: %w", ctx.Err(), err)
				break
			}
		}
	case ModeTCP:
		c, err = dialRendezvous(ctx, ep, remote, opts, openVerbsQP)
		if err == nil {
			c.tries = 1
		}
	default:
		return nil, fmt.Errorf("%s: mode %d: %w", op, opts.Mode, unix.EINVAL)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return c, nil
}

// timeoutOf is the rdma_cm resolve timeout: what is left of ctx.
func timeoutOf(ctx context.Context, o Options) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return o.SetupTimeout
}
