package steer

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// reserve binds (without listening) a shadow on ap, port 0 for a free one,
// and returns its address: the test holds the port while helpers share it.
func reserve(t testing.TB, ap string) netip.AddrPort {
	t.Helper()
	s, err := shadow.Bind(netip.MustParseAddrPort(ap))
	if err != nil {
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
			t.Skipf("no %s here: %v", ap, err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.Addr()
}

// bindListen binds a shadow on ap and returns it, not listening yet.
func bindShadow(t testing.TB, ap netip.AddrPort) *shadow.Socket {
	t.Helper()
	s, err := shadow.Bind(ap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openGroup opens the group of s, skipping where BPF is not to be had.
func openGroup(t testing.TB, s Socket) *Group {
	t.Helper()
	k, err := KeyOf(s)
	if err != nil {
		t.Fatal(err)
	}
	g, err := Open(k, nil)
	skipIfDegraded(t, err)
	t.Cleanup(func() { g.Release() })
	return g
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestKeyName(t *testing.T) {
	for ap, want := range map[string]string{
		"127.0.0.1:5000":          "inet-127_0_0_1-5000",
		"[::ffff:10.0.0.1]:80":    "inet-10_0_0_1-80",
		"[::1]:5000":              "inet6-::1-5000",
		"[fe80::1%2]:7":           "inet6-fe80::1%2-7",
		"[fe80::1%lo]:7":          "inet6-fe80::1%1-7",
		"[fe80::1%no.such]:7":     "inet6-fe80::1%no_such-7",
		"0.0.0.0:65535":           "inet-0_0_0_0-65535",
		"[2001:db8::ab:cd]:12345": "inet6-2001:db8::ab:cd-12345",
	} {
		k := Key{NetNS: 1, Addr: netip.MustParseAddrPort(ap)}
		if got := k.Name(); got != want {
			t.Errorf("%s: %q, want %q", ap, got, want)
		}
	}
	for _, k := range []Key{{}, {NetNS: 1}, {NetNS: 1, Addr: netip.MustParseAddrPort("127.0.0.1:0")}} {
		if _, err := Open(k, nil); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Open(%v): %v, want EINVAL", k, err)
		}
	}
}

// Open mounts bpffs at /sys/fs/bpf (the test's mount namespace starts
// without one), pins the netns's program and maps once at the documented
// path with mode 0700, makes the group's directory and index, and a second
// Open joins the same group. The last Release removes the group's directory
// and entries, and leaves the netns's objects pinned.
func TestOpenPinsAndJoins(t *testing.T) {
	skipUnlessBPF(t)
	testutil.CheckFDs(t)
	s := bindShadow(t, reserve(t, "127.0.0.1:0"))
	k, err := KeyOf(s)
	must(t, err)
	ns, err := NetNS()
	must(t, err)
	if k.NetNS != ns || k.Addr != s.Addr() {
		t.Fatalf("KeyOf: %v, want netns %d addr %s", k, ns, s.Addr())
	}
	g1, err := Open(k, nil)
	skipIfDegraded(t, err)
	defer g1.Close()
	var st unix.Statfs_t
	must(t, unix.Statfs(bpffsMount, &st))
	if st.Type != unix.BPF_FS_MAGIC {
		t.Fatalf("%s is not bpffs after Open", bpffsMount)
	}
	nsdir := filepath.Join(DefaultRoot, fmt.Sprint(k.NetNS), nsDirName)
	want := filepath.Join(nsdir, k.Name())
	if g1.Dir() != want {
		t.Fatalf("Dir %s, want %s", g1.Dir(), want)
	}
	for _, d := range []string{DefaultRoot, filepath.Dir(nsdir), nsdir, want} {
		fi, err := os.Stat(d)
		must(t, err)
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	for _, p := range []string{filepath.Join(nsdir, pinProg), filepath.Join(nsdir, pinSocks),
		filepath.Join(nsdir, pinGroups), filepath.Join(nsdir, pinState)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want no group or other access", p, fi.Mode().Perm())
		}
	}
	if id, err := pinnedMapID(t, nsdir); err != nil || id != mapID(t, g1.ns.socks) {
		t.Fatalf("pinned map %d (%v), the group's %d", id, err, mapID(t, g1.ns.socks))
	}
	pk, err := progKeyOf(k)
	must(t, err)
	var idx uint32
	must(t, g1.ns.groups.Lookup(pk, &idx))
	if idx != g1.idx {
		t.Fatalf("groups map has index %d for the key, the group %d", idx, g1.idx)
	}
	g2, err := Open(k, nil)
	must(t, err)
	defer g2.Close()
	if g2.idx != g1.idx {
		t.Fatalf("second Open has index %d, first %d", g2.idx, g1.idx)
	}
	must(t, g2.Close())
	must(t, g2.Close())
	if err := g2.Designate(s); !errors.Is(err, ErrClosed) {
		t.Fatalf("Designate after Close: %v", err)
	}
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("Close removed the group: %v", err)
	}
	removed, err := g1.Release()
	must(t, err)
	if !removed {
		t.Fatal("last Release did not remove the group")
	}
	if _, err := os.Stat(want); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("group directory after the last Release: %v", err)
	}
	o, err := loadNS(nsdir)
	must(t, err)
	defer o.close()
	if err := o.groups.Lookup(pk, &idx); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("the group's key after the last Release: %v, want ErrKeyNotExist", err)
	}
	if w := o.word(g1.idx).Load(); w&stInUse != 0 {
		t.Fatalf("index %d still allocated after the last Release (state %#x)", g1.idx, w)
	}
}

// slotKey is the key of the group's slot 0 or 1 in the netns's
// REUSEPORT_SOCKARRAY.
func (g *Group) slotKey(slot uint32) uint32 { return numSlots*g.idx + slot }
