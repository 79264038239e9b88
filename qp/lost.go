package qp

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/cgo/rdmacm"
)

// deviceLostError is why a connection whose RDMA device went away broke;
// it matches unix.ENETDOWN. Its link reports it (rdma_cm's
// DEVICE_REMOVAL on the connection's id), or the process's device hub
// does (cgo/rdmacm WatchDevices); either way the connection tears itself
// down (Conn.lose).
type deviceLostError struct {
	dev string // the device's name; "" if unknown
	how string // how the loss was seen
}

func (e *deviceLostError) Error() string {
	dev := e.dev
	if dev == "" {
		dev = "(unknown)"
	}
	return fmt.Sprintf("device %s removed (%s): %v", dev, e.how, unix.ENETDOWN)
}

func (e *deviceLostError) Unwrap() error { return unix.ENETDOWN }

// setupGuard watches the device hub while a connection is set up, between
// the allocation of its QP and its start (from then on Conn.start
// watches): on the loss of the device it aborts the setup's wait at once,
// so that the setup frees what it took instead of holding the device until
// its deadline.
type setupGuard struct {
	dev  string
	stop func()
	lost atomic.Bool
}

// guardSetup starts watching dev ("" : nothing to watch); abort makes the
// setup's wait return. Call stop when the setup is done.
func guardSetup(dev string, abort func()) *setupGuard {
	g := &setupGuard{dev: dev, stop: func() {}}
	if dev == "" {
		return g
	}
	var once sync.Once
	fire := func() {
		once.Do(func() {
			g.lost.Store(true)
			abort()
		})
	}
	g.stop = watchDevices(func(ev rdmacm.DeviceEvent) {
		if ev.Lost && ev.Device == dev {
			fire()
		}
	})
	if deviceLost(dev) {
		fire()
	}
	return g
}

// err is err, or the device's loss when the device went during the setup
// (whatever error the aborted wait returned).
func (g *setupGuard) err(err error) error {
	if err != nil && g.lost.Load() {
		return fmt.Errorf("%w (during setup: %v)", &deviceLostError{dev: g.dev, how: "device lost"}, err)
	}
	return err
}
