//go:build linux

package rdmacm

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// While a lost device is not yet let go of, no id may land on it: a Bind
// that finds it fails with ENETDOWN (LostError) and is not counted, so the
// count of ids on the device reaches 0 however busy the process is. Once
// the process let go of it, an id that finds a device of that name is on a
// new one: the loss is over. A DEVICE_REMOVAL read late, for an id on the
// old device, does not make the new one lost.
func TestLostDeviceRefusesNewIDs(t *testing.T) {
	ec, f := newFake(t)
	evs := make(chan DeviceEvent, 8)
	stop := WatchDevices(func(ev DeviceEvent) { evs <- ev })
	defer stop()
	defer hub.added("fake0")
	bind := func() (*ID, error) {
		id, err := ec.CreateID(PortSpaceTCP)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { id.Close() })
		return id, id.Bind(netip.MustParseAddrPort("10.0.0.1:7000"))
	}
	old, err := bind()
	if err != nil {
		t.Fatal(err)
	}
	// The old id's context: its uverbs node had inode 1001.
	hub.mu.Lock()
	old.s.ino = 1001
	hub.fds["fake0"] = []ctxFDs{{dev: "fake0", cmd: -1, async: -1, ino: 1001}}
	hub.mu.Unlock()
	hub.lostNode("fake0")
	if ev := <-evs; ev != (DeviceEvent{Device: "fake0", Lost: true}) {
		t.Fatalf("reported %+v, want fake0 lost", ev)
	}
	// The old id is still open: the device is not let go of yet.
	for range 3 {
		if _, err := bind(); !errors.Is(err, unix.ENETDOWN) || !errors.As(err, new(*LostError)) {
			t.Fatalf("Bind on the device being removed: %v, want a LostError matching ENETDOWN", err)
		}
	}
	if n := IDsOn("fake0"); n != 1 {
		t.Fatalf("%d ids counted on fake0, want 1 (the refused ones not counted)", n)
	}
	// A connect request whose id lands on the lost device is refused
	// (its id destroyed), not delivered.
	lid, err := ec.CreateID(PortSpaceTCP)
	if err != nil {
		t.Fatal(err)
	}
	defer lid.Close()
	lkey := fakeOf(lid).key
	req := &fakeID{ch: f, name: "req", key: lkey, local: netip.MustParseAddrPort("10.0.0.1:7000")}
	f.push(rawEvent{typ: EventConnectRequest, key: lkey, listenKey: lkey, newID: req})
	f.push(rawEvent{typ: EventDisconnected, key: fakeOf(old).key})
	if ev := getEvent(t, ec); ev.Type != EventDisconnected {
		t.Fatalf("got %v, want the request skipped and DISCONNECTED next", ev.Type)
	}
	if !req.gone {
		t.Fatal("the refused request's id was not destroyed")
	}
	// The old id goes: the release finds its context gone (no such
	// descriptor), the device is let go of.
	old.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(DeviceState("fake0"), "released true") {
		if time.Now().After(deadline) {
			t.Fatalf("not released: %s", DeviceState("fake0"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new fake0 (a new node): an id on it ends the loss.
	if _, err := bind(); err != nil {
		t.Fatalf("Bind on the new device: %v", err)
	}
	if DeviceLost("fake0") {
		t.Fatalf("fake0 still lost after an id landed on the new one: %s", DeviceState("fake0"))
	}
	// The old id's DEVICE_REMOVAL, read late: stale, fake0 stays up.
	hub.removal("fake0", 1001)
	time.Sleep(50 * time.Millisecond)
	if DeviceLost("fake0") {
		t.Fatalf("a stale DEVICE_REMOVAL made the new fake0 lost: %s", DeviceState("fake0"))
	}
}
