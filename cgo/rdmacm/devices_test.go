//go:build linux

package rdmacm

import (
	"net/netip"
	"testing"
	"time"
)

// A DEVICE_REMOVAL on an id is the device's loss, reported to the
// subscribers once however many ids get it; ids are counted on their
// device until closed; an appearing device is reported and ends the loss.
func TestDeviceRemovalReported(t *testing.T) {
	ec, f := newFake(t)
	evs := make(chan DeviceEvent, 8)
	stop := WatchDevices(func(ev DeviceEvent) { evs <- ev })
	defer stop()
	var ids []*ID
	for range 2 {
		id, err := ec.CreateID(PortSpaceTCP)
		if err != nil {
			t.Fatal(err)
		}
		if err := id.Bind(netip.MustParseAddrPort("10.0.0.1:7000")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	count := func() int {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.ids["fake0"]
	}
	if n := count(); n != 2 {
		t.Fatalf("%d ids counted on fake0, want 2", n)
	}
	for _, id := range ids {
		f.push(rawEvent{typ: EventDeviceRemoval, key: fakeOf(id).key})
		if ev := getEvent(t, ec); ev.Type != EventDeviceRemoval || ev.ID != id {
			t.Fatalf("event %+v, want DEVICE_REMOVAL of the id", ev)
		}
	}
	select {
	case ev := <-evs:
		if ev != (DeviceEvent{Device: "fake0", Lost: true}) {
			t.Fatalf("reported %+v, want fake0 lost", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the loss was not reported")
	}
	select {
	case ev := <-evs:
		t.Fatalf("reported again: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	if !DeviceLost("fake0") {
		t.Fatal("DeviceLost(fake0) false after the loss")
	}
	for _, id := range ids {
		id.Close()
	}
	if n := count(); n != 0 {
		t.Fatalf("%d ids counted on fake0 after Close, want 0", n)
	}
	hub.added("fake0")
	if ev := <-evs; ev != (DeviceEvent{Device: "fake0"}) {
		t.Fatalf("reported %+v, want fake0 appeared", ev)
	}
	if DeviceLost("fake0") {
		t.Fatal("DeviceLost(fake0) true after it appeared")
	}
	stop()
	stop()
	hub.added("fake0")
	select {
	case ev := <-evs:
		t.Fatalf("reported after stop: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}
