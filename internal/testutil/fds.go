package testutil

import (
	"os"
	"testing"
)

// FDCount returns the number of open fds of this process.
func FDCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own fd
}

// CheckFDs fails the test at its end if it leaves more fds open than it
// found. Call it first, before the test opens anything.
func CheckFDs(t testing.TB) {
	t.Helper()
	before := FDCount(t)
	t.Cleanup(func() {
		if after := FDCount(t); after > before {
			t.Errorf("fd leak: %d open before the test, %d after", before, after)
		}
	})
}
