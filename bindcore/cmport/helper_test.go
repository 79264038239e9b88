//go:build linux

package cmport

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// listenHelperEnv selects a helper mode (TestMain).
const listenHelperEnv = "RDMABIND_LISTEN_HELPER"

func TestMain(m *testing.M) {
	testutil.DispatchHelper(listenHelperEnv, map[string]func() int{"parker": parkerMain})
	testutil.InitPrivateNS()
	os.Exit(m.Run())
}

// parkerMain stands for a process with bound rdma_cm ids: an anchor with a
// fake parkable entry per address in LISTEN_PARK (comma-separated), with
// the registry in LISTEN_DIR; LISTEN_POLL=1 makes it poll instead of using
// inotify. It prints "ready", then "parked <addr:port> <mono ns>" as each is
// parked, and answers "add <addr:port>" (one more entry: "added") and
// "exit".
func parkerMain() int {
	emit := func(format string, args ...any) {
		unix.Write(1, []byte(fmt.Sprintf(format, args...)+"\n"))
	}
	reg, err := registry.Open(registry.Options{Dir: os.Getenv("LISTEN_DIR")})
	if err != nil {
		emit("err %v", err)
		return 1
	}
	a := NewAnchor(reg, nil)
	a.noInotify = os.Getenv("LISTEN_POLL") == "1"
	add := func(s string) {
		ap := netip.MustParseAddrPort(s)
		a.add(ap, func() { emit("parked %s %d", ap, testutil.Mono()) }, true)
	}
	for _, s := range strings.Split(os.Getenv("LISTEN_PARK"), ",") {
		add(s)
	}
	emit("ready %d", os.Getpid())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd := in.Text()
		switch {
		case strings.HasPrefix(cmd, "add "):
			add(strings.TrimPrefix(cmd, "add "))
			emit("added")
		case cmd == "exit":
			a.Close()
			return 0
		}
	}
	return 0
}
