//go:build linux

package registry

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/rundir"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The test binary doubles as the helper processes of the multi-process
// tests: TestMain runs helperMain instead of the tests when helperEnv is set.
const helperEnv = "RDMABIND_REGISTRY_HELPER"

var crashIters = flag.Int("registry.crashiters", testutil.EnvInt("RDMABIND_CRASH_ITERS", 200),
	"iterations of TestCrashSafety (SIGKILL of a helper during claims); env RDMABIND_CRASH_ITERS")

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	// The runtime opens its netpoller's fds (epoll, eventfd) on the first
	// os.File; open them now, or the first test's fd count blames them on it.
	if pr, pw, err := os.Pipe(); err == nil {
		pr.Close()
		pw.Close()
	}
	os.Exit(m.Run())
}

// testNetns is the namespace inode tests use: any fixed number will do, the
// file name and header carry it.
const testNetns = 4026531840

// testDir returns a new directory for a test's registry files:
// t.TempDir(), or, with RDMABIND_REGISTRY_TEST_DIR=default, a new directory
// inside DefaultDir() (the user's own directory where rdmabind keeps
// registries), so that the crash-safety and race tests can run on the
// default location's file system too.
func testDir(t testing.TB) string {
	t.Helper()
	if os.Getenv("RDMABIND_REGISTRY_TEST_DIR") != "default" {
		return t.TempDir()
	}
	parent, err := DefaultDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func openTest(t testing.TB, dir string) *Registry {
	t.Helper()
	r, err := Open(Options{Dir: dir, Netns: testNetns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var (
	a4   = netip.MustParseAddr("10.0.0.1")
	b4   = netip.MustParseAddr("10.0.0.2")
	any4 = netip.IPv4Unspecified()
	a6   = netip.MustParseAddr("fd00::1")
	any6 = netip.IPv6Unspecified()
)

// helperMain is a helper process. Modes:
//
//	hold   claim REG_ADDR:REG_PORT (REG_ROLE, REG_SHARE), print "ready <slot> <gen> <socket>",
//	       hold until stdin closes or the process is killed
//	churn  open, print "ready", then claim/set role/release REG_PORT as fast as it can
//	create open (maybe creating the file), print "ready", hold
//	claim  claim, print "ok <slot>" or "err <message>", exit
//	open   open, print "ok" or "err <message>", exit
//	where  open, print "ok <path>" or "err <message>", exit
//	list   open and list, print "ok <records>" or "err <message>", exit (rdmabind ls)
//	race   see raceHelper
//
// REG_PATH, when set, names the registry file itself (Options.Path); an
// empty REG_DIR is the default directory. REG_NETNS replaces testNetns,
// REG_SHARED the fallback's /dev/shm.
func helperMain(mode string) int {
	dir := os.Getenv("REG_DIR")
	port, _ := strconv.Atoi(os.Getenv("REG_PORT"))
	addr := netip.MustParseAddr(os.Getenv("REG_ADDR"))
	share := ShareSameUser
	if os.Getenv("REG_SHARE") == "exclusive" {
		share = Exclusive
	}
	role := RoleBound
	if os.Getenv("REG_ROLE") == "listening" {
		role = RoleListening
	}
	req := ClaimRequest{Addr: addr, Port: uint16(port), Role: role, Share: share}
	netns := uint64(testNetns)
	if n, err := strconv.ParseUint(os.Getenv("REG_NETNS"), 10, 64); err == nil {
		netns = n
	}
	if s := os.Getenv("REG_SHARED"); s != "" {
		rundir.Default.Shared = s // the fallback's parent, instead of /dev/shm
	}
	r, err := Open(Options{Dir: dir, Path: os.Getenv("REG_PATH"), Netns: netns})
	if err != nil {
		fmt.Printf("err %s\n", oneLine(err))
		return 0
	}
	switch mode {
	case "race":
		return raceHelper(r)
	case "open":
		fmt.Println("ok")
		return 0
	case "where":
		fmt.Println("ok", r.Path())
		return 0
	case "list":
		recs, err := r.List()
		if err != nil {
			fmt.Printf("err %s\n", oneLine(err))
			return 0
		}
		fmt.Println("ok", len(recs))
		return 0
	case "create":
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "claim":
		c, err := r.Claim(req)
		if err != nil {
			fmt.Printf("err %s\n", oneLine(err))
			return 0
		}
		fmt.Printf("ok %d\n", c.Record().Slot)
		return 0
	case "hold":
		c, err := r.Claim(req)
		if err != nil {
			fmt.Printf("err %s\n", oneLine(err))
			return 1
		}
		rec := c.Record()
		fmt.Printf("ready %d %d %d\n", rec.Slot, rec.Generation, rec.SocketID)
		io.Copy(io.Discard, os.Stdin)
		c.Release()
		return 0
	case "churn":
		fmt.Println("ready")
		for i := 0; ; i++ {
			c, err := r.Claim(req)
			if err != nil {
				fmt.Fprintf(os.Stderr, "churn: %v\n", err)
				return 1
			}
			if i%3 == 0 {
				c.SetRole(RoleListening)
			}
			if i%5 == 0 {
				r.List()
			}
			c.Release()
		}
	}
	fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
	return 2
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }

// helper is a running helper process.
type helper struct {
	*testutil.Proc
	out *bufio.Reader
}

func startHelper(t testing.TB, uid uint32, mode, dir string, env ...string) *helper {
	t.Helper()
	cmd := testutil.HelperCommand(t, uid, append([]string{helperEnv + "=" + mode, "REG_DIR=" + dir}, env...)...)
	return startCmd(t, cmd)
}

func startCmd(t testing.TB, cmd *exec.Cmd) *helper {
	t.Helper()
	p := testutil.StartProc(t, cmd)
	return &helper{Proc: p, out: bufio.NewReader(p.Stdout)}
}

// line reads one line of the helper's output, with a timeout.
func (h *helper) line(t testing.TB) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		s, _ := h.out.ReadString('\n')
		ch <- strings.TrimSpace(s)
	}()
	select {
	case s := <-ch:
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("helper pid %d: no output in 30s", h.Cmd.Process.Pid)
		return ""
	}
}

func mustErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one matching %v", err, target)
	}
}

// mustConflict checks err is ErrConflict, matching unix.EADDRINUSE too.
func mustConflict(t testing.TB, err error) {
	t.Helper()
	mustErr(t, err, ErrConflict)
	mustErr(t, err, unix.EADDRINUSE)
	if !strings.HasPrefix(err.Error(), "registry: claim ") {
		t.Fatalf("error %q does not name the operation", err)
	}
}

// mustFull checks err is ErrFull, matching unix.ENOBUFS too.
func mustFull(t testing.TB, err error) {
	t.Helper()
	mustErr(t, err, ErrFull)
	mustErr(t, err, unix.ENOBUFS)
}

// conflictLine reports whether a helper's line is "err <published> <an
// ErrConflict message>".
func conflictLine(s, published string) bool {
	return strings.HasPrefix(s, "err "+published+" registry: claim ") && strings.Contains(s, ": "+ErrConflict.Error()+": ")
}
