package steer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// pinnedMapID is the id of the REUSEPORT_SOCKARRAY pinned in the per-netns
// directory dir.
func pinnedMapID(t testing.TB, dir string) (ebpf.MapID, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinSocks), nil)
	if err != nil {
		return 0, err
	}
	defer m.Close()
	return mapID(t, m), nil
}

// pinnedIndex reads g's key from the groups map pinned in its netns
// directory (not through g's own descriptors).
func pinnedIndex(g *Group) (uint32, error) {
	o, err := loadNS(filepath.Dir(g.Dir()))
	if err != nil {
		return 0, err
	}
	defer o.close()
	var idx uint32
	err = o.groups.Lookup(g.pk, &idx)
	return idx, err
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
	if idx, err := pinnedIndex(g2); err != nil || idx != g2.idx {
		t.Fatalf("group entry while a member holds the group: index %d (%v), want %d", idx, err, g2.idx)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("group directory while a member holds the group: %v", err)
	}
	if removed, err := g2.Release(); !removed || err != nil {
		t.Fatalf("last Release: %v %v", removed, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("group directory after the last Release: %v", err)
	}
	if _, err := pinnedIndex(g2); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("group entry after the last Release: %v, want ErrKeyNotExist", err)
	}
	if _, err := pinnedMapID(t, filepath.Dir(dir)); err != nil {
		t.Fatalf("the netns's objects after the last Release: %v (they stay pinned)", err)
	}
}

// A member that dies holds no lock: the next Release removes the group. A
// live member in another process keeps it.
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
// group at random. Invariant: while a Group is open its directory is in
// place and the pinned groups map gives its key its index, allocated; Open
// always succeeds.
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
				var idx uint32
				err = g.ns.groups.Lookup(g.pk, &idx)
				if err != nil || idx != g.idx || g.ns.word(idx).Load()&stInUse == 0 || !g.ns.sameDir(g.dirfd, g.name) {
					errs <- fmt.Errorf("worker %d iter %d: open group's entry: index %d (%v), own %d, directory in place %v",
						w, i, idx, err, g.idx, g.ns.sameDir(g.dirfd, g.name))
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

// Many Opens of a fresh group at once all end up with the same index.
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
		if a, b := gs[i].idx, gs[0].idx; a != b {
			t.Fatalf("Open %d has index %d, Open 0 index %d", i, a, b)
		}
	}
}

// A directory at the group's path that is not a group (no entry in the
// groups map) is replaced when nobody holds it, and refused
// (ErrIncompatible) when somebody does. A key whose directory is gone (its
// creator or remover died halfway) is taken over with its index, its slots
// emptied. An allocated index no key maps to is collected.
func TestDamagedAndStale(t *testing.T) {
	skipUnlessBPF(t)
	k := testKey(t, "127.0.0.1:0")
	g, err := Open(k, nil)
	skipIfDegraded(t, err)
	dir := g.Dir()
	g.Release()

	// Not a group: a directory made by hand.
	must(t, os.MkdirAll(filepath.Join(dir, "junk"), 0o700))
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
	if idx, err := pinnedIndex(g); err != nil || idx != g.idx {
		t.Fatalf("replaced group's index %d (%v), want %d", idx, err, g.idx)
	}

	// A remover that died between removing the directory and the entries,
	// with a listener still in the designated slot.
	a := bindShadow(t, k.Addr)
	must(t, g.Listen(a, 16))
	must(t, g.Designate(a))
	idx := g.idx
	o := g.ns
	o.refs++ // keep the handle for the removal
	g.Close()
	must(t, o.removeGroupDir(g.name))
	releaseNS(o)
	g, err = Open(k, nil)
	must(t, err)
	if g.idx != idx {
		t.Fatalf("stale key's group has index %d, the key had %d", g.idx, idx)
	}
	if st := status(t, g); st.Designated != 0 || st.Standby != 0 {
		t.Fatalf("stale key's slots not emptied: %+v", st)
	}
	a.Close()
	g.Release()

	// An index allocated to no key (a creator that died before mapping it).
	g, err = Open(k, nil)
	must(t, err)
	defer g.Release()
	o = g.ns
	leak := (g.idx + 1) % MaxGroups
	o.word(leak).Store(stInUse)
	must(t, o.lock())
	err = o.collect()
	o.unlock()
	must(t, err)
	if w := o.word(leak).Load(); w != 0 {
		t.Fatalf("leaked index %d not collected: state %#x", leak, w)
	}
	if w := o.word(g.idx).Load(); w&stInUse == 0 {
		t.Fatalf("collect freed the open group's index %d", g.idx)
	}
}

// The netns's objects: a directory of them that is not whole is replaced
// when no group in it is held; a temporary directory left by a creator that
// died is cleaned up; processes creating them at once end with one program.
func TestNetNSObjects(t *testing.T) {
	skipUnlessBPF(t)
	root := t.TempDir()
	must(t, ensureBPFFS(root))
	defer unix.Unmount(root, unix.MNT_DETACH)
	k := testKey(t, "127.0.0.1:0")
	nsdir := filepath.Join(root, fmt.Sprint(k.NetNS))

	// Processes opening the group at once, the netns's objects not made yet.
	const n = 6
	cmds := make([]*exec.Cmd, n)
	outs := make([]*bytes.Buffer, n)
	for i := range cmds {
		cmds[i] = testutil.HelperCommand(t, 0, envHelper+"=probe", "STEER_ROOT="+root,
			fmt.Sprintf("STEER_KEY=%d %s", k.NetNS, k.Addr))
		outs[i] = new(bytes.Buffer)
		cmds[i].Stdout = outs[i]
		must(t, cmds[i].Start())
	}
	var progs []uint32
	for i, cmd := range cmds {
		must(t, cmd.Wait())
		var r probeResult
		must(t, json.Unmarshal(outs[i].Bytes(), &r))
		if r.Open != 0 {
			t.Fatalf("helper %d: Open: %s", i, r.OpenErr)
		}
		progs = append(progs, r.ProgID)
	}
	if slices.Sort(progs); progs[0] != progs[n-1] {
		t.Fatalf("%d processes creating the netns's objects at once loaded programs %v", n, progs)
	}
	ents, err := os.ReadDir(nsdir)
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != nsDirName {
		t.Fatalf("netns directory holds %v, want only %s", ents, nsDirName)
	}

	// Not whole: the program's pin removed by hand. A held group keeps it
	// (ErrIncompatible); without one it is made again.
	g, err := Open(k, &Options{Root: root})
	must(t, err)
	must(t, os.Remove(filepath.Join(nsdir, nsDirName, pinProg)))
	k2 := testKey(t, "127.0.0.1:0")
	g2, err := Open(k2, &Options{Root: root})
	if err != nil {
		t.Fatalf("Open with a cached handle on the damaged objects: %v", err)
	}
	if _, err := loadNS(filepath.Join(nsdir, nsDirName)); !errors.Is(err, errDamaged) {
		t.Fatalf("loadNS of the damaged objects: %v, want errDamaged", err)
	}
	if err := removeDamagedNS(filepath.Join(nsdir, nsDirName)); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("removing damaged objects with a group held: %v, want ErrIncompatible", err)
	}
	g2.Release()
	g.Release()
	must(t, CloseIdle()) // as another process would, load the objects from the pins
	g, err = Open(k, &Options{Root: root})
	must(t, err)
	if _, err := os.Stat(filepath.Join(nsdir, nsDirName, pinProg)); err != nil {
		t.Fatalf("damaged objects not made again: %v", err)
	}
	g.Release()

	// A creator that died halfway: its temporary directory, unlocked.
	stale := filepath.Join(nsdir, "tmp-"+nsDirName+"-1-99-1")
	must(t, os.Mkdir(stale, 0o700))
	m, err := ebpf.NewMap(stateSpec())
	must(t, err)
	must(t, m.Pin(filepath.Join(stale, pinState)))
	m.Close()
	must(t, os.RemoveAll(filepath.Join(nsdir, nsDirName)))
	defer func(age time.Duration) { staleAge = age }(staleAge)
	staleAge = 0
	g, err = Open(k, &Options{Root: root})
	must(t, err)
	defer g.Release()
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
// which Degraded recognizes. Nor can it reach the steering maps another way:
// by their pin (BPF_OBJ_GET: EACCES on the 0700 directories, or EPERM where
// unprivileged bpf(2) is off) or by their id (BPF_MAP_GET_FD_BY_ID needs
// CAP_SYS_ADMIN: EPERM).
func TestOtherUIDCannotJoin(t *testing.T) {
	skipUnlessBPF(t)
	addr := reserve(t, "127.0.0.1:0")
	startListener(t, addr, 'A', listenerOpts{role: "designate"})
	ns, _ := NetNS()
	k := Key{NetNS: ns, Addr: addr}
	g, err := Open(k, nil)
	must(t, err)
	defer g.Close()
	info, err := g.ns.socks.Info()
	must(t, err)
	mapID, _ := info.ID()
	cmd := testutil.HelperCommand(t, 65534, envHelper+"=probe", "STEER_ADDR="+addr.String(),
		"STEER_DIR="+g.Dir(), fmt.Sprintf("STEER_KEY=%d %s", k.NetNS, k.Addr),
		"STEER_PIN="+filepath.Join(filepath.Dir(g.Dir()), pinSocks), fmt.Sprintf("STEER_MAPID=%d", mapID))
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
	if r.PinGet != int(unix.EACCES) && r.PinGet != int(unix.EPERM) {
		t.Errorf("BPF_OBJ_GET of the socks map's pin as uid 65534: errno %d, want EACCES or EPERM", r.PinGet)
	}
	if r.MapByID != int(unix.EPERM) {
		t.Errorf("BPF_MAP_GET_FD_BY_ID of the socks map as uid 65534: errno %d, want EPERM", r.MapByID)
	}
}

// Without BPF privilege: a process that is root only in its own user
// namespace (no CAP_BPF in the initial one) cannot create the netns's maps
// nor load the program, and uid 65534 cannot even reach the pins. Open says
// ErrNotPermitted; the caller runs without steering. Once the netns's
// objects exist, the user namespace's root (kuid 0, the pins' owner) can
// open them, and then make a group: that is map updates, which need no
// capability, only the pinned maps' descriptors.
func TestNoBPFPrivilege(t *testing.T) {
	skipUnlessBPF(t)
	root := t.TempDir()
	must(t, ensureBPFFS(root))
	defer unix.Unmount(root, unix.MNT_DETACH)
	usernsProbe := func(env ...string) probeResult {
		cmd := testutil.HelperCommand(t, 0, append([]string{envHelper + "=probe"}, env...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}},
		}
		return runProbe(t, cmd)
	}
	fresh := testKey(t, "127.0.0.1:0")
	key := fmt.Sprintf("STEER_KEY=%d %s", fresh.NetNS, fresh.Addr)
	r := usernsProbe(key, "STEER_ROOT="+root)
	t.Logf("root in a user namespace, no netns objects yet: %+v", r)
	if !r.NotPermitted || !r.Degraded || r.Open != int(unix.EPERM) {
		t.Errorf("Open in a user namespace: %q (errno %d), want ErrNotPermitted with EPERM", r.OpenErr, r.Open)
	}

	// The netns's objects made by a privileged process (this one).
	warm := testKey(t, "127.0.0.1:0")
	g, err := Open(warm, &Options{Root: root})
	skipIfDegraded(t, err)
	defer g.Release()
	r = runProbe(t, testutil.HelperCommand(t, 65534, envHelper+"=probe", key, "STEER_ROOT="+root))
	t.Logf("uid 65534, fresh group: %+v", r)
	if !r.NotPermitted || !r.Degraded {
		t.Errorf("Open as uid 65534: %q, want ErrNotPermitted", r.OpenErr)
	}
	r = usernsProbe(key, "STEER_ROOT="+root)
	t.Logf("root in a user namespace, fresh group, netns objects there: %+v", r)
	if r.Open != 0 || r.ProgID == 0 {
		t.Errorf("Open in a user namespace with the netns objects pinned: %q, want success", r.OpenErr)
	}
}

// Open keeps the process's handle on the netns's objects after the last
// Group of the netns closes, and the next Open uses it, loading nothing;
// CloseIdle closes it: then no descriptor is left (counted strictly here:
// testutil.CheckFDs does not count the kept handles).
func TestCloseIdle(t *testing.T) {
	skipUnlessBPF(t)
	k := testKey(t, "127.0.0.1:0")
	must(t, CloseIdle())
	before := testutil.FDCount(t)
	g, err := Open(k, nil)
	skipIfDegraded(t, err)
	o := g.ns
	if _, err := g.Release(); err != nil {
		t.Fatal(err)
	}
	if n := testutil.FDCount(t); n != before+5 {
		t.Errorf("%d descriptors with the idle handle, want %d (program, three maps, netns directory)", n, before+5)
	}
	g, err = Open(k, nil)
	must(t, err)
	if g.ns != o {
		t.Errorf("second Open loaded the netns objects again")
	}
	must(t, CloseIdle()) // in use: stays
	if g.ns.mem == nil {
		t.Fatal("CloseIdle closed a handle in use")
	}
	if _, err := g.Release(); err != nil {
		t.Fatal(err)
	}
	must(t, CloseIdle())
	if n := testutil.FDCount(t); n != before {
		t.Errorf("%d descriptors after CloseIdle, %d before the test", n, before)
	}
	nsCache.mu.Lock()
	for ck, o := range nsCache.m {
		if ck.ns == k.NetNS && ck.root == DefaultRoot {
			t.Errorf("handle cached after CloseIdle: %+v refs %d", ck, o.refs)
		}
	}
	nsCache.mu.Unlock()
}
