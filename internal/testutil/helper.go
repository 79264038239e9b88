package testutil

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// HelperCommand returns a command that runs the test binary again with
// env set (add the name the test's TestMain dispatches on) and no tests. With
// uid nonzero it runs as that uid and gid, from a copy of the binary in a
// directory that uid can read (go test builds in a 0700 directory).
func HelperCommand(t testing.TB, uid uint32, env ...string) *exec.Cmd {
	t.Helper()
	bin := os.Args[0]
	if uid != 0 {
		bin = publicCopy(t)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if uid != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		cmd.Dir = filepath.Dir(bin)
	}
	return cmd
}

// PublicDir returns a new directory of this user, mode 0755, directly below
// the temporary directory (t.TempDir's 0700 parents would shut other users
// out). It is removed when the test ends.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rdmabind-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func publicCopy(t testing.TB) string {
	t.Helper()
	dir := PublicDir(t)
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, filepath.Base(os.Args[0]))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// Proc is a helper process (from HelperCommand) with pipes to its stdin
// and from its stdout.
type Proc struct {
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Stdout io.ReadCloser
}

// StartProc starts cmd with its stdin and stdout piped. When the test ends
// the helper is killed and waited for, if nobody waited for it yet: a
// safety net under the test's own way of stopping it (cleanups registered
// after StartProc run before its own).
func StartProc(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, Stdin: stdin, Stdout: stdout}
	t.Cleanup(p.Kill)
	return p
}

// Kill kills the helper (SIGKILL) and waits for it, unless it was waited for
// already. Safe to call twice.
func (p *Proc) Kill() {
	if p.Cmd.ProcessState != nil {
		return
	}
	p.Cmd.Process.Kill()
	p.Cmd.Wait()
}

// SharedDir returns a new directory that every user may create files in
// (mode 1777, like /dev/shm), directly below the temporary directory so
// that no 0700 parent (as t.TempDir has) shuts other users out. It is
// removed when the test ends.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rdmabind-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, os.ModeSticky|0o777); err != nil { // os.Chmod ignores 0o1000
		t.Fatal(err)
	}
	return dir
}

// DispatchHelper is for a test binary's TestMain (or init): when the
// environment variable env names a mode, this process is a helper (the
// binary started again by HelperCommand): it runs that mode's function and
// exits with its status; an unknown mode exits 2. Otherwise it returns.
func DispatchHelper(env string, modes map[string]func() int) {
	mode := os.Getenv(env)
	if mode == "" {
		return
	}
	fn, ok := modes[mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: unknown helper mode\n", env, mode)
		os.Exit(2)
	}
	os.Exit(fn())
}
