//go:build linux

package registry

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/internal/rundir"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// squatNetns is the namespace of the tests that use the default directory:
// a number no real namespace has, so that they never meet the host's own
// registry there.
const squatNetns = 4026500001

// squatNames are the fallback directories of uid in shared (the first n
// of them) and the registry file's name of earlier releases (in shared
// itself): what another user would plant.
func squatNames(shared string, uid uint32, n int) []string {
	l := rundir.Layout{Shared: shared}
	return append(l.Fallbacks(uid)[:n], filepath.Join(shared, FileName(squatNetns, uid)))
}

// TestRootRegistryIgnoresSquatters: uid 65534 plants a link to a file of
// root's, a file or a directory at every name in /dev/shm rdmabind would
// use for root's registry (the old file name and every fallback name), and
// cannot create anything in /run; root's Open, Claim and List with the
// default directory then work, in /run/rdmabind, and root's file is
// untouched. uid 65534 can neither read root's registry, nor open it for
// writing (locks), nor set its times (the doorbell).
func TestRootRegistryIgnoresSquatters(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	target := testutil.Precious(t, 0)
	testutil.SquatAs(t, 65534, target, squatNames(rundir.Default.Shared, 0, rundir.Candidates)...)
	into := filepath.Join(rundir.Default.Run, rundir.Name, FileName(squatNetns, 0))
	for _, p := range []string{filepath.Join(rundir.Default.Run, rundir.Name), into} {
		if out, err := testutil.RunAs(t, 65534, "/bin/ln", "-s", target, p); err == nil {
			os.Remove(p)
			t.Fatalf("uid 65534 planted %s: %s", p, out)
		}
	}
	r, err := Open(Options{Netns: squatNetns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		os.Remove(r.Path())
	})
	if r.Path() != into {
		t.Fatalf("root's registry at %s, want %s", r.Path(), into)
	}
	c, err := r.Claim(ClaimRequest{Addr: a4, Port: 6300})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	recs, err := r.List()
	if err != nil || len(recs) != 1 || recs[0].Port != 6300 {
		t.Fatalf("List: %v, %v", recs, err)
	}
	// And nobody cannot read it, nor open it to take part in its locks
	// (the claims' and the election's), nor ring its doorbell (its times).
	for _, c := range []struct{ what, script string }{
		{"read root's registry", "cat " + r.Path()},
		{"open root's registry for writing (OFD locks)", ": >> " + r.Path()},
		{"ring root's doorbell", "touch -c " + r.Path()},
	} {
		if out, err := testutil.RunAs(t, 65534, "/bin/sh", "-c", c.script); err == nil || !strings.Contains(out, "ermission denied") {
			t.Errorf("uid 65534 could %s: %v %q", c.what, err, out)
		}
	}
}

// TestUserRegistryIgnoresSquatters: the same between two unprivileged
// users without a runtime directory: uid 65533 plants the old name and the
// first ten fallback names of uid 65534 (in a sticky directory standing for
// /dev/shm); uid 65534's Open and Claim with the default directory work,
// in the first free fallback name, every process of uid 65534 finds
// the same registry, and its List (what rdmabind ls prints) in one process
// shows the claim another process holds, and not once that one is gone.
func TestUserRegistryIgnoresSquatters(t *testing.T) {
	testutil.SkipUnlessRoot(t)
	if _, err := os.Stat(filepath.Join(rundir.Default.UserRun, "65534")); err == nil {
		t.Skip("uid 65534 has a runtime directory here: the fallback is not used")
	}
	shared := testutil.SharedDir(t)
	target := testutil.Precious(t, 65534)
	testutil.SquatAs(t, 65533, target, squatNames(shared, 65534, 10)...)
	command := func(mode, port string) *exec.Cmd {
		return testutil.HelperCommand(t, 65534, helperEnv+"="+mode, "REG_DIR=", "REG_SHARED="+shared,
			"REG_NETNS="+strconv.Itoa(squatNetns), "REG_ADDR=10.0.0.1", "REG_PORT="+port)
	}
	run := func(mode, port string) string {
		out, err := command(mode, port).Output()
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	want := "ok " + filepath.Join(shared, "rdmabind-uid-65534.10", FileName(squatNetns, 65534))
	for range 2 {
		if out := run("where", "1"); out != want {
			t.Fatalf("uid 65534's registry: %q, want %q", out, want)
		}
	}
	// One process of uid 65534 holds a claim; another lists it.
	hold := command("hold", "6300")
	stdin, err := hold.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if !strings.HasPrefix(line, "ready ") {
		stdin.Close()
		hold.Wait()
		t.Fatalf("uid 65534's claim: %q, %v", line, err)
	}
	listed := run("list", "1")
	stdin.Close()
	if err := hold.Wait(); err != nil {
		t.Fatalf("holder: %v", err)
	}
	if listed != "ok 1" {
		t.Fatalf("uid 65534's list while its other process holds 10.0.0.1:6300: %q, want \"ok 1\"", listed)
	}
	if out := run("list", "1"); out != "ok 0" { // the holder is gone
		t.Fatalf("uid 65534's list after the holder ended: %q", out)
	}
	if out, err := testutil.RunAs(t, 65533, "/bin/cat", strings.TrimPrefix(want, "ok ")); err == nil {
		t.Fatalf("uid 65533 read uid 65534's registry: %q", out)
	}
}
