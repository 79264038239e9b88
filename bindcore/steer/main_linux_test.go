package steer

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// envHelper selects a helper mode (see helper_linux_test.go).
const envHelper = "RDMABIND_STEER_HELPER"

// TestMain runs helper processes, and, as root, runs the tests in a copy of
// the test binary in fresh network and mount namespaces
// (testutil.ReexecInPrivateNS): the tests' ports, sysctls (tcp_migrate_req
// stays at its default, 0) and bpffs (mounted by Open itself at
// /sys/fs/bpf) are then their own, and the host's untouched. Helper
// processes inherit the namespaces.
func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		os.Exit(runHelper(mode))
	}
	if code, ok := testutil.ReexecInPrivateNS(); ok {
		os.Exit(code)
	}
	testutil.InitPrivateNS()
	os.Exit(m.Run())
}

// skipUnlessBPF skips unless the test runs as root in its own namespaces
// (where it may mount bpffs and load programs). Inside the SoftRoCE guest it
// fails instead. A test that then finds BPF missing calls skipIfDegraded.
func skipUnlessBPF(t testing.TB) {
	t.Helper()
	testutil.SkipUnlessRoot(t)
	if !testutil.InPrivateNS() {
		if testutil.InGuest() {
			t.Fatal("inside the SoftRoCE guest, but no private namespaces for the steering tests")
		}
		t.Skip("needs private network and mount namespaces (unshare failed)")
	}
}

// skipIfDegraded skips on an error meaning BPF is not permitted or not
// supported here (failing instead inside the SoftRoCE guest, and on a
// kernel new enough to have it all, 5.14+), and fails on any other error.
func skipIfDegraded(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Degraded(err) && !testutil.InGuest() && !kernelAtLeast(5, 14) {
		t.Skipf("no BPF steering here: %v", err)
	}
	t.Fatal(err)
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}
