package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/cgo/rdmacm"
	"github.com/rdmabind/rdmabind/rdma"
)

// runDirParent is where a run makes its directory (its registry files);
// "" is this user's private directory (registry.DefaultDir: no other user
// can create, replace or read what is in it). Tests point it elsewhere.
var runDirParent = ""

func phaseName(p int) string { return bindcore.PhaseNames[p] }

// env is what the variants of one Run share: the address, a registry
// directory of the run's own (removed at the end), and the rdma_cm channel
// and Binders, opened when a variant first needs them.
type env struct {
	addr    netip.Addr
	dir     string
	ch      *rdmacm.EventChannel
	chErr   error
	binders map[string]*bindcore.Binder // one per variant
	crowd   int                         // bind-crowded's live sockets
}

// newEnv checks or chooses the address and makes the run's directory.
func newEnv(addr netip.Addr) (*env, error) {
	if !addr.IsValid() {
		addr = chooseAddr()
	} else if !isLocal(addr) {
		return nil, wsa.New(wsa.WSAEADDRNOTAVAIL, "bench", addr.String(), "%s is not an address of this host", addr)
	}
	parent := runDirParent
	if parent == "" {
		var err error
		if parent, err = registry.DefaultDir(); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	// MkdirTemp: a new name, made 0700 by this call (it never takes a
	// directory that exists).
	dir, err := os.MkdirTemp(parent, "rdmabind-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &env{addr: addr.Unmap(), dir: dir, binders: map[string]*bindcore.Binder{}}, nil
}

func (e *env) close() {
	for _, b := range e.binders {
		b.Close()
	}
	if e.ch != nil {
		e.ch.Close()
	}
	os.RemoveAll(e.dir)
}

// localAddrs lists the addresses of this host's interfaces.
func localAddrs() []netip.Addr {
	ifas, _ := net.InterfaceAddrs()
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

func isLocal(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, l := range localAddrs() {
		if l == a {
			return true
		}
	}
	return false
}

// chooseAddr returns the first IPv4 address an RDMA device serves, or
// 127.0.0.1.
func chooseAddr() netip.Addr {
	for _, a := range localAddrs() {
		if !a.Is4() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		if eps, err := rdma.Resolve(a); err == nil && len(eps) > 0 {
			return a
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

func (e *env) channel() (*rdmacm.EventChannel, error) {
	if e.ch == nil && e.chErr == nil {
		e.ch, e.chErr = rdmacm.NewEventChannel()
	}
	return e.ch, e.chErr
}

// binder opens the Binder of a variant: each has its own, so that what
// one leaves in its Binder (the listen variant's anchor, say) does not
// weigh on another's samples. They share the run's registry directory.
func (e *env) binder(variant string, trace bool) (*bindcore.Binder, error) {
	if b := e.binders[variant]; b != nil {
		return b, nil
	}
	b, err := bindcore.Open(bindcore.Options{RegistryDir: e.dir, TracePhases: trace})
	if err != nil {
		return nil, err
	}
	e.binders[variant] = b
	return b, nil
}

// prepare sets up variant v and takes one sample of it and of its floor to
// see that they work here; its error says why v is unavailable.
func (e *env) prepare(v Variant) (*sampler, error) {
	s := &sampler{v: v, close: func() {}}
	var err error
	switch v.Name {
	case "kernel-bind":
		s.sample = func() (time.Duration, error) { return e.kernelBind() }
	case "rdma-bind":
		if _, err := e.channel(); err != nil {
			return nil, err
		}
		s.sample = func() (time.Duration, error) { return e.rdmaBind() }
	case "bind", "phases":
		err = e.prepareBind(s, v.Name == "phases")
	case "bind-crowded":
		err = e.prepareCrowded(s)
	case "claim":
		err = e.prepareClaim(s)
	case "listen":
		err = e.prepareListen(s)
	case "switch":
		err = e.prepareSwitch(s)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownVariant, v.Name)
	}
	if err != nil {
		return nil, err
	}
	if _, err := s.sample(); err != nil {
		s.close()
		return nil, err
	}
	if s.floor != nil {
		if _, err := s.floor(); err != nil {
			s.close()
			return nil, fmt.Errorf("floor %s: %w", v.Floor, err)
		}
	}
	return s, nil
}

func (e *env) family() int {
	if e.addr.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// tcpSocket is socket(2) + (SO_REUSEPORT) + bind(2) of a TCP socket.
func (e *env) tcpSocket(port uint16, reuseport bool) (int, error) {
	fd, err := unix.Socket(e.family(), unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if reuseport {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("SO_REUSEPORT: %w", err)
		}
	}
	if err := unix.Bind(fd, sockaddrOf(netip.AddrPortFrom(e.addr, port))); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", netip.AddrPortFrom(e.addr, port), err)
	}
	return fd, nil
}

func (e *env) kernelBind() (time.Duration, error) {
	t0 := time.Now()
	fd, err := e.tcpSocket(0, false)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	unix.Close(fd)
	return d, nil
}

// rawID is rdma_create_id + REUSEADDR + rdma_bind_addr on port 0.
func (e *env) rawID() (*rdmacm.ID, error) {
	ch, err := e.channel()
	if err != nil {
		return nil, err
	}
	id, err := ch.CreateID(rdmacm.PortSpaceTCP)
	if err != nil {
		return nil, err
	}
	if err := id.SetReuseAddr(true); err != nil {
		id.Close()
		return nil, err
	}
	if err := id.Bind(netip.AddrPortFrom(e.addr, 0)); err != nil {
		id.Close()
		return nil, err
	}
	return id, nil
}

func (e *env) rdmaBind() (time.Duration, error) {
	t0 := time.Now()
	id, err := e.rawID()
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	id.Close()
	return d, nil
}

// rawBind is the floor of a Bind: rawID, then a TCP socket with
// SO_REUSEPORT bound to the port rdma_cm chose (BenchmarkBindVsRaw's
// floor). The caller releases both.
func (e *env) rawBind() (*rdmacm.ID, int, error) {
	id, err := e.rawID()
	if err != nil {
		return nil, -1, err
	}
	fd, err := e.tcpSocket(id.LocalAddr().Port(), true)
	if err != nil {
		id.Close()
		return nil, -1, err
	}
	return id, fd, nil
}

func (e *env) sockaddr() []byte {
	fam := bindcore.AFInet6
	if e.addr.Is4() {
		fam = bindcore.AFInet
	}
	sa, _ := bindcore.SockaddrFromAddrPort(fam, netip.AddrPortFrom(e.addr, 0))
	return sa.Encode()
}

func (e *env) newSocket(b *bindcore.Binder) (*bindcore.Socket, error) {
	if e.addr.Is4() {
		return b.Socket(bindcore.AFInet)
	}
	return b.Socket(bindcore.AFInet6)
}

func (e *env) prepareBind(s *sampler, phases bool) error {
	// No channel check first: without RDMA the trial Bind of prepare says
	// why, as the layer does (WSAENETDOWN).
	b, err := e.binder(s.v.Name, phases)
	if err != nil {
		return err
	}
	name := e.sockaddr()
	var last [bindcore.NumPhases]int64
	s.sample = func() (time.Duration, error) {
		sk, err := e.newSocket(b)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		err = sk.Bind(name)
		d := time.Since(t0)
		if phases {
			last = sk.BindPhases()
		}
		sk.Close()
		return d, err
	}
	if phases {
		s.phases = func() []int64 { return last[:] }
		return nil
	}
	s.floor = e.rawBindSample
	return nil
}

// prepareCrowded binds e.crowd sockets of a Binder of its own (its own
// registry, big enough) on ports of the address, then measures a Bind
// among them as bind does; its close releases them.
func (e *env) prepareCrowded(s *sampler) error {
	// A directory of each preparation's own: a run repeated (Config.Count)
	// prepares the variant again.
	dir, err := os.MkdirTemp(e.dir, "crowded-")
	if err != nil {
		return err
	}
	records := 16384
	for records < e.crowd+e.crowd/2 {
		records *= 2
	}
	b, err := bindcore.Open(bindcore.Options{RegistryDir: dir, RegistryRecords: records, TracePhases: true})
	if err != nil {
		return err
	}
	name := e.sockaddr()
	for i := range e.crowd {
		sk, err := e.newSocket(b)
		if err == nil {
			err = sk.Bind(name)
		}
		if err != nil {
			b.Close()
			return fmt.Errorf("binding the crowd (socket %d of %d): %w", i+1, e.crowd, err)
		}
	}
	s.close = func() { b.Close() }
	var last [bindcore.NumPhases]int64
	s.sample = func() (time.Duration, error) {
		sk, err := e.newSocket(b)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		err = sk.Bind(name)
		d := time.Since(t0)
		last = sk.BindPhases()
		sk.Close()
		return d, err
	}
	s.phases = func() []int64 { return last[:] }
	s.floor = e.rawBindSample
	return nil
}

// rawBindSample is one raw-bind: the floor of bind and bind-crowded.
func (e *env) rawBindSample() (time.Duration, error) {
	t0 := time.Now()
	id, fd, err := e.rawBind()
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	unix.Close(fd)
	id.Close()
	return d, nil
}

func (e *env) prepareClaim(s *sampler) error {
	// A directory of each preparation's own: a run repeated (Config.Count)
	// prepares the variant again.
	dir, err := os.MkdirTemp(e.dir, "claim-")
	if err != nil {
		return err
	}
	r, err := registry.Open(registry.Options{Dir: dir})
	if err != nil {
		return err
	}
	port, err := r.FindFreePort(e.addr, 40000, 60000)
	if err != nil {
		r.Close()
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "ofd-floor"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		r.Close()
		return err
	}
	fd := int(f.Fd())
	lk := func(typ int16) error {
		return unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &unix.Flock_t{Type: typ, Whence: 0, Start: 4096, Len: 1})
	}
	req := registry.ClaimRequest{Addr: e.addr, Port: port}
	s.sample = func() (time.Duration, error) {
		t0 := time.Now()
		c, err := r.Claim(req)
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		return d, c.Release()
	}
	s.floor = func() (time.Duration, error) {
		t0 := time.Now()
		err := lk(unix.F_WRLCK)
		d := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("F_OFD_SETLK: %w", err)
		}
		return d, lk(unix.F_UNLCK)
	}
	s.close = func() { f.Close(); r.Close() }
	return nil
}

func (e *env) prepareListen(s *sampler) error {
	b, err := e.binder(s.v.Name, false)
	if err != nil {
		return err
	}
	name := e.sockaddr()
	s.sample = func() (time.Duration, error) {
		sk, err := e.newSocket(b)
		if err != nil {
			return 0, err
		}
		defer sk.Close()
		if err := sk.Bind(name); err != nil {
			return 0, err
		}
		t0 := time.Now()
		err = sk.Listen(bindcore.DefaultBacklog)
		d := time.Since(t0)
		if err != nil {
			return 0, err
		}
		st, err := sk.ListenState()
		if err == nil && st.Role != registry.RoleDesignated {
			err = fmt.Errorf("listen: role %v, want designated (the port is new)", st.Role)
		}
		return d, err
	}
	s.floor = func() (time.Duration, error) {
		id, fd, err := e.rawBind()
		if err != nil {
			return 0, err
		}
		defer id.Close()
		defer unix.Close(fd)
		t0 := time.Now()
		if err := id.Listen(bindcore.DefaultBacklog); err != nil {
			return 0, fmt.Errorf("rdma_listen: %w", err)
		}
		if err := unix.Listen(fd, bindcore.DefaultBacklog); err != nil {
			return 0, fmt.Errorf("listen: %w", err)
		}
		return time.Since(t0), nil
	}
	return nil
}

// prepareSwitch makes a steering group of two listeners on a port 0 bind
// of the address, and, for the floor, two plain listeners of another port
// and a REUSEPORT_SOCKARRAY map of the run's own.
func (e *env) prepareSwitch(s *sampler) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: loading the steering program takes CAP_BPF and CAP_NET_ADMIN")
	}
	// Sockets close first (in reverse), the group is released last.
	var closers []func()
	var group *steer.Group
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		if group != nil {
			group.Release()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	x, err := shadow.Bind(netip.AddrPortFrom(e.addr, 0))
	if err != nil {
		return err
	}
	closers = append(closers, func() { x.Close() })
	k, err := steer.KeyOf(x)
	if err != nil {
		return err
	}
	g, err := steer.Open(k, nil)
	if err != nil {
		return err
	}
	group = g
	y, err := shadow.Bind(x.Addr())
	if err != nil {
		return err
	}
	closers = append(closers, func() { y.Close() })
	for _, l := range []*shadow.Socket{x, y} {
		if err := g.Listen(l, 16); err != nil {
			return err
		}
	}
	if err := g.Designate(x); err != nil {
		return err
	}
	// The floor's own listeners and map.
	var fds [2]int
	for i := range fds {
		port := uint16(0)
		if i == 1 {
			sa, err := unix.Getsockname(fds[0])
			if err != nil {
				return err
			}
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				port = uint16(sa.Port)
			case *unix.SockaddrInet6:
				port = uint16(sa.Port)
			}
		}
		fd, err := e.tcpSocket(port, true)
		if err != nil {
			return err
		}
		closers = append(closers, func() { unix.Close(fd) })
		if err := unix.Listen(fd, 16); err != nil {
			return err
		}
		fds[i] = fd
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return fmt.Errorf("REUSEPORT_SOCKARRAY map: %w", err)
	}
	closers = append(closers, func() { m.Close() })
	socks := [2]steer.Socket{y, x}
	i, j := 0, 0
	s.sample = func() (time.Duration, error) {
		t0 := time.Now()
		err := g.Designate(socks[i&1])
		d := time.Since(t0)
		i++
		return d, err
	}
	s.floor = func() (time.Duration, error) {
		t0 := time.Now()
		err := m.Put(uint32(0), uint64(fds[j&1]))
		d := time.Since(t0)
		j++
		return d, err
	}
	s.close = cleanup
	return nil
}
