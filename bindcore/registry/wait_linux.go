package registry

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// waitPoll is how often Wait also rereads the awaited record, to see a
// release whose slot a new claim took before the waiter's lock request was
// granted.
const waitPoll = 5 * time.Millisecond

// Wait blocks until the claim rec describes has ended: released, or its
// process died (the kernel dropped its lock), or the registry's view of it
// is gone (the slot now holds another claim). rec is a record from List or
// Claim.Record; Slot, Generation and SocketID identify the claim.
//
// How: a goroutine, locked to its OS thread, asks for a read lock on the
// record's range through an open file description of its own with
// F_OFD_SETLKW. A read lock conflicts only with the claim's write lock, so
// the kernel grants it the moment the claim's lock goes, however the claim
// ended; other waiters (read locks too) do not delay each other. Wait then
// drops its lock and reclaims the record if it is still the stale claim, so
// that List no longer shows it, and returns nil. Measured wake-up after a
// SIGKILL of the holder: see docs/registry.md.
//
// Cancellation (ctx, or Close of the Registry) is real, not an abandoned
// goroutine: F_OFD_SETLKW cannot be interrupted by closing its fd, so Wait
// first replaces that fd, with dup3(2), by an O_PATH descriptor on which
// every lock request fails, then sends SIGURG to the blocked thread with
// tgkill(2). Go's signal handlers are SA_RESTART, so the kernel restarts the
// fcntl, which looks the fd up again and fails with EBADF. SIGURG is the
// signal the Go runtime itself uses for preemption; a program that watches
// SIGURG with signal.Notify sees these.
//
// Errors: ctx.Err() when ctx ends first; ErrClosed when the Registry is
// closed; ErrInvalid for a rec that is not a used record of this registry;
// an errno for a failing open(2) or fcntl(2).
func (r *Registry) Wait(ctx context.Context, rec Record) error {
	if rec.State != StateUsed || rec.Slot < 0 || rec.Slot >= r.count {
		return fmt.Errorf("registry: wait: %w: %v is not a used record of this registry", ErrInvalid, rec)
	}
	ended, err := r.ended(rec)
	if err != nil || ended {
		return err
	}
	w, err := r.startWaiter(rec.Slot)
	if err != nil {
		return err
	}
	defer r.finishWaiter(w)
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			if w.err != nil {
				if r.closed.Load() {
					return r.closedErr("wait")
				}
				return fmt.Errorf("registry: %s: wait on slot %d: F_OFD_SETLKW: %w", r.path, rec.Slot, w.err)
			}
			r.finishWaiter(w) // drop the read lock before reclaiming
			return r.reclaimIfStale(rec)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if ended, err := r.ended(rec); err != nil || ended {
				return err
			}
		}
	}
}

// ended reports whether the slot no longer holds the claim rec (it is free,
// or another claim's). An unreadable record has not ended: its lock tells.
func (r *Registry) ended(rec Record) (ended bool, err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	r.rw.RLock()
	defer r.rw.RUnlock()
	if r.closed.Load() {
		return false, r.closedErr("wait")
	}
	cur, _, rerr := r.read(rec.Slot)
	if rerr != nil {
		return false, nil
	}
	return !sameClaim(cur, rec), nil
}

func sameClaim(a, b Record) bool {
	return a.State == StateUsed && b.State == StateUsed && a.Generation == b.Generation && a.SocketID == b.SocketID
}

// reclaimIfStale frees rec's slot if it still holds rec and rec's lock is
// free.
func (r *Registry) reclaimIfStale(rec Record) (err error) {
	defer faultGuard(debug.SetPanicOnFault(true), &err)
	r.rw.RLock()
	defer r.rw.RUnlock()
	if r.closed.Load() {
		return nil // it ended all the same
	}
	cur, _, rerr := r.read(rec.Slot)
	if rerr != nil || !sameClaim(cur, rec) {
		return nil
	}
	live, _, err := r.probe(rec.Slot, cur)
	if err != nil || live {
		return err
	}
	return r.reclaim(rec.Slot, &cur)
}

// waiter is one blocked F_OFD_SETLKW on a slot's range.
type waiter struct {
	fd     int // the open file description the lock request is made through
	pathFD int // an O_PATH fd, dup3'd over fd to cancel
	tid    int // the OS thread blocked in fcntl
	done   chan struct{}
	err    error // valid after done: nil when the lock was granted

	cancelOnce sync.Once
	finishOnce sync.Once
}

func (r *Registry) startWaiter(slot int) (*waiter, error) {
	fd, err := r.openFD()
	if err != nil {
		return nil, err
	}
	pfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("registry: wait: open O_PATH: %w", err)
	}
	w := &waiter{fd: fd, pathFD: pfd, done: make(chan struct{})}
	started := make(chan struct{})
	off, n := slotRange(slot)
	go func() {
		runtime.LockOSThread()
		w.tid = unix.Gettid()
		close(started)
		err := ofdSet(fd, unix.F_RDLCK, off, n, true)
		runtime.UnlockOSThread()
		w.err = err
		close(w.done)
	}()
	<-started
	res := r.res
	res.waitMu.Lock()
	if res.waits == nil { // Close ran meanwhile
		res.waitMu.Unlock()
		w.finish()
		return nil, r.closedErr("wait")
	}
	res.waits[w] = struct{}{}
	res.waitMu.Unlock()
	return w, nil
}

func (r *Registry) finishWaiter(w *waiter) {
	w.finish()
	res := r.res
	res.waitMu.Lock()
	delete(res.waits, w)
	res.waitMu.Unlock()
}

// cancel makes the blocked lock request fail, if it is still blocked, and
// returns when the goroutine is done.
func (w *waiter) cancel() {
	w.cancelOnce.Do(func() {
		select {
		case <-w.done:
			return
		default:
		}
		for {
			err := unix.Dup3(w.pathFD, w.fd, unix.O_CLOEXEC)
			if err != unix.EINTR && err != unix.EBUSY {
				break
			}
		}
		pid := unix.Getpid()
		t := time.NewTimer(time.Millisecond)
		defer t.Stop()
		for {
			unix.Tgkill(pid, w.tid, unix.SIGURG)
			select {
			case <-w.done:
				return
			case <-t.C:
				t.Reset(time.Millisecond)
			}
		}
	})
}

// finish cancels the waiter if needed and closes its fds (dropping a granted
// lock). Safe to call twice.
func (w *waiter) finish() {
	w.finishOnce.Do(func() {
		w.cancel()
		unix.Close(w.fd)
		unix.Close(w.pathFD)
	})
}
