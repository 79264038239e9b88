package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

const helperEnv = "RUNDIR_HELPER"

func TestMain(m *testing.M) {
	testutil.DispatchHelper(helperEnv, map[string]func() int{
		"dir": func() int {
			l := Layout{Run: os.Getenv("RUNDIR_RUN"), UserRun: os.Getenv("RUNDIR_USERRUN"), Shared: os.Getenv("RUNDIR_SHARED")}
			d, err := l.Dir()
			if err != nil {
				fmt.Println("err", err)
				return 0
			}
			fmt.Println("ok", d)
			return 0
		},
	})
	os.Exit(m.Run())
}

// dirAs runs l.Dir() in a helper process of uid and returns "ok <dir>" or
// "err <error>".
func dirAs(t *testing.T, uid uint32, l Layout) string {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, helperEnv+"=dir", "RUNDIR_RUN="+l.Run, "RUNDIR_USERRUN="+l.UserRun, "RUNDIR_SHARED="+l.Shared)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper as uid %d: %v", uid, err)
	}
	return strings.TrimSpace(string(out))
}

func wantPrivate(t *testing.T, dir string, uid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uid || st.Mode&0o777 != 0o700 {
		t.Fatalf("%s: mode %#o uid %d, want a directory of uid %d, mode 0700", dir, st.Mode, st.Uid, uid)
	}
}

// TestDirRootUsesRun: root's directory is <Run>/rdmabind, made 0700, the
// same on every call; an existing one of root is kept.
func TestDirRootUsesRun(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	l := Layout{Run: testutil.PublicDir(t), UserRun: testutil.PublicDir(t), Shared: testutil.SharedDir(t)}
	old := unix.Umask(0)
	defer unix.Umask(old)
	for range 2 {
		d, err := l.Dir()
		if err != nil {
			t.Fatal(err)
		}
		if d != filepath.Join(l.Run, Name) {
			t.Fatalf("Dir() = %s, want %s", d, filepath.Join(l.Run, Name))
		}
		wantPrivate(t, d, 0)
	}
}

// TestDirUserUsesRuntimeDir: a user with a runtime directory (logind's
// /run/user/<uid>, 0700) gets <it>/rdmabind.
func TestDirUserUsesRuntimeDir(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	l := Layout{Run: testutil.PublicDir(t), UserRun: testutil.PublicDir(t), Shared: testutil.SharedDir(t)}
	rt := filepath.Join(l.UserRun, "65534")
	if err := os.Mkdir(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rt, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	want := "ok " + filepath.Join(rt, Name)
	for range 2 {
		if got := dirAs(t, 65534, l); got != want {
			t.Fatalf("uid 65534: %q, want %q", got, want)
		}
	}
	wantPrivate(t, filepath.Join(rt, Name), 65534)
}

// TestDirPrefersAnExistingFallback: a user whose processes started without
// a runtime directory made a fallback directory; once logind makes the
// runtime directory, new processes still use the fallback, so that all of
// them share one registry.
func TestDirPrefersAnExistingFallback(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	l := Layout{Run: testutil.PublicDir(t), UserRun: testutil.PublicDir(t), Shared: testutil.SharedDir(t)}
	want := "ok " + filepath.Join(l.Shared, fallbackName(65534, 0))
	if got := dirAs(t, 65534, l); got != want {
		t.Fatalf("uid 65534 without a runtime directory: %q, want %q", got, want)
	}
	rt := filepath.Join(l.UserRun, "65534")
	if err := os.Mkdir(rt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(rt, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if got := dirAs(t, 65534, l); got != want {
		t.Fatalf("uid 65534 once its runtime directory exists: %q, want %q (the fallback its earlier processes use)", got, want)
	}
}

// TestDirFallbackSurvivesSquatters: a user without a runtime directory
// whose fallback names another user planted first (links to the user's
// own file, files, directories) gets the first free name, never follows or
// touches what was planted, and keeps it when the planted names go (a
// process started later agrees with the earlier ones). Of two fallback
// directories of the user, the one made first wins.
func TestDirFallbackSurvivesSquatters(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	l := Layout{Run: testutil.PublicDir(t), UserRun: testutil.PublicDir(t), Shared: testutil.SharedDir(t)}
	precious := testutil.Precious(t, 65534)
	squats := l.Fallbacks(65534)[:10]
	testutil.SquatAs(t, 65533, precious, squats...)
	want := "ok " + filepath.Join(l.Shared, fallbackName(65534, 10))
	if got := dirAs(t, 65534, l); got != want {
		t.Fatalf("uid 65534 with 10 names taken by uid 65533: %q, want %q", got, want)
	}
	wantPrivate(t, filepath.Join(l.Shared, fallbackName(65534, 10)), 65534)
	if b, err := os.ReadFile(precious); err != nil || string(b) != "precious" {
		t.Fatalf("the file the planted link names: %q, %v", b, err)
	}
	for _, s := range squats {
		if err := os.RemoveAll(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := dirAs(t, 65534, l); got != want {
		t.Fatalf("uid 65534 after the planted names went: %q, want %q (the directory it made first)", got, want)
	}
	// A second directory of the user (made by a process that raced with
	// the first) loses to the one made before it.
	late := filepath.Join(l.Shared, fallbackName(65534, 0))
	if out, err := testutil.RunAs(t, 65534, "/bin/mkdir", "-m", "0700", late); err != nil {
		t.Fatalf("mkdir %s: %v: %s", late, err, out)
	}
	if got := dirAs(t, 65534, l); got != want {
		t.Fatalf("uid 65534 with a later directory at the first name: %q, want %q", got, want)
	}
}

// TestDirAllNamesTaken: the fallback's limit: with every one of its names
// taken by another user (and no runtime directory), Dir fails with
// ErrUntrusted naming their owner.
func TestDirAllNamesTaken(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	l := Layout{Run: testutil.PublicDir(t), UserRun: testutil.PublicDir(t), Shared: testutil.SharedDir(t)}
	testutil.SquatAs(t, 65533, "/etc/passwd", l.Fallbacks(65534)...)
	got := dirAs(t, 65534, l)
	if !strings.HasPrefix(got, "err ") || !strings.Contains(got, ErrUntrusted.Error()) || !strings.Contains(got, "owned by uid 65533") {
		t.Fatalf("uid 65534 with every name taken: %q, want ErrUntrusted naming uid 65533", got)
	}
}

// TestDirRefusesUntrustedPlaces: a runtime directory reached through a
// symbolic link, or of another owner, or a fallback parent that others can
// write and that is not sticky, is not used.
func TestDirRefusesUntrustedPlaces(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	base := testutil.PublicDir(t)
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(base, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(theirs, 65533, 65533); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		l    Layout
	}{
		{"run through a link", Layout{Run: link, UserRun: base, Shared: open}},
		{"run of another user", Layout{Run: theirs, UserRun: base, Shared: open}},
		{"run inside another user's directory", Layout{Run: filepath.Join(theirs, "x"), UserRun: base, Shared: link}},
	} {
		_, err := c.l.Dir()
		if !errors.Is(err, ErrUntrusted) {
			t.Errorf("%s: %v, want ErrUntrusted", c.name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(real, Name)); err == nil {
		t.Error("a directory was made through the link")
	}
	if got := dirAs(t, 65534, Layout{Run: base, UserRun: base, Shared: open}); !strings.Contains(got, "not sticky") {
		t.Errorf("uid 65534 with a non-sticky fallback parent: %q, want a refusal", got)
	}
}

// TestFallbackNames: the names are fixed by the uid alone.
func TestFallbackNames(t *testing.T) {
	if got := fallbackName(1000, 0); got != "rdmabind-uid-1000" {
		t.Fatal(got)
	}
	if got := fallbackName(1000, 7); got != "rdmabind-uid-1000."+strconv.Itoa(7) {
		t.Fatal(got)
	}
}

// BenchmarkDir: what finding the directory costs (once per registry Open
// with the default directory): one read of /dev/shm for the fallback
// names, then the runtime directory's walk from "/". 38 µs on the
// development VM (190 µs with a stat of each of the 64 names instead).
func BenchmarkDir(b *testing.B) {
	for b.Loop() {
		if _, err := Dir(); err != nil {
			b.Fatal(err)
		}
	}
}
