package registry

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/ofdlock"
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
// How: a goroutine asks for a read lock on the record's range through an
// open file description of its own, waiting for it (ofdlock.Wait, on a
// locked OS thread). A read lock conflicts only with the claim's write lock, so
// the kernel grants it the moment the claim's lock goes, however the claim
// ended; other waiters (read locks too) do not delay each other. Wait then
// drops its lock and reclaims the record if it is still the stale claim, so
// that List no longer shows it, and returns nil. Measured wake-up after a
// SIGKILL of the holder: see docs/registry.md.
//
// Cancellation (ctx, or Close of the Registry) is real, not an abandoned
// goroutine: it is ofdlock.Wait's (dup3(2) of an O_PATH descriptor over
// the waiting fd, then SIGURG to the blocked thread; internal/ofdlock says
// why that works). A program that watches SIGURG with signal.Notify sees
// these signals.
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
				return fmt.Errorf("registry: %s: wait on slot %d: lock: %w", r.path, rec.Slot, w.err)
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

// waiter is one blocked lock request (ofdlock.Wait) on a slot's range.
type waiter struct {
	fd     int                // the waiter's own open file description
	cancel context.CancelFunc // ends the request
	done   chan struct{}      // closed once the request returned
	err    error              // valid after done: nil when the lock was granted

	finishOnce sync.Once
}

func (r *Registry) startWaiter(slot int) (*waiter, error) {
	fd, err := r.openFD()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &waiter{fd: fd, cancel: cancel, done: make(chan struct{})}
	off, n := slotRange(slot)
	go func() {
		w.err = ofdlock.Wait(ctx, fd, ofdlock.Read, off, n)
		close(w.done)
	}()
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

// finish cancels the lock request if it is still blocked, waits until it
// returned, and closes the waiter's fd (dropping a granted lock). Safe to
// call twice.
func (w *waiter) finish() {
	w.finishOnce.Do(func() {
		w.cancel()
		<-w.done
		unix.Close(w.fd)
	})
}
