package bindcore

import (
	"sync"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// A bound socket's device (docs/lifecycle.md). When the RDMA device
// serving the socket's address goes away, its rdma_cm id is destroyed at
// once (package cmport), so that the kernel can finish the removal; the
// socket keeps its registry claim and kernel TCP reservation until Close,
// as a kernel socket bound to a vanished address stays bound. Meanwhile
// Endpoint reports the device as lost and Listen answers WSAENETDOWN. A
// designated listener keeps its TCP side and listens in rdma_cm again by
// itself when a device serving its address appears; a bound socket gets a
// new id then. WatchDevice reports each change.

// DeviceEvent is a change of the device under a socket: lost, or serving
// the socket again.
type DeviceEvent = cmport.DeviceEvent

// devWatchers are a socket's WatchDevice functions.
type devWatchers struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(DeviceEvent)
}

func (w *devWatchers) tell(ev DeviceEvent) {
	w.mu.Lock()
	fns := make([]func(DeviceEvent), 0, len(w.fns))
	for _, fn := range w.fns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// WatchDevice calls fn for each change of the device under the bound
// socket (lost; served again), from a goroutine of the library, until stop
// is called (safe twice) or the socket is closed. fn must not block.
//
// Errors: WSAENOTSOCK for a nil, zero or closed socket; WSAEINVAL when it
// is not bound.
func (s *Socket) WatchDevice(fn func(DeviceEvent)) (stop func(), err error) {
	if err := s.lock("watch device"); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if s.bound == nil {
		return nil, wsa.New(wsa.WSAEINVAL, "watch device", "socket", "the socket is not bound")
	}
	w := &s.bound.watch
	w.mu.Lock()
	if w.fns == nil {
		w.fns = map[int]func(DeviceEvent){}
	}
	k := w.next
	w.next++
	w.fns[k] = fn
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.fns, k)
		w.mu.Unlock()
	}, nil
}

// lostDevice is the device the socket's id was lost with, "" when none.
// The Socket's mu is held.
func (bd *binding) lostDevice() string {
	if bd.lis != nil {
		return bd.lis.cm.Lost()
	}
	return bd.port.Lost()
}
