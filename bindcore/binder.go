package bindcore

import (
	"errors"
	"fmt"
	"sync"

	"github.com/rdmabind/rdmabind/bindcore/cmport"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// Options configure Open. The zero value is what a program wants: the
// registry of the calling thread's network namespace in this user's own
// directory (registry.DefaultDir: /run/rdmabind for root), the live
// sysfs, the kernel's ephemeral port range.
type Options struct {
	// RegistryDir holds the registry file ("" means registry.DefaultDir(),
	// a directory no other user can create, replace or read). Processes
	// share ports only through one registry: they must agree on it.
	RegistryDir string
	// RegistryRecords is the record count of a registry file this Open
	// creates (0: registry.DefaultRecords, 4,096); an existing file keeps
	// its own. At most registry.MaxRecords.
	RegistryRecords int
	// SysfsRoot is the root below which sysfs and /dev are read ("" means
	// "/"). Only tests point it elsewhere.
	SysfsRoot string
	// TracePhases makes every Bind time its phases (Socket.BindPhases),
	// at the cost of reading the clock six times per Bind.
	TracePhases bool
}

// Binder is the provider: it creates sockets and binds them. It owns the
// registry handle, one rdma_cm event channel and every socket it created;
// Close closes them all. A Binder is safe for concurrent use.
//
// A Binder works in the network namespace of the thread that opened it:
// the registry, the kernel TCP reservations and the rdma_cm ids are that
// namespace's.
type Binder struct {
	opts Options
	reg  *registry.Registry
	ch   *rdmacm.EventChannel // nil when chErr says why
	// chErr is why there is no event channel (no RDMA here): Bind answers
	// WSAENETDOWN with it.
	chErr error
	cache resolveCache
	// anchor creates this Binder's rdma_cm ids on ch and parks them where
	// a listener takes the port; events hands out ch's connect requests.
	anchor *cmport.Anchor
	events *cmport.Dispatcher

	mu     sync.Mutex
	socks  map[uint64]*Socket
	closed bool
}

// Open opens the registry of this network namespace and, where the host
// has RDMA, an rdma_cm event channel. Without RDMA it still succeeds (the
// registry can be listed, sockets created), and Bind answers WSAENETDOWN.
//
// Errors: those of registry.Open (ErrPermission for a registry file owned
// by another user or writable by others, ErrCorrupt, ErrVersion, an errno).
func Open(opts Options) (*Binder, error) {
	reg, err := registry.Open(registry.Options{Dir: opts.RegistryDir, Records: opts.RegistryRecords})
	if err != nil {
		return nil, fmt.Errorf("bindcore: open: %w", err)
	}
	b := &Binder{opts: opts, reg: reg, socks: map[uint64]*Socket{}}
	b.cache.root = opts.SysfsRoot
	b.ch, b.chErr = rdmacm.NewEventChannel()
	b.anchor = cmport.NewAnchor(reg, b.ch)
	b.events = cmport.NewDispatcher(b.ch)
	return b, nil
}

// Registry returns the Binder's registry handle (for listing it). It stays
// the Binder's: do not close it.
func (b *Binder) Registry() *registry.Registry { return b.reg }

// Socket creates an unbound socket of family AFInet or AFInet6: WSPSocket.
//
// Errors: WSAEFAULT for another family (no address format can be right for
// it); WSAENOTSOCK after Close of the Binder.
func (b *Binder) Socket(family Family) (*Socket, error) {
	if family.Size() == 0 {
		return nil, wsa.New(wsa.WSAEFAULT, "socket", family.String(), "family %s is not AF_INET or AF_INET6", family)
	}
	s := &Socket{b: b, family: family}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, wsa.New(wsa.WSAENOTSOCK, "socket", family.String(), "the binder is closed")
	}
	for {
		s.handle = registry.NewSocketID()
		if _, taken := b.socks[s.handle]; !taken {
			break
		}
	}
	b.socks[s.handle] = s
	return s, nil
}

// Lookup returns the live socket with the given handle: the descriptor of
// WSPBind's s.
//
// Errors: WSAENOTSOCK for a zero handle, one closed, or one this Binder did
// not create.
func (b *Binder) Lookup(handle uint64) (*Socket, error) {
	b.mu.Lock()
	s, ok := b.socks[handle]
	b.mu.Unlock()
	if !ok {
		return nil, wsa.New(wsa.WSAENOTSOCK, "lookup", fmt.Sprintf("%#x", handle), "not a live socket of this binder (zero, closed or foreign)")
	}
	return s, nil
}

func (b *Binder) forget(s *Socket) {
	b.mu.Lock()
	delete(b.socks, s.handle)
	b.mu.Unlock()
}

// Close closes every socket of the Binder, then its event channel and
// registry handle. It is safe to call more than once.
func (b *Binder) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	socks := make([]*Socket, 0, len(b.socks))
	for _, s := range b.socks {
		socks = append(socks, s)
	}
	b.mu.Unlock()
	var errs []error
	for _, s := range socks {
		errs = append(errs, s.Close())
	}
	errs = append(errs, b.anchor.Close())
	if b.ch != nil {
		errs = append(errs, b.ch.Close())
		b.events.Wait()
	}
	errs = append(errs, b.reg.Close())
	return errors.Join(errs...)
}
