package cmport

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// Request is an rdma_cm connection request received by a listening
// socket.
// RetryData is the private data of a reject that means "try again": a
// listener that closes rejects the requests it had not handed out with
// it, while its standby takes the port over, and qp's Dial, seeing it,
// dials again within its deadline (docs/netapi.md, "Graceful restart").
var RetryData = []byte("rdmabind:retry")

// Request is an rdma_cm connection request routed to a listener.
type Request struct {
	// ID is the new rdma_cm id librdmacm created for the connection, on the
	// Binder's event channel. The receiver owns it and must Close it;
	// closing it without accepting rejects the request.
	ID *rdmacm.ID
	// PrivateData is what the client sent with the request (nil if
	// nothing).
	PrivateData []byte
}

// Dispatcher hands out the events of a Binder's one rdma_cm event channel:
// a connect request goes to the queue of the listening id it names
// (Event.Listener), and is rejected when no socket listens on that id any
// more or its queue is full. The loop runs from the first listening id
// until the channel closes. Other events are dropped: they can only be for
// the ids of connection requests not yet accepted, because a connection
// (package qp) moves its id to an event channel of its own
// (rdmacm.ID.Migrate) before it accepts, and dialled ids are created on the
// connection's channel; its ESTABLISHED, DISCONNECTED, DEVICE_REMOVAL, ...
// never reach this loop (see docs/qp.md).
type Dispatcher struct {
	ch      *rdmacm.EventChannel
	mu      sync.Mutex
	routes  map[*rdmacm.ID]chan Request
	running bool
	done    chan struct{}
}

// NewDispatcher returns the dispatcher of ch's connect requests. Its loop
// ends when ch is closed (Wait waits for that).
func NewDispatcher(ch *rdmacm.EventChannel) *Dispatcher { return &Dispatcher{ch: ch} }

// route sends id's connect requests to q, and starts the loop if needed.
func (ev *Dispatcher) route(id *rdmacm.ID, q chan Request) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.routes == nil {
		ev.routes = map[*rdmacm.ID]chan Request{}
	}
	ev.routes[id] = q
	if !ev.running {
		ev.running = true
		ev.done = make(chan struct{})
		go ev.loop(ev.done)
	}
}

// unroute stops sending id's requests anywhere: from its return on, no
// request is put in the queue it had.
func (ev *Dispatcher) unroute(id *rdmacm.ID) {
	ev.mu.Lock()
	delete(ev.routes, id)
	ev.mu.Unlock()
}

func (ev *Dispatcher) loop(done chan struct{}) {
	defer close(done)
	for {
		e, err := ev.ch.GetEvent(context.Background())
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
			case q <- Request{ID: e.ID, PrivateData: e.PrivateData}:
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

// Wait waits for the loop to end (after the channel is closed).
func (ev *Dispatcher) Wait() {
	ev.mu.Lock()
	done := ev.done
	ev.mu.Unlock()
	if done != nil {
		<-done
	}
}
