package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// RunAs runs a command as uid (and gid uid) with no supplementary groups,
// from "/", and returns its combined output: for tests of what another
// local user can do to a file (cat it, plant a name), with commands every
// user may run (/bin/sh, cat, ln).
func RunAs(t testing.TB, uid uint32, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// Precious returns a file of uid, mode 0600, for planted links to point at;
// the test fails if it changed by the end.
func Precious(t testing.TB, uid int) string {
	t.Helper()
	p := filepath.Join(PublicDir(t), "precious")
	if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, uid); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(p); err != nil || string(b) != "precious" {
			t.Errorf("%s, which planted links name: %q, %v", p, b, err)
		}
	})
	return p
}

// SquatAs plants each of paths as user uid, in turn a symbolic link to
// target, a regular file (mode 0666) and a directory (mode 0777): what
// another local user could put first at a name rdmabind might use. The
// test fails if uid cannot create one. They are removed when the test
// ends.
func SquatAs(t testing.TB, uid uint32, target string, paths ...string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -e; umask 0\n")
	for i, p := range paths {
		switch i % 3 {
		case 0:
			script.WriteString("ln -s '" + target + "' '" + p + "'\n")
		case 1:
			script.WriteString("touch '" + p + "'\n")
		case 2:
			script.WriteString("mkdir -m 0777 '" + p + "'\n")
		}
	}
	t.Cleanup(func() {
		for _, p := range paths {
			os.RemoveAll(p)
		}
	})
	if out, err := RunAs(t, uid, "/bin/sh", "-c", script.String()); err != nil {
		t.Fatalf("uid %d planting %d names: %v: %s", uid, len(paths), err, out)
	}
}
