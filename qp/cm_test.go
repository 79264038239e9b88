package qp

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// TestSetupEventErrors: what an rdma_cm event means to a setup waiting
// for another: the one awaited ends the wait, a reject is ECONNREFUSED, an
// unreachable peer EHOSTUNREACH, an error status its errno, a disconnect
// or device removal during setup ECONNABORTED; other events are skipped.
func TestSetupEventErrors(t *testing.T) {
	want := rdmacm.EventEstablished
	for _, c := range []struct {
		ev   rdmacm.Event
		done bool
		is   error
	}{
		{rdmacm.Event{Type: rdmacm.EventEstablished}, true, nil},
		{rdmacm.Event{Type: rdmacm.EventRejected, Status: 28}, true, unix.ECONNREFUSED},
		{rdmacm.Event{Type: rdmacm.EventUnreachable, Status: -int(unix.ETIMEDOUT)}, true, unix.EHOSTUNREACH},
		{rdmacm.Event{Type: rdmacm.EventConnectError, Status: -int(unix.ECONNREFUSED)}, true, unix.ECONNREFUSED},
		{rdmacm.Event{Type: rdmacm.EventDisconnected}, true, unix.ECONNABORTED},
		{rdmacm.Event{Type: rdmacm.EventDeviceRemoval}, true, unix.ECONNABORTED},
		{rdmacm.Event{Type: rdmacm.EventAddrChange}, false, nil},
		{rdmacm.Event{Type: rdmacm.EventTimewaitExit}, false, nil},
	} {
		done, err := setupEvent(c.ev, want)
		if done != c.done || (c.is == nil) != (err == nil) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%v (status %d) waiting for %v: done %v, %v; want done %v, matching %v", c.ev.Type, c.ev.Status, want, done, err, c.done, c.is)
		}
	}
}

// TestEstablishedEventErrors: what breaks an established rdma_cm
// connection: DISCONNECTED is the peer gone (ECONNRESET), DEVICE_REMOVAL
// the device (ENETDOWN, a *deviceLostError naming it), an error status its
// errno; TIMEWAIT_EXIT and the like break nothing.
func TestEstablishedEventErrors(t *testing.T) {
	for _, c := range []struct {
		ev rdmacm.Event
		is error
	}{
		{rdmacm.Event{Type: rdmacm.EventDisconnected}, unix.ECONNRESET},
		{rdmacm.Event{Type: rdmacm.EventDeviceRemoval}, unix.ENETDOWN},
		{rdmacm.Event{Type: rdmacm.EventConnectError, Status: -int(unix.ETIMEDOUT)}, unix.ETIMEDOUT},
		{rdmacm.Event{Type: rdmacm.EventTimewaitExit}, nil},
		{rdmacm.Event{Type: rdmacm.EventEstablished}, nil},
		{rdmacm.Event{Type: rdmacm.EventAddrChange}, nil},
	} {
		err := establishedEvent(c.ev, "rxe0")
		if (c.is == nil) != (err == nil) || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("%v (status %d): %v, want matching %v", c.ev.Type, c.ev.Status, err, c.is)
		}
		var dl *deviceLostError
		if lost := errors.As(err, &dl); lost != (c.ev.Type == rdmacm.EventDeviceRemoval) {
			t.Errorf("%v: %v is a device loss: %v", c.ev.Type, err, lost)
		} else if lost && !strings.Contains(err.Error(), "device rxe0 removed") {
			t.Errorf("%v: %q does not name the device", c.ev.Type, err)
		}
	}
}
