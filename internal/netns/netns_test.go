//go:build linux

package netns_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/netns"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

func statIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadsIn fails the test if a thread of the process is in another
// namespace than ino.
func threadsIn(t *testing.T, ino uint64) {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tasks {
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Ino != ino {
			t.Errorf("%s is namespace %d, not %d", p, st.Ino, ino)
		}
	}
}

func TestCurrent(t *testing.T) {
	got, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	if want := statIno(t, "/proc/self/ns/net"); got != want {
		t.Fatalf("Current %d, the process's namespace %d", got, want)
	}
}

// New makes a namespace no thread is in; Do runs a function in it on a
// thread that comes back; Current, called in Do, names it.
func TestNewDo(t *testing.T) {
	testutil.CheckFDs(t)
	own, err := netns.Current()
	if err != nil {
		t.Fatal(err)
	}
	ns := testutil.NewNetNS(t)
	if ns.Inode() == own {
		t.Fatal("the new namespace is the process's")
	}
	threadsIn(t, own)
	for range 10 {
		var in uint64
		if err := ns.Do(func() error {
			var err error
			in, err = netns.Current()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if in != ns.Inode() {
			t.Fatalf("inside Do: namespace %d, want %d", in, ns.Inode())
		}
	}
	runtime.GC()
	threadsIn(t, own)
	if cur, _ := netns.Current(); cur != own {
		t.Fatalf("after Do the caller is in %d, want %d", cur, own)
	}
	errFn := errors.New("fn failed")
	if err := ns.Do(func() error { return errFn }); err != errFn {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
}

// Do refuses an fd that is not a network namespace, and runs nothing.
func TestDoErrors(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	ran := false
	fn := func() error { ran = true; return nil }
	if err := netns.Do(-1, fn); !errors.Is(err, unix.EBADF) {
		t.Errorf("Do(-1): %v, want EBADF", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := netns.Do(int(r.Fd()), fn); !errors.Is(err, unix.EINVAL) {
		t.Errorf("Do(a pipe): %v, want EINVAL", err)
	}
	if ran {
		t.Error("fn ran although Do failed")
	}
}
