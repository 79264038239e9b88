package testutil

import (
	"os"
	"strconv"
	"testing"
)

// InGuest reports whether the test runs inside the SoftRoCE guest
// (ci/softroce/run sets RDMABIND_SOFTROCE=1), where RDMA devices, root and
// BPF must all be present.
func InGuest() bool { return os.Getenv("RDMABIND_SOFTROCE") == "1" }

// SkipUnlessRoot skips the test unless it runs as root.
func SkipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "needs root")
	}
}

// SkipUnlessRDMA skips the test unless this host has an rdma_cm device node
// and at least one RDMA device. Inside the SoftRoCE guest it fails instead.
func SkipUnlessRDMA(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err != nil {
		missing(t, "no RDMA devices available: /dev/infiniband/rdma_cm: "+err.Error())
		return
	}
	ents, _ := os.ReadDir("/sys/class/infiniband")
	if len(ents) == 0 {
		missing(t, "no RDMA devices available: /sys/class/infiniband is empty")
	}
}

func missing(t testing.TB, why string) {
	t.Helper()
	if InGuest() {
		t.Fatalf("inside the SoftRoCE guest, but %s", why)
	}
	t.Skip(why)
}

// EnvInt returns the positive integer in the environment variable name, or
// def (for a test's iteration counts).
func EnvInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
