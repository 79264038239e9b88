package steer

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/shadow"
)

// BenchmarkDesignate is the designation switch: Designate alternating
// between two listeners, so that each call designates the standby (one
// bpf(2) lookup of the standby slot and a compare-and-swap of the state
// word; the shadows keep their cookies). "map-update" is the kernel's part
// of a switch that puts a socket in a slot: one REUSEPORT_SOCKARRAY update
// replacing the socket in a slot.
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

// BenchmarkOpen is Open of an existing group (open its directory, flock,
// look its key up) with Close, and of a new one (under the netns lock: an
// index, the key's entry, the directory) with Release (the directory and
// the entries removed). The netns's objects are loaded already.
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
// are off the clock. The process's handle on the netns's objects is kept
// between groups (as Open keeps it); with "cold" it is closed after each
// (CloseIdle, off the clock), and each Open loads the objects from their
// pins, as the first Open of a process does.
func BenchmarkListenNewGroup(b *testing.B) {
	skipUnlessBPF(b)
	keep := bindShadow(b, reserve(b, "127.0.0.1:0"))
	gk := openGroup(b, keep)
	prog := gk.ns.prog.FD() // a descriptor of the kept handle
	run := func(b *testing.B, steered, cold bool) {
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
			if cold {
				CloseIdle()
			}
			b.StartTimer()
		}
	}
	b.Run("steer", func(b *testing.B) { run(b, true, false) })
	b.Run("raw", func(b *testing.B) { run(b, false, false) })
	b.Run("cold", func(b *testing.B) {
		gk.Release()
		run(b, true, true)
	})
}
