package rdmacm

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The device lifecycle of the process. A device that goes away (rdma link
// delete, its netdev unregistered, a driver reset) can only finish going
// once every process that touched it has let go of it: with a driver that
// cannot disassociate its user contexts (rxe), the kernel's uverbs waits
// until every file of the device is closed. librdmacm holds one: the
// context it opened for the device, which it closes only once it has seen
// the device gone from the device list (rdma_get_devices re-reads it) and
// no id uses it any more. And it never marks the last device gone (its
// list sync gives up on an empty list).
//
// So this package, which owns the ids, does in every process that uses it:
//
//   - it learns of a loss from an RDMA_CM_EVENT_DEVICE_REMOVAL on any id, and
//     from the device's uverbs node leaving /dev/infiniband (the kernel
//     removes it before it waits, whatever the order of its clients), so
//     that a process with no id on the device (only a wildcard, or nothing
//     open any more) lets go too;
//   - it tells the subscribers (WatchDevices: bindcore's Binders, qp's
//     connections), which destroy their ids, QPs, CQs, MRs and PDs of the
//     device;
//   - once no id of the process is left on the device, it points the
//     descriptors of librdmacm's context of the device (the deleted uverbs
//     node, and the context's async event file) at /dev/null
//     (devices_linux.go): the kernel sees the files closed; librdmacm keeps
//     its context structure, which no id reaches any more (a new device has
//     a new index), and frees it, closing /dev/null, when it next re-reads
//     its device list (when an id meets a device it does not know).
//
// It does not ask librdmacm to re-read its list itself (rdma_get_devices):
// that opens a context of every device, and under device removals it
// deadlocked librdmacm 44 in the guests (a thread waiting on librdmacm's
// global mutex that it held itself, TestDeviceChaos).
//
// A device that appears (its uverbs node is created) is reported too, so
// that listeners can listen on it again.

// DeviceEvent is a change of an RDMA device of the host.
type DeviceEvent struct {
	// Device is the device's name ("rxe0", "mlx5_0"); "" when the loss of
	// a device this process never used was seen only by its uverbs node.
	Device string
	// Lost is true when the device is going away, false when it appeared.
	Lost bool
}

// devHub is the process's device bookkeeping.
type devHub struct {
	mu      sync.Mutex
	started bool
	subs    map[int]func(DeviceEvent)
	nextSub int
	ids     map[string]int  // live ids per device
	lost    map[string]bool // devices lost and not back
	// released: lost devices whose files the process has let go; any
	// uverbs node created after that ends their loss (a device cannot come
	// back before its removal is complete, which needed that release).
	released map[string]bool
	fds      map[string][]ctxFDs // librdmacm's contexts of each device seen
	idle     chan struct{}       // signalled when a lost device's last id goes
	trace    string              // the last release attempt, for DeviceState
	history  []string            // the last changes, for DeviceState
}

// note records a change for DeviceState; h.mu held.
func (h *devHub) note(format string, args ...any) {
	if len(h.history) == 16 {
		h.history = h.history[1:]
	}
	h.history = append(h.history, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

var hub = devHub{subs: map[int]func(DeviceEvent){}, ids: map[string]int{}, lost: map[string]bool{}, released: map[string]bool{}, fds: map[string][]ctxFDs{}, idle: make(chan struct{}, 1)}

// WatchDevices calls fn for every device lost or appearing from now on,
// from one goroutine of the package, one call at a time, until stop is
// called (safe twice; after it returns fn is not called again). fn must not
// block: it should start what it does. A loss is reported once per
// device, however it was seen.
func WatchDevices(fn func(DeviceEvent)) (stop func()) {
	hub.mu.Lock()
	k := hub.nextSub
	hub.nextSub++
	hub.subs[k] = fn
	hub.mu.Unlock()
	hub.start()
	return func() {
		hub.mu.Lock()
		delete(hub.subs, k)
		hub.mu.Unlock()
	}
}

// DeviceLost reports whether the device named name was lost and has not
// appeared again.
func DeviceLost(name string) bool {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	return hub.lost[name]
}

// start starts the watcher of the uverbs nodes, once.
func (h *devHub) start() {
	h.mu.Lock()
	if h.started {
		h.mu.Unlock()
		return
	}
	h.started = true
	h.mu.Unlock()
	// Once start returns, the watcher holds its descriptor (tests count
	// descriptors).
	ready := make(chan struct{})
	go watchNodes(ready, h.lostNode, h.nodeCreated, h.added)
	<-ready
}

// noteID counts st's id as one on its device, once it has one. An id that
// lands on a device lost and not yet released (the kernel still unregisters
// it) is refused: it is not counted and noteID returns an error matching
// unix.ENETDOWN; its caller fails the operation and the id is destroyed, so
// that nothing new is made on the device while the process lets go of it.
// An id on a device released already is on a new device of the same name
// (the old one left the kernel's rdma_cm before its files could be let
// go): the loss is over.
func (h *devHub) noteID(st *idState, o idOps) error {
	if st.dev != "" {
		return nil
	}
	name, _ := o.device()
	if name == "" {
		return nil
	}
	fds, ok := o.contextFDs()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost[name] {
		if !h.released[name] {
			h.note("refused an id on %s (being removed)", name)
			return &LostError{Device: name}
		}
		delete(h.lost, name)
		delete(h.released, name)
		h.note("an id on a new %s", name)
	}
	st.dev = name
	if ok {
		st.ino = fds.ino
	}
	h.ids[name]++
	if ok && !slices.Contains(h.fds[name], fds) {
		h.fds[name] = append(h.fds[name], fds)
		h.note("context %v", fds)
	}
	return nil
}

// LostError is the error of an rdma_cm operation that found its device
// being removed; it matches unix.ENETDOWN.
type LostError struct {
	Device string
}

func (e *LostError) Error() string {
	return "RDMA device " + e.Device + " is being removed"
}

func (e *LostError) Unwrap() error { return unix.ENETDOWN }

// dropID uncounts a closed id.
func (h *devHub) dropID(dev string) {
	if dev == "" {
		return
	}
	h.mu.Lock()
	h.ids[dev]--
	signal := h.lost[dev] && h.ids[dev] <= 0
	if h.ids[dev] <= 0 {
		delete(h.ids, dev)
	}
	h.mu.Unlock()
	if signal {
		select {
		case h.idle <- struct{}{}:
		default:
		}
	}
}

func (h *devHub) publish(ev DeviceEvent) {
	h.mu.Lock()
	fns := make([]func(DeviceEvent), 0, len(h.subs))
	for _, fn := range h.subs {
		fns = append(fns, fn)
	}
	h.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// removal is an RDMA_CM_EVENT_DEVICE_REMOVAL for an id on dev, whose
// context's uverbs node has inode ino (0: unknown). A removal read late,
// after its device was released and added again (same name, a new node),
// is stale: the new device is not lost.
func (h *devHub) removal(dev string, ino uint64) {
	h.start()
	h.mu.Lock()
	stale := ino != 0 && !h.lost[dev] && !slices.ContainsFunc(h.fds[dev], func(c ctxFDs) bool { return c.ino == ino })
	h.note("removal %s (inode %d), stale %v", dev, ino, stale)
	h.mu.Unlock()
	if !stale {
		go h.lostDevice(dev)
	}
}

// lostNode is the watcher's report of a uverbs node gone; dev is the
// device it served ("" if unknown).
func (h *devHub) lostNode(dev string) { h.lostDevice(dev) }

// lostDevice handles the loss of dev, once per loss.
func (h *devHub) lostDevice(dev string) {
	h.mu.Lock()
	if dev != "" && h.lost[dev] {
		h.mu.Unlock()
		return
	}
	if dev != "" {
		h.lost[dev] = true
	}
	h.note("lost %q", dev)
	h.mu.Unlock()
	h.publish(DeviceEvent{Device: dev, Lost: true})
	// Once no id of the process is left on the lost device, release the
	// uverbs files librdmacm keeps of it.
	go h.releaseLost()
}

// releaseLimit bounds how long releaseLost waits for the subscribers to
// destroy their ids.
const releaseLimit = 30 * time.Second

func (h *devHub) releaseLost() {
	end := time.Now().Add(releaseLimit)
	for {
		h.mu.Lock()
		busy := 0
		for dev := range h.lost {
			busy += h.ids[dev]
		}
		var ctxs []ctxFDs
		var devs []string
		keep := map[uint64]bool{}
		if busy == 0 {
			for dev := range h.lost {
				ctxs = append(ctxs, h.fds[dev]...)
				devs = append(devs, dev)
			}
			for dev, cs := range h.fds {
				if !h.lost[dev] {
					for _, c := range cs {
						keep[c.ino] = true
					}
				}
			}
		}
		h.mu.Unlock()
		// The kernel's rdma_cm side may report the loss before uverbs has
		// removed the device's node: a context is released once its node
		// is deleted (until then it may still be a live device's).
		pending := -1
		if busy == 0 {
			pending = releaseDeletedNodes(ctxs, keep)
		}
		h.mu.Lock()
		h.trace = fmt.Sprintf("%s: ids %d, contexts %v, pending %d", time.Now().Format("15:04:05.000"), busy, ctxs, pending)
		h.mu.Unlock()
		if pending == 0 {
			// Forget exactly the contexts released: a device added again
			// meanwhile may have a new context of the same name (and even
			// the same descriptor numbers, told apart by the inode), which
			// is not lost.
			h.mu.Lock()
			for _, dev := range devs {
				h.fds[dev] = slices.DeleteFunc(h.fds[dev], func(c ctxFDs) bool { return slices.Contains(ctxs, c) })
				if len(h.fds[dev]) == 0 {
					delete(h.fds, dev)
				}
				if h.lost[dev] {
					h.released[dev] = true
				}
			}
			h.note("released %v", ctxs)
			h.mu.Unlock()
			return
		}
		if time.Now().After(end) {
			return
		}
		select {
		case <-h.idle:
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// nodeCreated is the watcher's report of a uverbs node that appeared,
// before it knows its device: the losses already released are over.
func (h *devHub) nodeCreated() {
	h.mu.Lock()
	for dev := range h.released {
		delete(h.lost, dev)
		delete(h.released, dev)
	}
	h.note("node created")
	h.mu.Unlock()
}

// added is the watcher's report of a device that appeared.
func (h *devHub) added(dev string) {
	h.mu.Lock()
	delete(h.lost, dev)
	delete(h.released, dev)
	h.note("added %s", dev)
	h.mu.Unlock()
	// librdmacm learns of it when an id needs it (its list sync on a
	// device it does not know), not before: a re-read here would open a
	// context of every device in every process.
	h.publish(DeviceEvent{Device: dev})
}

// DeviceState describes the process's view of the device named name: its
// ids, whether it is lost, and the last release attempt (diagnostics).
func DeviceState(name string) string {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	return fmt.Sprintf("%s: %d ids, lost %v, released %v, contexts %v; last release: %s; history: %s", name, hub.ids[name], hub.lost[name], hub.released[name], hub.fds[name], hub.trace, strings.Join(hub.history, "; "))
}

// IDsOn returns how many ids of this process are on the device named name
// (open ids whose device it is); what keeps a lost device's context from
// being released.
func IDsOn(name string) int {
	hub.mu.Lock()
	defer hub.mu.Unlock()
	return hub.ids[name]
}
