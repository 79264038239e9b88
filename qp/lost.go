package qp

import (
	"fmt"

	"golang.org/x/sys/unix"
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
