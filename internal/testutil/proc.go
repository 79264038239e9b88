package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// StopAndHeldPorts stops process pid (SIGSTOP), waits until it is stopped,
// and returns the remote ports of the TCP connections it holds, listeners
// left out (its socket fds, looked up in /proc/net/tcp and tcp6). A test
// that kills a listener process under a connection storm calls it just
// before the SIGKILL: a process killed inside accept4(2) dies holding a
// connection it never reported, which its clients alone cannot tell from
// one reset in its queue.
func StopAndHeldPorts(t testing.TB, pid int) map[int]bool {
	t.Helper()
	unix.Kill(pid, unix.SIGSTOP)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Microsecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatal(err)
		}
		if _, rest, _ := strings.Cut(string(b), ") "); strings.HasPrefix(rest, "T") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not stop", pid)
		}
	}
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	held := map[int]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
			if len(fs) < 10 || !inodes[fs[9]] || fs[3] == "0A" {
				continue
			}
			if _, port, ok := strings.Cut(fs[2], ":"); ok {
				p, _ := strconv.ParseUint(port, 16, 16)
				held[int(p)] = true
			}
		}
	}
	return held
}
