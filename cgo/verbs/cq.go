package verbs

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CQ is a completion queue with a completion channel of its own, whose
// descriptor is on the Go netpoller: Wait parks the goroutine, never an OS
// thread in C. It keeps its Context alive. Poll, Arm and Wait may run
// concurrently with each other; Close must come after the QPs using the CQ
// are destroyed.
type CQ struct {
	ctx *Context

	mu   sync.RWMutex
	h    handle // 0 once closed
	ch   handle
	file *os.File // a duplicate of the channel's fd, on the netpoller
	rc   syscall.RawConn
}

// NewCQ creates a completion queue of at least depth entries and its
// completion channel (ibv_create_comp_channel, ibv_create_cq).
//
// Errors: the errno of those calls (ENOMEM, EINVAL for a depth the device
// does not support), and of putting the fd on the netpoller.
func (c *Context) NewCQ(depth int) (*CQ, error) {
	ch, fd, err := impl.createCompChannel(c.h)
	if err != nil {
		return nil, fmt.Errorf("ibv_create_comp_channel %s: %w", c.name, err)
	}
	fail := func(what string, err error) (*CQ, error) {
		impl.destroyCompChannel(ch)
		return nil, fmt.Errorf("%s %s: %w", what, c.name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail("completion channel O_NONBLOCK", err)
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fail("completion channel dup", err)
	}
	file := os.NewFile(uintptr(dup), "ibv_comp_channel")
	rc, err := file.SyscallConn()
	if err == nil {
		err = file.SetReadDeadline(time.Time{}) // os.ErrNoDeadline: not pollable
	}
	if err != nil {
		file.Close()
		return fail("completion channel poll", err)
	}
	h, err := impl.createCQ(c.h, depth, ch)
	if err != nil {
		file.Close()
		return fail(fmt.Sprintf("ibv_create_cq depth %d", depth), err)
	}
	return &CQ{ctx: c, h: h, ch: ch, file: file, rc: rc}, nil
}

func (cq *CQ) handle() handle {
	cq.mu.RLock()
	defer cq.mu.RUnlock()
	return cq.h
}

// Poll copies up to len(out) (at most 32) completions into out
// (ibv_poll_cq) and returns how many; 0 when none is there.
//
// Errors: ErrClosed, EIO when ibv_poll_cq fails.
func (cq *CQ) Poll(out []WC) (int, error) {
	cq.mu.RLock()
	defer cq.mu.RUnlock()
	if cq.h == nil {
		return 0, fmt.Errorf("ibv_poll_cq: %w", ErrClosed)
	}
	return impl.poll(cq.h, out)
}

// PollSpin is Poll busy-polling for up to d (at most 1 ms per call) in C,
// until a completion is there: it spins without entering the Go scheduler
// between polls, as a C program's poll loop does. It returns 0 when d
// passed without one.
//
// Errors: as Poll.
func (cq *CQ) PollSpin(out []WC, d time.Duration) (int, error) {
	cq.mu.RLock()
	defer cq.mu.RUnlock()
	if cq.h == nil {
		return 0, fmt.Errorf("ibv_poll_cq: %w", ErrClosed)
	}
	return impl.pollSpin(cq.h, out, min(d, time.Millisecond).Nanoseconds())
}

// PollArm is Poll, then, when nothing was there, Arm and Poll again: the
// step before Wait, in one call into C.
//
// Errors: as Poll and Arm.
func (cq *CQ) PollArm(out []WC) (int, error) {
	cq.mu.RLock()
	defer cq.mu.RUnlock()
	if cq.h == nil {
		return 0, fmt.Errorf("ibv_poll_cq: %w", ErrClosed)
	}
	n, err := impl.pollArm(cq.h, out)
	if err != nil {
		return 0, fmt.Errorf("ibv_req_notify_cq: %w", err)
	}
	return n, nil
}

// WaitPoll is Wait followed by Poll, in one call into C once the event is
// there. It may return 0 completions (an event of an earlier Arm): arm
// again (PollArm) before the next WaitPoll.
//
// Errors: as Wait and Poll.
func (cq *CQ) WaitPoll(out []WC) (int, error) {
	if len(out) == 0 {
		return 0, nil
	}
	cq.mu.RLock()
	ch, h := cq.ch, cq.h
	cq.mu.RUnlock()
	if h == nil {
		return 0, fmt.Errorf("ibv_get_cq_event: %w", ErrClosed)
	}
	var n int
	var evErr error
	err := cq.rc.Read(func(uintptr) bool {
		cq.mu.RLock()
		defer cq.mu.RUnlock()
		if cq.h == nil {
			evErr = ErrClosed
			return true
		}
		n, evErr = impl.eventPoll(ch, cq.h, out)
		return evErr != unix.EAGAIN
	})
	switch {
	case err == nil && evErr == nil:
		return n, nil
	case err == nil:
		return 0, fmt.Errorf("ibv_get_cq_event: %w", evErr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, fmt.Errorf("ibv_get_cq_event: %w", os.ErrDeadlineExceeded)
	case errors.Is(err, os.ErrClosed):
		return 0, fmt.Errorf("ibv_get_cq_event: %w", ErrClosed)
	default:
		return 0, fmt.Errorf("ibv_get_cq_event: %w", err)
	}
}

// Arm asks for an event on the completion channel at the next completion
// (ibv_req_notify_cq). Poll once more after Arm before Wait: a completion
// that came in between raises no event.
//
// Errors: ErrClosed, the errno of ibv_req_notify_cq.
func (cq *CQ) Arm() error {
	cq.mu.RLock()
	defer cq.mu.RUnlock()
	if cq.h == nil {
		return fmt.Errorf("ibv_req_notify_cq: %w", ErrClosed)
	}
	if err := impl.reqNotify(cq.h); err != nil {
		return fmt.Errorf("ibv_req_notify_cq: %w", err)
	}
	return nil
}

// SetDeadline bounds Wait (the zero time: no bound), also a Wait already
// waiting.
func (cq *CQ) SetDeadline(t time.Time) error {
	return cq.file.SetReadDeadline(t)
}

// Wait waits for an event of an armed CQ on the completion channel (on the
// netpoller), and reads and acknowledges it (ibv_get_cq_event,
// ibv_ack_cq_events).
//
// Errors: os.ErrDeadlineExceeded past the deadline, ErrClosed (also when
// Close ends the wait), the errno of ibv_get_cq_event.
func (cq *CQ) Wait() error {
	cq.mu.RLock()
	ch := cq.ch
	closed := cq.h == nil
	cq.mu.RUnlock()
	if closed {
		return fmt.Errorf("ibv_get_cq_event: %w", ErrClosed)
	}
	var evErr error
	err := cq.rc.Read(func(uintptr) bool {
		// One event is enough: a CQ raises one per Arm. Another one
		// queued (from an earlier Arm) leaves the fd readable, so the
		// next Wait returns at once, and its caller polls again.
		err := impl.getCQEvent(ch)
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			evErr = err
		}
		return true
	})
	switch {
	case err == nil && evErr == nil:
		return nil
	case err == nil:
		return fmt.Errorf("ibv_get_cq_event: %w", evErr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("ibv_get_cq_event: %w", os.ErrDeadlineExceeded)
	case errors.Is(err, os.ErrClosed):
		return fmt.Errorf("ibv_get_cq_event: %w", ErrClosed)
	default:
		return fmt.Errorf("ibv_get_cq_event: %w", err)
	}
}

// Close destroys the CQ and its completion channel (ibv_destroy_cq,
// ibv_destroy_comp_channel), ending a Wait. Destroy the QPs using it first.
// Safe to call more than once.
//
// Errors: the errno of ibv_destroy_cq (EBUSY while a QP uses it; the CQ then
// stays open and Close may be called again).
func (cq *CQ) Close() error {
	cq.file.Close() // wakes a Wait, which then sees h == nil or the closed file
	cq.mu.Lock()
	defer cq.mu.Unlock()
	if cq.h == nil {
		return nil
	}
	if err := impl.destroyCQ(cq.h); err != nil {
		return fmt.Errorf("ibv_destroy_cq: %w", err)
	}
	cq.h = nil
	var err error
	if e := impl.destroyCompChannel(cq.ch); e != nil {
		err = fmt.Errorf("ibv_destroy_comp_channel: %w", e)
	}
	return err
}
