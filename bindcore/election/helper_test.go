//go:build linux

package election

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/bindcore/shadow"
	"github.com/rdmabind/rdmabind/bindcore/steer"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// The host tests of the election run over the real registry, steering
// group and shadow sockets, without RDMA: in helper processes (the test
// binary again) and in private network and mount namespaces
// (testutil.RunInPrivateNS), so that the ports, the bpffs mount at
// /sys/fs/bpf and the sysctls are the tests' own.

// listenHelperEnv selects a helper mode (TestMain).
const listenHelperEnv = "RDMABIND_LISTEN_HELPER"

func TestMain(m *testing.M) {
	testutil.DispatchHelper(listenHelperEnv, map[string]func() int{"listener": listenerMain})
	testutil.InitPrivateNS()
	os.Exit(m.Run())
}

// listenerMain is one listening socket in a process of its own, over the
// real registry, steering group and shadow socket (no rdma_cm). Environment:
// LISTEN_ADDR, LISTEN_DIR (the registry directory), LISTEN_ID (the byte it
// greets each connection with), LISTEN_STEER_ROOT (a pin root; one that is
// not on bpffs forces the degraded mode through steer.Open). It prints, one
// line per write(2):
//
//	ready <role> <steering 0|1> <pid>
//	designated <mono ns>           once designated
//	pre <client port>              as soon as accept returns
//	acc <conn id> <mono ns>        before greeting the connection
//	accerr ...
//
// and answers commands on stdin: role, state, count, close (graceful:
// leave the designation, release the claim), exit.
func listenerMain() int {
	emit := func(format string, args ...any) {
		unix.Write(1, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	fail := func(err error) int {
		emit("err %v", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 1
	}
	ap := netip.MustParseAddrPort(os.Getenv("LISTEN_ADDR"))
	id := byte(os.Getenv("LISTEN_ID")[0])
	reg, err := registry.Open(registry.Options{Dir: os.Getenv("LISTEN_DIR")})
	if err != nil {
		return fail(err)
	}
	claim, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: ap.Port()})
	if err != nil {
		return fail(err)
	}
	sh, err := shadow.Bind(ap)
	if err != nil {
		return fail(err)
	}
	cfg := Config{Registry: reg, Claim: claim, Shadow: sh, Backlog: 4096}
	if root := os.Getenv("LISTEN_STEER_ROOT"); root != "" {
		cfg.Steer = &steer.Options{Root: root}
	}
	d, err := Join(context.Background(), cfg)
	if err != nil {
		return fail(err)
	}
	st := d.State()
	steering := 0
	if st.Steering {
		steering = 1
	}
	var count atomic.Int64
	accDone := make(chan struct{})
	go func() {
		defer close(accDone)
		for {
			c, err := d.AcceptTCP(context.Background())
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					emit("err accept: %v", err)
				}
				return
			}
			emit("pre %d", c.RemoteAddr().(*net.TCPAddr).Port)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			var b [8]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				emit("accerr got no id: %v", err)
				c.Close()
				continue
			}
			count.Add(1)
			emit("acc %d %d", binary.LittleEndian.Uint64(b[:]), testutil.Mono())
			c.Write([]byte{id})
			c.Close()
		}
	}()
	emit("ready %s %d %d", st.Role, steering, os.Getpid())
	go func() {
		<-d.Designated()
		emit("designated %d", testutil.Mono())
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := in.Text(); cmd {
		case "role":
			emit("role %s", d.State().Role)
		case "state":
			b, _ := json.Marshal(struct {
				State
				TCPListening bool `json:"tcp_listening"`
			}{d.State(), ShadowListens(sh)})
			emit("state %s", b)
		case "count":
			emit("count %d", count.Load())
		case "close":
			t := testutil.Mono()
			err := d.Close()
			<-accDone
			claim.Release()
			if err != nil {
				emit("err close: %v", err)
				continue
			}
			emit("closed %d %d", count.Load(), t)
		case "exit":
			return 0
		default:
			emit("err unknown command %q", cmd)
		}
	}
	return 0
}

type listenerOpts struct {
	uid       uint32
	steerRoot string
}

// startListenProc starts a listener helper on ap and waits for its role.
func startListenProc(t testing.TB, dir string, ap netip.AddrPort, id byte, o listenerOpts) (*testutil.ListenProc, string, bool) {
	t.Helper()
	env := []string{listenHelperEnv + "=listener", "LISTEN_ADDR=" + ap.String(), "LISTEN_DIR=" + dir, "LISTEN_ID=" + string(id)}
	if o.steerRoot != "" {
		env = append(env, "LISTEN_STEER_ROOT="+o.steerRoot)
	}
	p := testutil.StartListenProc(t, "listener "+string(id), o.uid, env...)
	var role string
	var steering int
	r := p.Reply("ready")
	if _, err := fmt.Sscanf(r, "ready %s %d %d", &role, &steering, &p.PID); err != nil {
		t.Fatalf("%s: %q", p.Name, r)
	}
	return p, role, steering == 1
}
