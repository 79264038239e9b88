package rdmacm

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ID is an rdma_cm_id, the RDMA counterpart of a socket. It is created by
// EventChannel.CreateID, or by librdmacm for an incoming connection (see
// Event.ID), and its events arrive on that channel.
//
// An ID keeps its EventChannel alive. It is safe for concurrent use; calls
// are serialized. Close it when done; an ID that becomes unreachable is
// closed by the garbage collector as a safety net only. Closing the channel
// closes its IDs.
type ID struct {
	ch atomic.Pointer[EventChannel] // the parent, kept alive by the child; Migrate changes it
	s  *idState
}

// idState is what the ID's cleanup needs; it does not point at the ID.
type idState struct {
	key uintptr
	ps  PortSpace

	mu   sync.Mutex
	ops  idOps     // nil once closed
	core *chanCore // the channel's state; Migrate changes it
	dev  string    // the device it was counted on (devices.go), "" before
	ino  uint64    // the inode of its device's uverbs node (ctxFDs.ino), 0 if unknown
}

func (st *idState) close() error {
	st.mu.Lock()
	ops := st.ops
	st.ops = nil
	core := st.core
	var err error
	if ops != nil {
		err = ops.destroy()
	}
	dev := st.dev
	st.mu.Unlock()
	if ops == nil {
		return nil
	}
	hub.dropID(dev)
	core.deregister(st.key)
	if err != nil {
		return fmt.Errorf("rdma_destroy_id: %w", err)
	}
	return nil
}

// do runs fn with the live cm_id, or fails with ErrClosed.
func (id *ID) do(fn func(idOps) error) error {
	if id == nil || id.s == nil {
		return ErrClosed
	}
	st := id.s
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.ops == nil {
		return ErrClosed
	}
	err := fn(st.ops)
	runtime.KeepAlive(id)
	return err
}

// Channel returns the EventChannel on which the ID's events arrive.
func (id *ID) Channel() *EventChannel {
	if id == nil {
		return nil
	}
	return id.ch.Load()
}

// PortSpace returns the ID's port space.
func (id *ID) PortSpace() PortSpace {
	if id == nil || id.s == nil {
		return PortSpaceTCP
	}
	return id.s.ps
}

// SetReuseAddr sets RDMA_OPTION_ID_REUSEADDR, rdma_cm's SO_REUSEADDR: a port
// can be bound by several IDs when every one of them set it. Set it before
// Bind. The kernel re-checks the port without it in Listen, so a listening ID
// never shares its port with another bound ID.
//
// Errors: the errno of rdma_set_option (EINVAL when the ID is past the state
// where the option may change), ErrClosed.
func (id *ID) SetReuseAddr(on bool) error {
	return id.setOption(optReuseAddr, on)
}

// SetAFOnly sets RDMA_OPTION_ID_AFONLY, rdma_cm's IPV6_V6ONLY: an ID bound to
// an IPv6 wildcard then does not also take the port for IPv4. Set it before
// Bind.
//
// Errors: the errno of rdma_set_option (EINVAL once bound), ErrClosed.
func (id *ID) SetAFOnly(on bool) error {
	return id.setOption(optAFOnly, on)
}

func (id *ID) setOption(opt idOption, on bool) error {
	v := 0
	if on {
		v = 1
	}
	err := id.do(func(o idOps) error { return o.setOption(opt, v) })
	if err != nil {
		return fmt.Errorf("rdma_set_option %v=%d: %w", opt, v, err)
	}
	return nil
}

// Bind binds the ID to a local address and port (rdma_bind_addr). An address
// of an RDMA-capable interface also binds the ID to that interface's RDMA
// device and port (see DeviceName, PortNum); a wildcard address (0.0.0.0,
// ::) binds no device. Port 0 lets the kernel choose one (see LocalAddr).
// IPv4 addresses are bound as sockaddr_in, all others as sockaddr_in6 (an
// IPv4-mapped IPv6 address stays one). The zone of a link-local IPv6
// address becomes the scope id: a number as it is, an interface name
// resolved in the calling thread's network namespace.
//
// Ports are in the rdma_cm port space of the ID (see PortSpace), which is
// apart from the kernel's TCP and UDP ports.
//
// Errors (errno, as the kernel gives them):
//   - EADDRNOTAVAIL: the address is not one of this host (of the ID's network
//     namespace);
//   - ENODEV: the address is the host's but no RDMA device serves it;
//   - EADDRINUSE: the port is taken on that address by an ID that did not
//     set ReuseAddr, or by a listener;
//   - EADDRNOTAVAIL also when the port is taken, without ReuseAddr on both
//     sides, and one of the two addresses is a wildcard;
//   - EINVAL: the ID is already bound, or addr is not valid;
//   - EACCES: a port below 1024 without CAP_NET_BIND_SERVICE;
//   - ENXIO, for an unknown zone;
//   - ErrClosed.
func (id *ID) Bind(addr netip.AddrPort) error {
	ip := addr.Addr()
	if !ip.IsValid() {
		return fmt.Errorf("rdma_bind_addr %v: invalid address: %w", addr, unix.EINVAL)
	}
	scope, err := scopeID(ip)
	if err != nil {
		return fmt.Errorf("rdma_bind_addr %v: %w", addr, err)
	}
	err = id.do(func(o idOps) error {
		if err := o.bind(ip.WithZone(""), addr.Port(), scope); err != nil {
			if errors.Is(err, unix.ENOTTY) {
				// librdmacm used its context of a device whose files this
				// process let go already (devices.go): the device is
				// being removed.
				dev, _ := o.device()
				return &LostError{Device: cmp.Or(dev, "(unknown)")}
			}
			return err
		}
		return hub.noteID(id.s, o)
	})
	if err != nil {
		return fmt.Errorf("rdma_bind_addr %v: %w", addr, err)
	}
	return nil
}

func scopeID(ip netip.Addr) (uint32, error) {
	zone := ip.Zone()
	if zone == "" || ip.Is4() {
		return 0, nil
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n), nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return 0, fmt.Errorf("zone %q: %w", zone, unix.ENXIO)
	}
	return uint32(ifi.Index), nil
}

// LocalAddr returns the address and port the ID is bound to
// (rdma_get_local_addr, rdma_get_src_port): after a Bind to port 0, the port
// the kernel chose. A link-local IPv6 address carries its scope id as a
// numeric zone. It returns the zero AddrPort for an ID that is not bound or
// is closed.
func (id *ID) LocalAddr() netip.AddrPort {
	var ap netip.AddrPort
	id.do(func(o idOps) error {
		ap = o.localAddr()
		return nil
	})
	return ap
}

// DeviceName returns the name of the RDMA device the ID is bound to
// (ibv_get_device_name of id->verbs->device), such as "mlx5_0" or "rxe0":
// "" when it is bound to none (not bound, bound to a wildcard address, or
// closed).
func (id *ID) DeviceName() string {
	var name string
	id.do(func(o idOps) error {
		name, _ = o.device()
		return nil
	})
	return name
}

// PortNum returns the number of the port of DeviceName the ID is bound to
// (id->port_num, from 1), or 0 when it has no device.
func (id *ID) PortNum() int {
	var port int
	id.do(func(o idOps) error {
		_, port = o.device()
		return nil
	})
	return port
}

// Listen starts listening for connection requests (rdma_listen), which
// arrive as EventConnectRequest events on the ID's channel. An ID not bound
// yet is bound to the wildcard address and a free port first. An ID bound to
// a specific address listens on that address and its device only.
//
// Errors: EADDRINUSE when another ID is bound to the same address and port
// (ReuseAddr does not apply to listeners), EADDRNOTAVAIL when one is bound to
// the same port with either address a wildcard, EINVAL when the ID is not in
// a state to listen, ErrClosed.
func (id *ID) Listen(backlog int) error {
	var local netip.AddrPort
	err := id.do(func(o idOps) error {
		local = o.localAddr()
		return o.listen(backlog)
	})
	if err != nil {
		if local.IsValid() {
			return fmt.Errorf("rdma_listen %v: %w", local, err)
		}
		return fmt.Errorf("rdma_listen: %w", err)
	}
	return nil
}

// Close destroys the ID (rdma_destroy_id): it releases its port, rejects a
// connection request it was created for and not accepted, and stops its
// events. Close is safe to call more than once, and after the channel's
// Close; later calls return nil.
//
// Errors: the errno of rdma_destroy_id, after which the ID counts as closed
// all the same.
func (id *ID) Close() error {
	if id == nil || id.s == nil {
		return nil
	}
	err := id.s.close()
	runtime.KeepAlive(id)
	return err
}
