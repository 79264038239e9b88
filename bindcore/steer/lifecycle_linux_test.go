package steer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// testKey returns a key of the test's netns for a port nobody uses (the
// pins do not care whether a socket exists).
func testKey(t testing.TB, ap string) Key {
	t.Helper()
	ns, err := NetNS()
	must(t, err)
	return Key{NetNS: ns, Addr: reserve(t, ap)}
}

func mapID(t testing.TB, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	must(t, err)
	id, _ := info.ID()
	return id
}

func pinnedMapID(t testing.TB, dir string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinSocks), nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return mapID(t, m), nil
}

func TestReleaseLastRemoves(t *testing.T) {
	skipUnlessBPF(t)
	testutil.CheckFDs(t)
	k := testKey(t, "127.0.0.1:0")
	g1, err := Open(k, nil)
	skipIfDegraded(t, err)
	g2, err := Open(k, nil)
	must(t, err)
	dir := g1.Dir()
	if removed, err := g1.Release(); removed || err != nil {
		t.Fatalf("Release with another member: %v %v", removed, err)
	}
	if removed, err := g1.Release(); removed || err != nil {
		t.Fatalf("second Release: %v %v", removed, err)
	}
	if _, err := pinnedMapID(t, dir); err != nil {
		t.Fatalf("pins gone while a member holds the group: %v", err)
	}
	if removed, err := g2.Release(); !removed || err != nil {
		t.Fatalf("last Release: %v %v", removed, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("group directory after the last Release: %v", err)
	}
}

// A member that dies holds no lock: the next Release removes the pins. A
// live member in another process keeps them.
func TestMemberProcessCounts(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	l := startListener(t, addr, 'A', listenerOpts{role: "designate"})
	ns, _ := NetNS()
	k := Key{NetNS: ns, Addr: addr}
	g, err := Open(k, nil)
	must(t, err)
	if removed, err := g.Release(); removed || err != nil {
		t.Fatalf("Release with a live member process: %v %v", removed, err)
	}
	l.sigkill()
	<-l.Exited
	g, err = Open(k, nil)
	must(t, err)
	if removed, err := g.Release(); !removed || err != nil {
		t.Fatalf("Release after the other member was killed: %v %v", removed, err)
	}
}

// Goroutines (each Open is its own open file description, so its own flock
// holder, as a process would be) open, check, and close or release one
// group at random. Invariant: while a Group is open its pins are in place
// and are its own objects; Open always succeeds.
func TestConcurrentOpenRelease(t *testing.T) {
	skipUnlessBPF(t)
	testutil.CheckFDs(t)
	k := testKey(t, "127.0.0.1:0")
	const workers, iters = 8, 150
	var wg sync.WaitGroup
	var removals sync.Map
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				g, err := Open(k, nil)
				if err != nil {
					errs <- err
					return
				}
				pinned, err := pinnedMapID(t, g.Dir())
				if err != nil || pinned != mapID(t, g.socks) {
					errs <- fmt.Errorf("worker %d iter %d: open group's pin: id %d (%v), own %d", w, i, pinned, err, mapID(t, g.socks))
					g.Close()
					return
				}
				if _, err := g.Status(); err != nil {
					errs <- err
				}
				if (w+i)%3 == 0 {
					removed, err := g.Release()
					if err != nil {
						errs <- err
						return
					}
					if removed {
						removals.Store(fmt.Sprint(w, i), true)
					}
				} else {
					g.Close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	n := 0
	removals.Range(func(any, any) bool { n++; return true })
	t.Logf("%d workers x %d opens: %d removals", workers, iters, n)
	g, err := Open(k, nil)
	must(t, err)
	if removed, err := g.Release(); !removed || err != nil {
		t.Fatalf("final Release: %v %v", removed, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(g.Dir()))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "tmp-") {
			t.Errorf("temporary directory left: %s", e.Name())
		}
	}
}

// Many Opens of a fresh group at once all end up with the same objects.
func TestConcurrentCreate(t *testing.T) {
	skipUnlessBPF(t)
	k := testKey(t, "[::1]:0")
	const n = 16
	gs := make([]*Group, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			gs[i], errs[i] = Open(k, nil)
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		must(t, errs[i])
		defer gs[i].Release()
		if a, b := mapID(t, gs[i].socks), mapID(t, gs[0].socks); a != b {
			t.Fatalf("Open %d has map %d, Open 0 map %d", i, a, b)
		}
	}
}

// A directory at the group's path that is not a group of this version is
// replaced when nobody holds it, and refused (ErrIncompatible) when
// somebody does. A temporary directory left by a creator that died is
// cleaned up.
func TestDamagedAndStale(t *testing.T) {
	skipUnlessBPF(t)
	k := testKey(t, "127.0.0.1:0")
	g, err := Open(k, nil)
	skipIfDegraded(t, err)
	dir := g.Dir()
	nsdir := filepath.Dir(dir)
	g.Release()

	// A damaged group: only a foreign map, pinned as "map".
	must(t, os.MkdirAll(dir, 0o700))
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	must(t, err)
	must(t, m.Pin(filepath.Join(dir, pinSocks)))
	m.Close()
	holder, err := os.Open(dir)
	must(t, err)
	must(t, unix.Flock(int(holder.Fd()), unix.LOCK_SH))
	if _, err := Open(k, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("Open of a held foreign group: %v, want ErrIncompatible", err)
	}
	holder.Close()
	g, err = Open(k, nil)
	if err != nil {
		t.Fatalf("Open of an unheld foreign group: %v", err)
	}
	if mt := g.socks.Type(); mt != ebpf.ReusePortSockArray {
		t.Fatalf("replaced group's map is %v", mt)
	}

	// A creator that died halfway: its temporary directory, unlocked.
	stale := filepath.Join(nsdir, "tmp-inet-127_0_0_1-1-99-1")
	must(t, os.Mkdir(stale, 0o700))
	m, err = ebpf.NewMap(activeSpec())
	must(t, err)
	must(t, m.Pin(filepath.Join(stale, pinActive)))
	m.Close()
	g.Release()
	k2 := testKey(t, "127.0.0.1:0")
	defer func(age time.Duration) { staleAge = age }(staleAge)
	staleAge = 0
	g2, err := Open(k2, nil)
	must(t, err)
	defer g2.Release()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temporary directory after a create: %v", err)
	}
}

// bpffs is mounted where missing, once even when asked twice; a root
// outside bpffs is refused with ErrNotSupported.
func TestEnsureBPFFS(t *testing.T) {
	skipUnlessBPF(t)
	dir := t.TempDir()
	must(t, ensureBPFFS(dir))
	defer unix.Unmount(dir, unix.MNT_DETACH)
	must(t, ensureBPFFS(dir))
	mi, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	if n := strings.Count(string(mi), " "+dir+" "); n != 1 {
		t.Fatalf("%s mounted %d times", dir, n)
	}
	k := testKey(t, "127.0.0.1:0")
	if _, err := Open(k, &Options{Root: filepath.Join(t.TempDir(), "rdmabind")}); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("Open under a root not on bpffs: %v, want ErrNotSupported", err)
	}
	g, err := Open(k, &Options{Root: filepath.Join(dir, "elsewhere")})
	must(t, err)
	if !strings.HasPrefix(g.Dir(), dir) {
		t.Fatalf("Dir %s not under the given root", g.Dir())
	}
	g.Release()
}

// Another uid can neither join the kernel's reuseport group (EADDRINUSE)
// nor open the group's pin directory (mode 0700): Open says ErrNotPermitted,
// which Degraded recognizes.
func TestOtherUIDCannotJoin(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	startListener(t, addr, 'A', listenerOpts{role: "designate"})
	ns, _ := NetNS()
	k := Key{NetNS: ns, Addr: addr}
	g, err := Open(k, nil)
	must(t, err)
	defer g.Close()
	cmd := testutil.HelperCommand(t, 65534, envHelper+"=probe", "STEER_ADDR="+addr.String(),
		"STEER_DIR="+g.Dir(), fmt.Sprintf("STEER_KEY=%d %s", k.NetNS, k.Addr))
	r := runProbe(t, cmd)
	t.Logf("uid 65534: %+v", r)
	if r.Bind != int(unix.EADDRINUSE) {
		t.Errorf("bind as uid 65534: errno %d, want EADDRINUSE", r.Bind)
	}
	if r.OpenDir != int(unix.EACCES) {
		t.Errorf("opening the pin directory as uid 65534: errno %d, want EACCES", r.OpenDir)
	}
	if !r.NotPermitted || !r.Degraded {
		t.Errorf("Open as uid 65534: %q, want ErrNotPermitted", r.OpenErr)
	}
}

// Without BPF privilege: a process that is root only in its own user
// namespace (no CAP_BPF in the initial one) cannot load the program, and
// uid 65534 cannot even reach the pins. Open says ErrNotPermitted; the
// caller runs without steering.
func TestNoBPFPrivilege(t *testing.T) {
	skipUnlessBPF(t)
	// Make sure bpffs and the root exist, so the probes reach the load.
	warm := testKey(t, "127.0.0.1:0")
	g, err := Open(warm, nil)
	skipIfDegraded(t, err)
	defer g.Release()

	fresh := testKey(t, "127.0.0.1:0")
	env := []string{envHelper + "=probe", fmt.Sprintf("STEER_KEY=%d %s", fresh.NetNS, fresh.Addr)}
	userns := testutil.HelperCommand(t, 0, env...)
	userns.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	r := runProbe(t, userns)
	t.Logf("root in a user namespace, fresh group: %+v", r)
	if !r.NotPermitted || !r.Degraded || r.Open != int(unix.EPERM) {
		t.Errorf("Open in a user namespace: %q (errno %d), want ErrNotPermitted with EPERM", r.OpenErr, r.Open)
	}
	r = runProbe(t, testutil.HelperCommand(t, 65534, env...))
	t.Logf("uid 65534, fresh group: %+v", r)
	if !r.NotPermitted || !r.Degraded {
		t.Errorf("Open as uid 65534: %q, want ErrNotPermitted", r.OpenErr)
	}

	// An existing group, from the user namespace: the pins are files the
	// same kuid owns, and opening pinned objects needs no capability.
	userns = testutil.HelperCommand(t, 0, envHelper+"=probe", fmt.Sprintf("STEER_KEY=%d %s", warm.NetNS, warm.Addr))
	userns.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
	}
	r = runProbe(t, userns)
	t.Logf("root in a user namespace, existing group: %+v", r)
}
