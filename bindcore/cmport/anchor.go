package cmport

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/election"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// The rdma_cm anchor of a port. rdma_cm lets several ids bind one address
// and port only while none of them listens (rdma_listen re-checks the port
// without REUSEADDR), and hands a connect request to the first id on the
// port that matches it, aborting it if that id does not listen. So once a
// socket listens on an address and port, its listening id must be the only
// rdma_cm id there: the other rdmabind sockets sharing the port give theirs
// up ("park" them) and keep their registry claim and kernel TCP
// reservation. Before any Listen, every bound socket holds its own id with
// REUSEADDR, as Bind always did.
//
// How a binder learns that a listener appeared, in this process or another:
//
//   - a designated listener holds the listener flag of its port (a read
//     lock, see package election), sets its registry record's role to
//     designated, and then rings the doorbell: it sets the registry file's
//     times (utimensat), which inotify reports as IN_ATTRIB to every Binder
//     that holds an unparked id;
//   - such a Binder then lists the registry and parks its ids whose address
//     and port a designated record overlaps;
//   - a Bind that got an id checks the flag of its port after binding it (one
//     F_OFD_GETLK) and, if set, does the same: with the order "flag, role,
//     doorbell" on the listener's side and "watch, bind, flag" on the
//     binder's, one of the two always sees the other;
//   - a Bind whose rdma_bind_addr fails because a listener holds the port
//     binds no id ("parked" from the start) instead of failing;
//   - the listener retries rdma_listen until the port is its alone, ringing
//     again now and then, and gives up after election.DefaultTimeout with
//     WSAEADDRINUSE naming who still holds the port.
//
// Where inotify is not available (no instance left), the Binder polls the
// flags of its ports instead, every anchorPoll. Parking is for the life of
// the socket. Outgoing rdma_cm connections (qp.Dial) never use the socket's
// id or port, parked or not: the connecting id gets an rdma_cm port of its
// own on the socket's address, so no connected id ever sits on a port a
// listener may need (docs/qp.md).

// anchorPoll is the poll period without inotify.
var anchorPoll = 20 * time.Millisecond

// Anchor is one Binder's rdma_cm ids on the ports of its sockets: it
// creates them on the Binder's event channel (Bind, NewListener), and
// parks the bound ones when a listener takes their port, with a watcher of
// the registry's doorbell. Close it after the sockets it served.
type Anchor struct {
	reg *registry.Registry
	ch  *rdmacm.EventChannel
	// noInotify makes the watcher poll (tests).
	noInotify bool

	stopWatch func() // ends the device subscription (device.go)

	mu      sync.Mutex
	entries map[*anchorEntry]struct{}
	users   map[devUser]struct{} // ids on a device (device.go)
	started bool
	closed  bool
	probe   *election.Probe // nil if the registry file could not be opened
	ino     *os.File        // inotify, on the netpoller; nil when polling
	stop    chan struct{}
	done    chan struct{}
}

// anchorEntry is one parkable id: the address and port it is bound to and
// the function that closes it.
type anchorEntry struct {
	ap   netip.AddrPort
	park func()
}

// NewAnchor returns the anchor of the ids a Binder creates on ch (nil
// where there is no RDMA: Bind then fails) with reg as its registry.
func NewAnchor(reg *registry.Registry, ch *rdmacm.EventChannel) *Anchor {
	a := &Anchor{reg: reg, ch: ch, entries: map[*anchorEntry]struct{}{}, users: map[devUser]struct{}{}}
	if ch != nil {
		a.stopWatch = rdmacm.WatchDevices(a.deviceEvent)
	}
	return a
}

// start opens the probe fd and the watcher, once. a.mu is held.
func (a *Anchor) startLocked() {
	if a.started {
		return
	}
	a.started = true
	a.stop = make(chan struct{})
	a.done = make(chan struct{})
	if p, err := election.OpenProbe(a.reg); err == nil {
		a.probe = p
	}
	if !a.noInotify {
		if f, err := inotifyFile(a.reg.Path()); err == nil {
			a.ino = f
			go a.watch(f)
			return
		}
	}
	go a.poll()
}

// inotifyFile returns an inotify instance watching path for IN_ATTRIB, as a
// non-blocking *os.File on the netpoller.
func inotifyFile(path string) (*os.File, error) {
	fd, err := inotifyInit()
	if err != nil {
		return nil, fmt.Errorf("inotify_init1: %w", err)
	}
	if _, err := inotifyWatchAttrib(fd, path); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify_add_watch %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), "inotify:"+path), nil
}

// watch scans after each batch of inotify events (a doorbell, or a queue
// overflow) until the file is closed.
func (a *Anchor) watch(f *os.File) {
	defer close(a.done)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Read(buf); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			select {
			case <-a.stop:
				return
			case <-time.After(anchorPoll):
			}
		}
		a.scan()
	}
}

// poll is watch without inotify: it probes the flags of the ports of its
// entries every anchorPoll, and scans when one is set.
func (a *Anchor) poll() {
	defer close(a.done)
	t := time.NewTicker(anchorPoll)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.mu.Lock()
		ports := map[uint16]bool{}
		for e := range a.entries {
			ports[e.ap.Port()] = true
		}
		a.mu.Unlock()
		for p := range ports {
			if a.flagged(p) {
				a.scan()
				break
			}
		}
	}
}

// flagged reports whether a designated listener of port may exist (its
// flag is held); true when it cannot tell.
func (a *Anchor) flagged(port uint16) bool {
	if a.probe == nil {
		return true
	}
	return a.probe.Flagged(port)
}

// add registers a parkable id bound to ap. With check, if a listener of
// ap's port may exist already, it scans at once (the id may be parked
// before add returns). A port 0 bind passes check false: the Fresh claim
// that follows its add fails if a designated listener's record holds the
// port, and a listener designated after that claim rings the doorbell,
// whose scan finds the id registered (the watch was started before the id
// was bound, see arm).
func (a *Anchor) add(ap netip.AddrPort, park func(), check bool) *anchorEntry {
	e := &anchorEntry{ap: ap, park: park}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return e
	}
	a.startLocked()
	a.entries[e] = struct{}{}
	a.mu.Unlock()
	if check && a.flagged(ap.Port()) {
		a.scan()
	}
	return e
}

// arm starts the doorbell watch, if it is not running: before an id is
// bound, so that no listener's doorbell can ring unheard after it.
func (a *Anchor) arm() {
	a.mu.Lock()
	if !a.closed {
		a.startLocked()
	}
	a.mu.Unlock()
}

// remove unregisters e (parked or not). Safe for nil and twice.
func (a *Anchor) remove(e *anchorEntry) {
	if e == nil {
		return
	}
	a.mu.Lock()
	delete(a.entries, e)
	a.mu.Unlock()
}

// scan parks every entry whose address and port a live designated record
// of the registry overlaps.
func (a *Anchor) scan() {
	a.mu.Lock()
	if len(a.entries) == 0 {
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	// An error may come with the readable records (ErrCorrupt for one it
	// cannot read): use what there is.
	recs, _ := a.reg.List()
	var des []registry.Record
	for _, r := range recs {
		if r.Role == registry.RoleDesignated {
			des = append(des, r)
		}
	}
	if len(des) == 0 {
		return
	}
	a.parkIf(func(ap netip.AddrPort) bool {
		for _, r := range des {
			if r.Port == ap.Port() && registry.Overlap(r.Addr, r.DualStack, ap.Addr(), false) {
				return true
			}
		}
		return false
	})
}

// ParkLocal parks this anchor's ids that a listener on ap overlaps,
// without asking the registry (the listener is in this process): the
// election's Config.Announce.
func (a *Anchor) ParkLocal(ap netip.AddrPort) {
	a.parkIf(func(e netip.AddrPort) bool {
		return e.Port() == ap.Port() && registry.Overlap(ap.Addr(), false, e.Addr(), false)
	})
}

func (a *Anchor) parkIf(match func(netip.AddrPort) bool) {
	var park []*anchorEntry
	a.mu.Lock()
	for e := range a.entries {
		if match(e.ap) {
			delete(a.entries, e)
			park = append(park, e)
		}
	}
	a.mu.Unlock()
	for _, e := range park {
		e.park()
	}
}

// pending returns how many entries are not parked (tests).
func (a *Anchor) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Close stops the watcher and closes its fds. Entries are dropped, not
// parked (their sockets are closing). Safe twice.
func (a *Anchor) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	started := a.started
	a.entries = map[*anchorEntry]struct{}{}
	a.users = map[devUser]struct{}{}
	a.mu.Unlock()
	if a.stopWatch != nil {
		a.stopWatch()
	}
	if !started {
		return nil
	}
	close(a.stop)
	var err error
	if a.ino != nil {
		err = a.ino.Close()
	}
	<-a.done
	if a.probe != nil {
		if cerr := a.probe.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
