//go:build linux

package ofdlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

func TestMain(m *testing.M) {
	// The runtime opens its netpoller's fds on the first os.File: open
	// them now, or the first test's fd count blames them on it.
	if pr, pw, err := os.Pipe(); err == nil {
		pr.Close()
		pw.Close()
	}
	os.Exit(m.Run())
}

// lockFile makes a trusted lock file in a fresh directory and returns its
// path.
func lockFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "lock")
	fd, _, err := Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	return p
}

// open opens another open file description of path, closed at the end of
// the test (closing it twice is harmless: the test closes some itself).
func open(t *testing.T, path string) int {
	t.Helper()
	fd, _, err := Open(path, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func wantHeld(t *testing.T, what string, fd int, typ Type, off, n int64, want bool) {
	t.Helper()
	held, err := Held(fd, typ, off, n)
	if err != nil || held != want {
		t.Fatalf("%s: held %v (%v), want %v", what, held, err, want)
	}
}

// Two open file descriptions of one file, in one process, conflict like
// two processes do; a dup shares its description's locks; Held sees the
// other descriptions' locks and never its own.
func TestSetConflictHeld(t *testing.T) {
	testutil.CheckFDs(t)
	p := lockFile(t)
	a, b, c := open(t, p), open(t, p), open(t, p)
	const off, n = 1 << 62, 1

	if err := Set(a, Write, off, n); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "write lock over another's write lock", Set(b, Write, off, n), unix.EAGAIN)
	wantErr(t, "read lock over another's write lock", Set(b, Read, off, n), unix.EAGAIN)
	wantHeld(t, "b probes a's write lock (read)", b, Read, off, n, true)
	wantHeld(t, "b probes a's write lock (write)", b, Write, off, n, true)
	wantHeld(t, "a probes its own lock", a, Write, off, n, false)
	wantHeld(t, "the byte next to it", b, Write, off+1, n, false)
	wantHeld(t, "a range over it", b, Write, off-10, 0, true)

	d, err := unix.Dup(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := Set(d, Write, off, n); err != nil {
		t.Fatalf("a dup of the holder: %v", err)
	}
	unix.Close(d) // a still holds its description

	wantHeld(t, "after closing a dup", b, Write, off, n, true)
	if err := Unlock(a, off, n); err != nil {
		t.Fatal(err)
	}
	wantHeld(t, "after Unlock", b, Write, off, n, false)
	if err := Unlock(a, off, n); err != nil {
		t.Fatalf("Unlock of nothing: %v", err)
	}

	// Read locks share; a write lock conflicts with each.
	if err := Set(a, Read, off, n); err != nil {
		t.Fatal(err)
	}
	if err := Set(b, Read, off, n); err != nil {
		t.Fatal(err)
	}
	wantHeld(t, "read locks, probed for a write lock", c, Read, off, n, false)
	wantHeld(t, "read locks, probed for any lock", c, Write, off, n, true)
	wantErr(t, "write lock over read locks", Set(c, Write, off, n), unix.EAGAIN)

	// Closing the last fd of a description drops its locks.
	unix.Close(a)
	unix.Close(b)
	if err := Set(c, Write, off, n); err != nil {
		t.Fatalf("after the holders closed: %v", err)
	}
	wantErr(t, "Set on a closed fd", Set(a, Write, off, n), unix.EBADF)
	_, err = Held(-1, Read, off, n)
	wantErr(t, "Held on fd -1", err, unix.EBADF)
}

// waitAsync runs Wait in a goroutine.
func waitAsync(ctx context.Context, fd int, typ Type, off, n int64) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- Wait(ctx, fd, typ, off, n) }()
	return ch
}

// Wait is granted when the holder's description is closed, and the lock is
// then the waiter's description's.
func TestWaitGranted(t *testing.T) {
	testutil.CheckFDs(t)
	p := lockFile(t)
	a, b, c := open(t, p), open(t, p), open(t, p)
	const off, n = 4096, 128
	if err := Set(a, Write, off, n); err != nil {
		t.Fatal(err)
	}
	got := waitAsync(context.Background(), b, Write, off, n)
	select {
	case err := <-got:
		t.Fatalf("Wait returned while the lock was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	unix.Close(a)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not granted 5s after the holder closed")
	}
	wantHeld(t, "the granted lock, seen by another", c, Read, off, n, true)
	if err := Set(b, Read, off, n); err != nil {
		t.Fatalf("the waiter's description holds it: %v", err)
	}
	if err := Unlock(b, off, n); err != nil {
		t.Fatal(err)
	}
	wantHeld(t, "after the waiter's Unlock", c, Write, off, n, false)

	// A read lock waits only for write locks.
	if err := Set(c, Read, off, n); err != nil {
		t.Fatal(err)
	}
	if err := Wait(context.Background(), b, Read, off, n); err != nil {
		t.Fatalf("a read wait under a read lock: %v", err)
	}
}

// A Wait cancelled through its context returns promptly with ctx's error,
// and leaves no lock and no fd behind, whether it was blocked, had not
// started, or was granted just as it was cancelled.
func TestWaitCancelled(t *testing.T) {
	testutil.CheckFDs(t)
	p := lockFile(t)
	a, b, c := open(t, p), open(t, p), open(t, p)
	const off, n = 1<<62 + 7, 1
	if err := Set(a, Write, off, n); err != nil {
		t.Fatal(err)
	}
	fds := testutil.FDCount(t)

	// Blocked, then cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	got := waitAsync(ctx, b, Write, off, n)
	time.Sleep(20 * time.Millisecond) // let it block in F_OFD_SETLKW
	start := time.Now()
	cancel()
	select {
	case err := <-got:
		wantErr(t, "cancelled Wait", err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return 5s after its cancel")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled Wait took %v to return", d)
	}

	// A deadline.
	start = time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	wantErr(t, "Wait past its deadline", Wait(ctx, b, Read, off, n), context.DeadlineExceeded)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Wait with a 30ms deadline took %v", d)
	}

	// Already done.
	wantErr(t, "Wait with a done context", Wait(ctx, b, Write, off, n), context.DeadlineExceeded)

	if now := testutil.FDCount(t); now != fds {
		t.Errorf("cancelled Waits left fds: %d open before, %d after", fds, now)
	}
	// The waiter holds nothing: once the holder goes, the lock is free.
	unix.Close(a)
	wantHeld(t, "after the cancelled waits and the holder's close", c, Write, off, n, false)

	// Granted as it is cancelled: the holder goes and the cancel comes at
	// about the same moment. Either Wait has the lock (nil) or nothing.
	var granted, cancelled int
	for i := range 200 {
		h := open(t, p)
		if err := Set(h, Write, off, n); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := waitAsync(ctx, b, Write, off, n)
		time.Sleep(time.Duration(i%5) * 50 * time.Microsecond)
		if i%2 == 0 {
			unix.Close(h)
		} else {
			go unix.Close(h)
		}
		cancel()
		err := <-got
		switch {
		case err == nil:
			granted++
			wantHeld(t, "granted", c, Write, off, n, true)
			Unlock(b, off, n)
		case errors.Is(err, context.Canceled):
			cancelled++
		default:
			t.Fatalf("round %d: %v", i, err)
		}
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			if held, _ := Held(c, Write, off, n); !held {
				break // the holder's close is done too
			}
			if time.Now().After(end) {
				t.Fatalf("round %d (%v): the range is still locked", i, err)
			}
		}
	}
	t.Logf("close and cancel at once: %d granted, %d cancelled", granted, cancelled)
}

// A failing request is an error, not a wait.
func TestWaitErrors(t *testing.T) {
	p := lockFile(t)
	a := open(t, p)
	wantErr(t, "Wait on fd -1", Wait(context.Background(), -1, Write, 0, 1), unix.EBADF)
	wantErr(t, "Wait on a negative range", Wait(context.Background(), a, Write, -5, 1), unix.EINVAL)
	if err := Wait(context.Background(), a, 99, 0, 1); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Wait with type 99: %v", err)
	}
}

// Open trusts only a regular file of this user (or root) that group and
// others cannot write, and follows no symbolic link.
func TestOpenTrust(t *testing.T) {
	testutil.CheckFDs(t)
	dir := t.TempDir()
	good := lockFile(t)

	link := filepath.Join(dir, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(link, unix.O_RDWR, 0)
	wantErr(t, "a symbolic link", err, unix.ELOOP)

	for _, mode := range []uint32{0o620, 0o602, 0o666} {
		p := filepath.Join(dir, "mode")
		os.Remove(p)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, os.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		_, _, err := Open(p, unix.O_RDWR, 0)
		wantErr(t, "mode "+os.FileMode(mode).String(), err, ErrUntrusted)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = Open(fifo, unix.O_RDWR, 0) // O_NONBLOCK: it does not block
	wantErr(t, "a FIFO", err, ErrUntrusted)
	_, _, err = Open(dir, unix.O_RDONLY, 0)
	wantErr(t, "a directory", err, ErrUntrusted)
	_, _, err = Open(dir, unix.O_RDWR, 0)
	wantErr(t, "a directory, read-write", err, unix.EISDIR)
	_, _, err = Open(filepath.Join(dir, "none"), unix.O_RDWR, 0)
	wantErr(t, "a missing file", err, unix.ENOENT)
	_, _, err = Open(good, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
	wantErr(t, "O_EXCL over a file", err, unix.EEXIST)

	fd, st, err := Open(good, unix.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(os.Geteuid()) {
		t.Errorf("Open's stat: mode %#o uid %d", st.Mode, st.Uid)
	}

	// Another owner (root can make one).
	if os.Geteuid() == 0 {
		p := filepath.Join(dir, "other")
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, _, err := Open(p, unix.O_RDWR, 0)
		wantErr(t, "a file of uid 65534", err, ErrUntrusted)
	}
}

// The trust rule itself, for any uid.
func TestCheck(t *testing.T) {
	const reg, dir, fifo = unix.S_IFREG, unix.S_IFDIR, unix.S_IFIFO
	for _, c := range []struct {
		mode, uid, euid uint32
		ok              bool
	}{
		{reg | 0o600, 1000, 1000, true},
		{reg | 0o644, 1000, 1000, true},
		{reg | 0o600, 0, 1000, true}, // root's file: trusted by everyone
		{reg | 0o600, 1001, 1000, false},
		{reg | 0o600, 1000, 0, false}, // root trusts only its own
		{reg | 0o620, 1000, 1000, false},
		{reg | 0o602, 1000, 1000, false},
		{dir | 0o700, 1000, 1000, false},
		{fifo | 0o600, 1000, 1000, false},
	} {
		err := check(c.mode, c.uid, c.euid)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrUntrusted) {
			t.Errorf("mode %#o uid %d euid %d: %v, want ok %v", c.mode, c.uid, c.euid, err, c.ok)
		}
	}
}

// Holder names the type of another description's lock: none, write, read
// (also after a write lock is turned into a read lock), never its own.
func TestHolder(t *testing.T) {
	testutil.CheckFDs(t)
	p := lockFile(t)
	a, b := open(t, p), open(t, p)
	const off, n = 1<<62 + 1<<56, 1
	want := func(what string, fd int, typ Type) {
		t.Helper()
		got, err := Holder(fd, off, n)
		if err != nil || got != typ {
			t.Fatalf("%s: %v, %v; want %v", what, got, err, typ)
		}
	}
	want("free", b, None)
	if err := Set(a, Write, off, n); err != nil {
		t.Fatal(err)
	}
	want("a's write lock", b, Write)
	want("a's own lock", a, None)
	if err := Set(a, Read, off, n); err != nil {
		t.Fatal(err)
	}
	want("a's lock turned to read", b, Read)
	if err := Unlock(a, off, n); err != nil {
		t.Fatal(err)
	}
	want("after the unlock", b, None)
}
