package bindcore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// RDMARequest is an rdma_cm connection request received by a listening
// socket.
type RDMARequest struct {
	// ID is the new rdma_cm id librdmacm created for the connection, on the
	// Binder's event channel. The receiver owns it and must Close it;
	// closing it without accepting rejects the request.
	ID *rdmacm.ID
	// PrivateData is what the client sent with the request (nil if
	// nothing).
	PrivateData []byte
}

// cmEvents hands out the events of the Binder's one rdma_cm event channel:
// a connect request goes to the queue of the listening id it names
// (Event.Listener), and is rejected when no socket listens on that id any
// more or its queue is full. The loop runs from the first listening id
// until the channel closes. Other events are dropped: they can only be for
// the ids of connection requests not yet accepted, because a connection
// (package qp) moves its id to an event channel of its own
// (rdmacm.ID.Migrate) before it accepts, and dialled ids are created on the
// connection's channel; its ESTABLISHED, DISCONNECTED, DEVICE_REMOVAL, ...
// never reach this loop (see docs/qp.md).
type cmEvents struct {
	mu      sync.Mutex
	routes  map[*rdmacm.ID]chan RDMARequest
	running bool
	done    chan struct{}
}

// route sends id's connect requests to q, and starts the loop if needed.
func (b *Binder) route(id *rdmacm.ID, q chan RDMARequest) {
	ev := &b.events
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.routes == nil {
		ev.routes = map[*rdmacm.ID]chan RDMARequest{}
	}
	ev.routes[id] = q
	if !ev.running {
		ev.running = true
		ev.done = make(chan struct{})
		go b.eventLoop(ev.done)
	}
}

// unroute stops sending id's requests anywhere: from its return on, no
// request is put in the queue it had.
func (b *Binder) unroute(id *rdmacm.ID) {
	ev := &b.events
	ev.mu.Lock()
	delete(ev.routes, id)
	ev.mu.Unlock()
}

func (b *Binder) eventLoop(done chan struct{}) {
	defer close(done)
	ev := &b.events
	for {
		e, err := b.ch.GetEvent(context.Background())
		if err != nil {
			if errors.Is(err, rdmacm.ErrClosed) {
				return
			}
			// ENOMEM, or ENODEV after a device removal: the channel is
			// still there; do not spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if e.Type != rdmacm.EventConnectRequest || e.ID == nil {
			continue
		}
		sent := false
		ev.mu.Lock()
		if q := ev.routes[e.Listener]; q != nil {
			select {
			case q <- RDMARequest{ID: e.ID, PrivateData: e.PrivateData}:
				sent = true
			default: // the backlog is full
			}
		}
		ev.mu.Unlock()
		if !sent {
			e.ID.Close()
		}
	}
}

// waitEvents waits for the loop to end (after the channel is closed).
func (b *Binder) waitEvents() {
	ev := &b.events
	ev.mu.Lock()
	done := ev.done
	ev.mu.Unlock()
	if done != nil {
		<-done
	}
}
