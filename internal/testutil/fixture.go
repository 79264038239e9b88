package testutil

import (
	"path/filepath"
	"runtime"
)

// RDMAFixture returns the absolute path of the sysfs fixture name in
// rdma/testdata (connectx, bond, ipoib, nordma, softroce), found from this
// source file's path: a test binary may run from any directory (the
// acceptance checks run them from the module's root, go test from the
// package's).
func RDMAFixture(name string) string {
	_, src, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(src), "..", "..", "rdma", "testdata", name)
}
