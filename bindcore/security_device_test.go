//go:build linux

package bindcore

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/internal/rundir"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// TestOtherUserCannotReachRootsState, on a real device (the SoftRoCE guest):
// uid 65534 plants a link to a file of root's, a file or a directory at
// every name in /dev/shm rdmabind would use for root's registry; root's
// Binder with the default registry directory then binds and listens (its
// registry is in /run/rdmabind), and the planted link's file is untouched.
// uid 65534 then cannot read root's registry, nor open it for writing
// (which the OFD locks of the listener election need), nor ring its
// doorbell (set its times), nor list root's steering pins, nor join the
// reuseport group of root's port (its Bind fails with WSAEADDRINUSE). The
// same between two users: uid 65533 plants the first fallback names of uid
// 65534 (no runtime directory), and uid 65534's Bind still works.
func TestOtherUserCannotReachRootsState(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	addr := guestAddr(t)
	precious := testutil.Precious(t, 0)
	ns, err := registry.CurrentNetns()
	if err != nil {
		t.Fatal(err)
	}
	names := rundir.Default.Fallbacks(0)
	if old := filepath.Join(rundir.Default.Shared, registry.FileName(ns, 0)); !exists(old) {
		names = append(names, old)
	}
	testutil.SquatAs(t, 65534, precious, names...)
	// And uid 65533 plants the first ten fallback names of uid 65534
	// (which has no runtime directory), whose Binds below must work.
	for _, p := range rundir.Default.Fallbacks(65534) {
		if !exists(p) {
			t.Cleanup(func() { os.RemoveAll(p) }) // uid 65534's own, made below
		}
	}
	testutil.SquatAs(t, 65533, testutil.Precious(t, 65534), rundir.Default.Fallbacks(65534)[:10]...)

	b, err := Open(Options{})
	if err != nil {
		t.Fatalf("Open with %d names planted by uid 65534: %v", len(names), err)
	}
	defer b.Close()
	reg := b.Registry().Path()
	if dir := filepath.Join(rundir.Default.Run, rundir.Name); filepath.Dir(reg) != dir {
		t.Fatalf("root's registry at %s, want it in %s", reg, dir)
	}
	ap := netip.AddrPortFrom(addr, freePort(t, addr))
	s, err := b.Socket(AFInet)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.BindAddrPort(ap); err != nil {
		t.Fatalf("Bind with %d names planted by uid 65534: %v", len(names), err)
	}
	if err := s.Listen(16); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ what, script string }{
		{"read root's registry", "cat " + reg},
		{"open root's registry for writing (OFD locks, the election)", ": >> " + reg},
		{"ring root's doorbell (set the registry's times)", "touch -c " + reg},
		{"list root's steering pins", "ls " + filepath.Join(steer.DefaultRoot, strconv.FormatUint(ns, 10))},
	} {
		out, err := testutil.RunAs(t, 65534, "/bin/sh", "-c", c.script)
		if err == nil {
			t.Errorf("uid 65534 could %s: %q", c.what, out)
		} else if !strings.Contains(out, "ermission denied") && !strings.Contains(out, "No such file") {
			t.Errorf("uid 65534, %s: %v: %q, want permission denied", c.what, err, out)
		}
		t.Logf("uid 65534, %s: %s", c.what, out)
	}
	rep, err := readReport(startHelper(t, "once", "", ap, 65534, false).out)
	if err != nil {
		t.Fatal(err)
	}
	if wsa.Code(rep.Code) != wsa.WSAEADDRINUSE {
		t.Fatalf("uid 65534's Bind of root's listening port: %+v, want WSAEADDRINUSE", rep)
	}
	free := netip.AddrPortFrom(addr, freePort(t, addr))
	if rep, err = readReport(startHelper(t, "once", "", free, 65534, false).out); err != nil || rep.Error != "" {
		t.Fatalf("uid 65534's Bind of a free port with its first fallback names planted by uid 65533: %+v %v", rep, err)
	}
	if !exists(rundir.Default.Fallbacks(65534)[10]) {
		t.Fatalf("uid 65534's registry is not in %s", rundir.Default.Fallbacks(65534)[10])
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}
