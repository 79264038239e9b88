package qp

import (
	"container/list"
	"context"
	"fmt"
	"sync"
)

// setups are the connection setups a Listener runs at once, oldest first.
// Each holds a goroutine, its TCP connection or rdma_cm id and, once the
// peer's hello is in, a QP and its buffers, until it completes, fails or
// reaches its deadline. A peer that opens connections and never finishes
// them (sends nothing, half a hello, or disconnects halfway) would pile
// them up; at most max run, and one more pushes the oldest out (cancels
// its context, which ends it at once): the listener's memory and goroutines
// stay bounded, and a real peer, whose setup takes a few round trips, is
// not the oldest one for long.
type setups struct {
	max int
	mu  sync.Mutex
	l   list.List // of context.CancelCauseFunc
}

// errSetupsFull is the cause of a setup pushed out by newer ones.
type errSetupsFull int

func (e errSetupsFull) Error() string {
	return fmt.Sprintf("setup abandoned: %d newer setups under way (Options.MaxSetups)", int(e))
}

// start begins a setup under parent: its context, and done, to call when
// it ends. When max setups run already the oldest is cancelled.
func (s *setups) start(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	s.mu.Lock()
	for s.l.Len() >= s.max {
		old := s.l.Remove(s.l.Front()).(context.CancelCauseFunc)
		old(errSetupsFull(s.max))
	}
	e := s.l.PushBack(context.CancelCauseFunc(cancel))
	s.mu.Unlock()
	return ctx, func() {
		s.mu.Lock()
		s.l.Remove(e) // nothing if it was pushed out
		s.mu.Unlock()
		cancel(nil)
	}
}

// running is how many setups run now.
func (s *setups) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.l.Len()
}
