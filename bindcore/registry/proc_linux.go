package registry

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/rdmabind/rdmabind/internal/netns"
)

// CurrentNetns returns the inode of the network namespace of the calling
// goroutine's OS thread (internal/netns.Current: /proc/thread-self/ns/net,
// on a locked thread).
//
// The thread, not the process: a goroutine that locked its OS thread and
// setns(2)'d into another namespace creates its cm_ids and sockets there, and
// must use that namespace's registry; /proc/self/ns/net names the namespace
// of the main thread only. Every thread not so moved is in the process's
// namespace, so for an unlocked goroutine the answer is that namespace.
func CurrentNetns() (uint64, error) {
	ino, err := netns.Current()
	if err != nil {
		return 0, fmt.Errorf("registry: network namespace of this thread: %w", err)
	}
	return ino, nil
}

// StartTime returns the start time of process pid, in clock ticks after
// boot: field 22 of /proc/<pid>/stat. With the pid it names a process
// uniquely across pid reuse.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("registry: start time of pid %d: %w", pid, err)
	}
	// Field 2, comm, is in parentheses and may hold spaces and ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("registry: start time of pid %d: no ')' in /proc/%d/stat", pid, pid)
	}
	f := bytes.Fields(b[i+1:]) // fields 3, 4, ...
	if len(f) < 20 {
		return 0, fmt.Errorf("registry: start time of pid %d: %d fields in /proc/%d/stat", pid, len(f)+2, pid)
	}
	v, err := strconv.ParseUint(string(f[22-3]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("registry: start time of pid %d: %w", pid, err)
	}
	return v, nil
}
