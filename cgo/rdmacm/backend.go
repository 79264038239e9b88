package rdmacm

import "net/netip"

// The C surface: everything the Go side of the package needs from librdmacm,
// as two small interfaces. rdmacm_cgo.go implements them with librdmacm
// (through the C wrappers of rbcm.c), rdmacm_nocgo.go has none
// (NewEventChannel fails), and the tests use a fake to exercise the event
// loop and the lifetimes without a device. Errors returned here are bare
// unix.Errno values; the Go side adds the operation.

// channelOps is one rdma_event_channel.
type channelOps interface {
	// fd is the channel's file descriptor. The Go side sets it non-blocking
	// and polls a duplicate of it; it never closes it.
	fd() int
	// createID is rdma_create_id with key as the id's context. It runs on
	// the locked OS thread whose network namespace the id is to take.
	createID(key uintptr, ps PortSpace) (idOps, error)
	// getEvent is rdma_get_cm_event on the non-blocking channel: EAGAIN when
	// no event is queued. The event stays unacknowledged until raw.ack.
	getEvent() (rawEvent, error)
	// destroy is rdma_destroy_event_channel; called once, after every id of
	// the channel is destroyed.
	destroy()
}

// idOps is one rdma_cm_id. Calls are serialized by the ID's mutex.
type idOps interface {
	setKey(key uintptr)
	setOption(opt idOption, val int) error
	bind(ip netip.Addr, port uint16, scopeID uint32) error
	listen(backlog int) error
	localAddr() netip.AddrPort
	// device gives ibv_get_device_name of the bound device and the port
	// number, or "" and 0 when the id has no device.
	device() (name string, port int)
	// contextFDs gives the command and async descriptors of the librdmacm
	// context of the id's device; false without a device.
	contextFDs() (ctxFDs, bool)
	// destroy is rdma_destroy_id; called at most once.
	destroy() error
}

// idOption is an RDMA_OPTION_ID option.
type idOption int

const (
	optReuseAddr idOption = iota // RDMA_OPTION_ID_REUSEADDR
	optAFOnly                    // RDMA_OPTION_ID_AFONLY
)

func (o idOption) String() string {
	if o == optAFOnly {
		return "RDMA_OPTION_ID_AFONLY"
	}
	return "RDMA_OPTION_ID_REUSEADDR"
}

// rawEvent is an rdma_cm_event as read, before it is acknowledged.
type rawEvent struct {
	typ       EventType
	status    int
	key       uintptr // context of event->id
	listenKey uintptr // context of event->listen_id, 0 if none
	newID     idOps   // EventConnectRequest: the new id (context still the listener's)
	priv      []byte
	ack       func() // rdma_ack_cm_event
}

// ctxFDs are the descriptors of librdmacm's context of a device: what
// keeps the device's uverbs file open (devices.go).
type ctxFDs struct {
	dev        string
	cmd, async int
	// ino is the command descriptor's file's inode: which incarnation of
	// the device's uverbs node it is (a device deleted and added again
	// has a new node, and librdmacm's new context may get the same
	// descriptor numbers).
	ino uint64
}
