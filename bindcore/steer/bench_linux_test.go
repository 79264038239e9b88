package steer

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/shadow"
)

// BenchmarkDesignate is the designation switch: Designate alternating
// between two listeners (each call reads the slots, puts the socket in the
// standby slot and flips the designated slot: 1 getsockopt and 5 bpf(2)
// calls). "map-update" is the kernel's part alone: one REUSEPORT_SOCKARRAY
// update replacing the socket in a slot.
func BenchmarkDesignate(b *testing.B) {
	skipUnlessBPF(b)
	addr := reserve(b, "127.0.0.1:0")
	x := bindShadow(b, addr)
	g := openGroup(b, x)
	must(b, g.Listen(x, 16))
	y := listenIn(b, g, addr)
	b.Run("switch", func(b *testing.B) {
		socks := []Socket{x, y}
		i := 0
		for b.Loop() {
			if err := g.Designate(socks[i&1]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("map-update", func(b *testing.B) {
		var fds [2]int
		x.Control(func(fd int) error { fds[0] = fd; return nil })
		y.Control(func(fd int) error { fds[1] = fd; return nil })
		g.ns.socks.Delete(g.slotKey(0))
		g.ns.socks.Delete(g.slotKey(1))
		i := 0
		for b.Loop() {
			if err := g.ns.socks.Put(g.slotKey(0), uint64(fds[i&1])); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkAttach is SO_ATTACH_REUSEPORT_EBPF on a listener of the group
// (with Attach's checks).
func BenchmarkAttach(b *testing.B) {
	skipUnlessBPF(b)
	addr := reserve(b, "127.0.0.1:0")
	x := bindShadow(b, addr)
	g := openGroup(b, x)
	must(b, g.Listen(x, 16))
	for b.Loop() {
		if err := g.Attach(x); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListen is a shadow's bind, listen and close, joining a group
// whose designated listener stays: "attach" with Group.Listen (checks,
// listen(2), attach), "plain" with the shadow's own Listen, for comparison.
func BenchmarkListen(b *testing.B) {
	skipUnlessBPF(b)
	addr := reserve(b, "127.0.0.1:0")
	x := bindShadow(b, addr)
	g := openGroup(b, x)
	must(b, g.Listen(x, 16))
	must(b, g.Designate(x))
	for _, attach := range []bool{true, false} {
		name := "plain"
		if attach {
			name = "attach"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				s, err := shadow.Bind(addr)
				if err != nil {
					b.Fatal(err)
				}
				if attach {
					err = g.Listen(s, 16)
				} else {
					err = s.Listen(16)
				}
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

// BenchmarkOpen is Open of an existing group (load the three pins, check
// them, flock) with Close, and of a new one (create the maps, load the
// program through the verifier, pin, rename) with Release.
func BenchmarkOpen(b *testing.B) {
	skipUnlessBPF(b)
	b.Run("join", func(b *testing.B) {
		k := testKey(b, "127.0.0.1:0")
		g0, err := Open(k, nil)
		skipIfDegraded(b, err)
		defer g0.Release()
		for b.Loop() {
			g, err := Open(k, nil)
			if err != nil {
				b.Fatal(err)
			}
			g.Close()
		}
	})
	b.Run("create", func(b *testing.B) {
		k := testKey(b, "127.0.0.1:0")
		for b.Loop() {
			g, err := Open(k, nil)
			if err != nil {
				b.Fatal(err)
			}
			if removed, err := g.Release(); !removed || err != nil {
				b.Fatal(removed, err)
			}
		}
	})
}

// BenchmarkListenNewGroup is the steering part of the first Listen of a
// port: KeyOf, Open of a new group (its key's entry, index and directory;
// the netns's program is loaded already, as it is after the first group of
// the netns), Group.Listen (listen(2) and the attach) and Designate, against
// "raw": listen(2) and SO_ATTACH_REUSEPORT_EBPF of the loaded program, the
// two system calls the steering cannot do without. Bind, Release and close
// are off the clock. Another group stays open throughout, as the netns's
// objects stay pinned: with "cold", none does, and each Open loads them
// from their pins.
func BenchmarkListenNewGroup(b *testing.B) {
	skipUnlessBPF(b)
	keep := bindShadow(b, reserve(b, "127.0.0.1:0"))
	gk := openGroup(b, keep)
	prog := gk.ns.prog.FD()
	run := func(b *testing.B, steered bool) {
		for b.Loop() {
			b.StopTimer()
			s, err := shadow.Bind(netip.MustParseAddrPort("127.0.0.1:0"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			var g *Group
			if steered {
				k, err := KeyOf(s)
				if err == nil {
					g, err = Open(k, nil)
				}
				if err == nil {
					err = g.Listen(s, 16)
				}
				if err == nil {
					err = g.Designate(s)
				}
				if err != nil {
					b.Fatal(err)
				}
			} else {
				err = s.Control(func(fd int) error {
					if err := unix.Listen(fd, 16); err != nil {
						return err
					}
					return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog)
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			s.Close()
			if g != nil {
				g.Release()
			}
			b.StartTimer()
		}
	}
	b.Run("steer", func(b *testing.B) { run(b, true) })
	b.Run("raw", func(b *testing.B) { run(b, false) })
	b.Run("cold", func(b *testing.B) {
		gk.Release()
		run(b, true)
	})
}
