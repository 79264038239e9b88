package steer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WatchProcess returns a Watch that ends when process pid exits, by a pidfd
// on the Go netpoller (no thread is blocked while waiting). pid need not be
// a child of the caller.
//
// Errors: unix.ESRCH when there is no such process; the errno of
// pidfd_open(2) (unix.ENOSYS before Linux 5.3).
func WatchProcess(pid int) (Watch, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("steer watch pid %d: pidfd_open: %w", pid, err)
	}
	return &procWatch{pid: pid, f: os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))}, nil
}

// procWatch is a pidfd on the netpoller. Wait may be called again after it
// returns, but not concurrently.
type procWatch struct {
	pid  int
	mu   sync.Mutex
	f    *os.File
	done bool
}

func (w *procWatch) Wait(ctx context.Context) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("steer watch pid %d: %w", w.pid, err)
	}
	// Cancellation is a read deadline in the past; it is cleared again
	// before returning, so the next Wait starts afresh.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		w.f.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
			w.f.SetReadDeadline(time.Time{})
		}
	}()
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// A pidfd polls readable once the process has exited.
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		if err != nil && err != unix.EINTR {
			perr = err
			return true
		}
		return n > 0
	})
	switch {
	case perr != nil:
		return fmt.Errorf("steer watch pid %d: poll: %w", w.pid, perr)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("steer watch pid %d: %w", w.pid, err)
	}
	return nil
}

func (w *procWatch) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	return w.f.Close()
}

// TakeOver waits for w to report the designated listener gone and then
// designates s. With s in the standby slot (Standby) the kernel already
// sent the group's requests to s in between; without, requests in between
// were refused.
//
// Errors: ctx's error, or w's; those of Designate.
func (g *Group) TakeOver(ctx context.Context, w Watch, s Socket) error {
	if err := w.Wait(ctx); err != nil {
		return opError("take over", g.key, err)
	}
	return g.Designate(s)
}
