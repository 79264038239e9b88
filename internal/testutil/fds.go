package testutil

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// FDCount returns the number of open fds of this process.
func FDCount(t testing.TB) int {
	t.Helper()
	return len(fdLinks(t))
}

// fdLinks maps this process's open fds to what they are.
func fdLinks(t testing.TB) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[e.Name()] = l
		}
	}
	return m
}

// CheckFDs fails the test at its end if it leaves more fds open than it
// found, naming the new ones. Call it first, before the test opens
// anything. The descriptors of bindcore/steer's handles on a network
// namespace's program and maps (bpf-prog and bpf-map descriptors, the
// netns directory .../steer2), which the package keeps after the last
// steering group closes (steer.CloseIdle), are not counted: steer's own
// tests check that CloseIdle closes them.
func CheckFDs(t testing.TB) {
	t.Helper()
	// The runtime's netpoller (an epoll and an eventfd, never closed)
	// starts with the process's first pollable file (or go test's
	// -test.timeout): start it now, so that it is not counted as the
	// test's when the binary runs without go test's flags.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	before := keptOut(fdLinks(t))
	t.Cleanup(func() {
		after := keptOut(fdLinks(t))
		if len(after) <= len(before) {
			return
		}
		var added []string
		for fd, l := range after {
			if before[fd] != l {
				added = append(added, fd+"->"+l)
			}
		}
		slices.Sort(added)
		t.Errorf("fd leak: %d open before the test, %d after: %v", len(before), len(after), added)
	})
}

// keptOut removes from links the descriptors of steer's kept per-netns
// handles (see CheckFDs).
func keptOut(links map[string]string) map[string]string {
	for fd, l := range links {
		if l == "anon_inode:bpf-map" || l == "anon_inode:bpf-prog" || strings.HasSuffix(l, "/steer2") {
			delete(links, fd)
		}
	}
	return links
}
