package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/internal/testutil"
	"github.com/rdmabind/rdmabind/qp"
)

// cliHelperEnv makes the test binary the CLI: it runs the command line in
// RDMABIND_CLI_ARGS (one argument per line) and exits with its status.
const cliHelperEnv = "RDMABIND_CLI_HELPER"

func init() {
	if os.Getenv(cliHelperEnv) == "1" {
		os.Exit(run(strings.Split(os.Getenv("RDMABIND_CLI_ARGS"), "\n"), os.Stdout, os.Stderr))
	}
}

// cli is a running rdmabind command, its stdout read line by line.
type cli struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan map[string]any
}

func startCLI(t *testing.T, args ...string) *cli {
	t.Helper()
	p := testutil.StartProc(t, testutil.HelperCommand(t, 0, cliHelperEnv+"=1", "RDMABIND_CLI_ARGS="+strings.Join(args, "\n")))
	c := &cli{t: t, cmd: p.Cmd, lines: make(chan map[string]any, 64)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(p.Stdout)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "not-json", "line": sc.Text()}
			}
			c.lines <- m
		}
	}()
	return c
}

// next returns the next line, which must be the event want.
func (c *cli) next(want string) map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("%v exited, waiting for %q", c.cmd.Args, want)
		}
		if m["event"] != want {
			c.t.Fatalf("got %v, want event %q", m, want)
		}
		return m
	case <-time.After(30 * time.Second):
		c.t.Fatalf("no %q after 30s", want)
	}
	return nil
}

// Without RDMA, bind --listen fails as bind does: WSAENETDOWN, exit 2.
func TestBindListenNoRDMA(t *testing.T) {
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err == nil {
		t.Skip("this host has RDMA")
	}
	var stdout, stderr bytes.Buffer
	st := run([]string{"bind", "127.0.0.1:5000", "--listen", "--backlog", "4", "--registry", t.TempDir()}, &stdout, &stderr)
	if st != 2 || !strings.Contains(stderr.String(), "WSAENETDOWN") {
		t.Fatalf("status %d, stderr %q", st, stderr.String())
	}
}

// The CLI contract with a device: two `bind --listen` processes of one
// port print bound, then listening as designated and standby; the
// designated one prints an accept line per TCP connection and per rdma_cm
// connect request (rping), `ls` names both; after a SIGKILL of the
// designated one the standby prints designated and then the accepts.
func TestBindListenCLI(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if _, err := exec.LookPath("rping"); err != nil {
		t.Skip("no rping (rdmacm-utils)")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp4", "10.77.0.1:0")
	if err != nil {
		t.Skipf("no 10.77.0.1 here (the SoftRoCE guest's rxe0): %v", err)
	}
	ap := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	args := []string{"bind", ap.String(), "--listen", "--backlog", "8", "--registry", dir}
	a := startCLI(t, args...)
	a.next("bound")
	if m := a.next("listening"); m["role"] != "designated" || m["rdma"] != true || m["steering"] != true {
		t.Fatalf("first listener: %v", m)
	}
	b := startCLI(t, args...)
	b.next("bound")
	if m := b.next("listening"); m["role"] != "standby" || m["rdma"] != false {
		t.Fatalf("second listener: %v", m)
	}
	rping := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		exec.CommandContext(ctx, "rping", "-c", "-a", ap.Addr().String(), "-p", strconv.Itoa(int(ap.Port())), "-C", "1").Run()
	}
	rping()
	if m := a.next("accept"); m["transport"] != "rdma" || m["device"] == "" {
		t.Fatalf("designated listener, rping: %v", m)
	}
	c, err := net.Dial("tcp4", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if m := a.next("accept"); m["transport"] != "tcp" {
		t.Fatalf("designated listener, TCP: %v", m)
	}
	var stdout, stderr bytes.Buffer
	if st := run([]string{"ls", "--registry", dir, "--json"}, &stdout, &stderr); st != 0 {
		t.Fatalf("ls: %d %s", st, stderr.String())
	}
	var ls lsOutput
	if err := json.Unmarshal(stdout.Bytes(), &ls); err != nil || len(ls.Listeners) != 1 ||
		ls.Listeners[0].Designated == nil || int(ls.Listeners[0].Designated.PID) != a.cmd.Process.Pid ||
		ls.Listeners[0].Standby == nil || int(ls.Listeners[0].Standby.PID) != b.cmd.Process.Pid {
		t.Fatalf("ls: %s (%v)", stdout.String(), err)
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	if m := b.next("designated"); m["role"] != "designated" || m["rdma"] != true {
		t.Fatalf("takeover: %v", m)
	}
	rping()
	if m := b.next("accept"); m["transport"] != "rdma" {
		t.Fatalf("new designated listener, rping: %v", m)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	if err := b.cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
}

// bind --listen --echo accepts queue pairs over both connect modes and
// echoes: a client socket of this process dials each way, its messages
// come back intact, and the CLI prints an accept line per connection and a
// closed line with the counts when the client closes.
func TestBindListenEchoCLI(t *testing.T) {
	ap, srv, b := startEchoCLI(t)
	for _, mode := range []qp.Mode{qp.ModeCM, qp.ModeTCP} {
		s, c := dialEcho(t, b, ap, mode)
		if m := srv.next("accept"); m["transport"] != "qp-"+mode.String() || m["remote"] != c.LocalAddr().String() {
			t.Fatalf("%v: accept %v, want transport qp-%v from %v", mode, m, mode, c.LocalAddr())
		}
		var total int64
		buf := make([]byte, 1<<20)
		for i, size := range []int{1, 100, 4096, 65536, 300000} {
			msg := bytes.Repeat([]byte{byte(i + 1)}, size)
			if err := c.Send(msg); err != nil {
				t.Fatalf("%v: Send %d B: %v", mode, size, err)
			}
			n, err := c.Recv(buf)
			if err != nil || !bytes.Equal(buf[:n], msg) {
				t.Fatalf("%v: echo of %d B: %d B back, %v", mode, size, n, err)
			}
			total += int64(size)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("%v: Close: %v", mode, err)
		}
		m := srv.next("closed")
		if m["messages"] != float64(5) || m["bytes"] != float64(total) || m["error"] != nil {
			t.Fatalf("%v: closed %v, want 5 messages, %d bytes, no error", mode, m, total)
		}
		s.Close()
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
}

// startEchoCLI starts `bind ADDR --listen --echo` on a free port of
// 10.77.0.1 (the guest's rxe0; the test skips elsewhere) with a registry of
// the test's own, waits until it listens as the designated listener, and
// opens a Binder on that registry for the client side (closed with t).
func startEchoCLI(t *testing.T) (netip.AddrPort, *cli, *bindcore.Binder) {
	t.Helper()
	testutil.SkipUnlessRDMA(t)
	l, err := net.Listen("tcp4", "10.77.0.1:0")
	if err != nil {
		t.Skipf("no 10.77.0.1 here (the SoftRoCE guest's rxe0): %v", err)
	}
	ap := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	dir := t.TempDir()
	srv := startCLI(t, "bind", ap.String(), "--listen", "--echo", "--registry", dir)
	srv.next("bound")
	if m := srv.next("listening"); m["role"] != "designated" {
		t.Fatalf("listener: %v", m)
	}
	b, err := bindcore.Open(bindcore.Options{RegistryDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return ap, srv, b
}

// dialEcho binds a socket of b on ap's address and dials ap with a queue
// pair in mode, within 30 s.
func dialEcho(t *testing.T, b *bindcore.Binder, ap netip.AddrPort, mode qp.Mode) (*bindcore.Socket, *qp.Conn) {
	t.Helper()
	s, err := b.Socket(bindcore.AFInet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.BindAddrPort(netip.AddrPortFrom(ap.Addr(), 0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	c, err := qp.Dial(ctx, s, ap, &qp.Options{Mode: mode})
	cancel()
	if err != nil {
		t.Fatalf("%v: Dial: %v", mode, err)
	}
	return s, c
}
