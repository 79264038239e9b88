package rdmacm

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/rdmabind/rdmabind/cgo/internal/cerrno"
	"golang.org/x/sys/unix"
)

// ErrNotSupported is wrapped by the error of NewEventChannel when RDMA cannot
// be used here at all: the package was built without cgo (the error then also
// matches unix.EOPNOTSUPP), or librdmacm found no RDMA device (the error then
// also matches unix.ENODEV, the errno librdmacm reports when
// /dev/infiniband/rdma_cm or every RDMA device is missing). Callers map it to
// "no RDMA subsystem"; tests skip on it.
var ErrNotSupported = errors.New("not supported")

// ErrClosed is wrapped by the errors of methods called on an EventChannel or
// ID after its Close (or, for an ID, after its channel's Close), and on the
// zero EventChannel or ID.
var ErrClosed = errors.New("use of closed rdma_cm handle")

// PortSpace is the rdma_cm port space of an ID (enum rdma_port_space). The
// zero value is PortSpaceTCP.
type PortSpace int

const (
	// PortSpaceTCP is RDMA_PS_TCP: reliable connected QPs, addressed like
	// TCP. The default, and the one rdmabind binds in.
	PortSpaceTCP PortSpace = iota
	// PortSpaceUDP is RDMA_PS_UDP: unreliable datagram QPs.
	PortSpaceUDP
	// PortSpaceIB is RDMA_PS_IB: any QP type, native InfiniBand service IDs.
	PortSpaceIB
)

func (ps PortSpace) valid() bool { return ps >= PortSpaceTCP && ps <= PortSpaceIB }

func (ps PortSpace) String() string {
	switch ps {
	case PortSpaceTCP:
		return "RDMA_PS_TCP"
	case PortSpaceUDP:
		return "RDMA_PS_UDP"
	case PortSpaceIB:
		return "RDMA_PS_IB"
	}
	return "PortSpace(" + strconv.Itoa(int(ps)) + ")"
}

// EventType is the type of a communication event (enum rdma_cm_event_type).
// The values are librdmacm's.
type EventType int

const (
	EventAddrResolved EventType = iota
	EventAddrError
	EventRouteResolved
	EventRouteError
	EventConnectRequest
	EventConnectResponse
	EventConnectError
	EventUnreachable
	EventRejected
	EventEstablished
	EventDisconnected
	EventDeviceRemoval
	EventMulticastJoin
	EventMulticastError
	EventAddrChange
	EventTimewaitExit
)

var eventNames = [...]string{
	EventAddrResolved:    "RDMA_CM_EVENT_ADDR_RESOLVED",
	EventAddrError:       "RDMA_CM_EVENT_ADDR_ERROR",
	EventRouteResolved:   "RDMA_CM_EVENT_ROUTE_RESOLVED",
	EventRouteError:      "RDMA_CM_EVENT_ROUTE_ERROR",
	EventConnectRequest:  "RDMA_CM_EVENT_CONNECT_REQUEST",
	EventConnectResponse: "RDMA_CM_EVENT_CONNECT_RESPONSE",
	EventConnectError:    "RDMA_CM_EVENT_CONNECT_ERROR",
	EventUnreachable:     "RDMA_CM_EVENT_UNREACHABLE",
	EventRejected:        "RDMA_CM_EVENT_REJECTED",
	EventEstablished:     "RDMA_CM_EVENT_ESTABLISHED",
	EventDisconnected:    "RDMA_CM_EVENT_DISCONNECTED",
	EventDeviceRemoval:   "RDMA_CM_EVENT_DEVICE_REMOVAL",
	EventMulticastJoin:   "RDMA_CM_EVENT_MULTICAST_JOIN",
	EventMulticastError:  "RDMA_CM_EVENT_MULTICAST_ERROR",
	EventAddrChange:      "RDMA_CM_EVENT_ADDR_CHANGE",
	EventTimewaitExit:    "RDMA_CM_EVENT_TIMEWAIT_EXIT",
}

// String gives librdmacm's name of the event (as rdma_event_str does).
func (t EventType) String() string {
	if t >= 0 && int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "EventType(" + strconv.Itoa(int(t)) + ")"
}

// Event is a communication event, copied out of librdmacm's rdma_cm_event
// (which GetEvent has already acknowledged).
type Event struct {
	Type EventType
	// Status is the event's status as the kernel reports it: 0, a negative
	// errno for the error events (EventAddrError, EventConnectError,
	// EventUnreachable, ...), or for EventRejected the transport's reject
	// reason (a positive number). Err interprets it.
	Status int
	// ID is the ID the event is for. For EventConnectRequest it is a new ID
	// that librdmacm created for the incoming connection, on the same
	// channel and port space as the listener: the receiver owns it and must
	// Close it (closing it without accepting rejects the request).
	ID *ID
	// Listener is the listening ID of an EventConnectRequest; nil otherwise.
	Listener *ID
	// PrivateData is a copy of the private data that came with a connect
	// request, connect response, reject or established event; nil when
	// there is none.
	PrivateData []byte
}

// Err gives the event's Status as an error: nil for status 0, the errno
// (matching errors.Is(err, unix.ETIMEDOUT) and the like) for a negative
// status, and for EventRejected an error that matches unix.ECONNREFUSED and
// names the reject reason.
func (e Event) Err() error {
	switch {
	case e.Status == 0:
		return nil
	case e.Type == EventRejected:
		return fmt.Errorf("%s: reject reason %d: %w", e.Type, e.Status, unix.ECONNREFUSED)
	case e.Status < 0:
		return fmt.Errorf("%s: %w", e.Type, unix.Errno(-e.Status))
	default:
		return fmt.Errorf("%s: status %d", e.Type, e.Status)
	}
}

// errnoOr is cerrno.Of: a failed C call's errno, EIO when it set none.
func errnoOr(err error) error { return cerrno.Of(err) }
