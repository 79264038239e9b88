package steer

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

const (
	// envNS is set in the copy of the test binary that runs in private
	// network and mount namespaces.
	envNS = "RDMABIND_STEER_NS"
	// envHelper selects a helper mode (see helper_linux_test.go).
	envHelper = "RDMABIND_STEER_HELPER"
)

// TestMain runs helper processes, and, as root, runs the tests in a copy of
// the test binary in fresh network and mount namespaces: the tests' ports,
// sysctls (tcp_migrate_req stays at its default, 0) and bpffs (mounted by
// Open itself at /sys/fs/bpf) are then their own, and the host's untouched.
// Helper processes inherit the namespaces.
func TestMain(m *testing.M) {
	if mode := os.Getenv(envHelper); mode != "" {
		os.Exit(runHelper(mode))
	}
	if os.Geteuid() == 0 && os.Getenv(envNS) == "" {
		if code, ok := reexecInNamespaces(); ok {
			os.Exit(code)
		}
	}
	if os.Getenv(envNS) == "1" {
		if err := setupNamespaces(); err != nil {
			fmt.Fprintf(os.Stderr, "steer tests: set up namespaces: %v\n", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// reexecInNamespaces runs the test binary again with the same arguments in
// new network and mount namespaces and returns its exit code; ok is false
// when the namespaces cannot be made (then the tests run here, and those
// needing them skip).
func reexecInNamespaces() (code int, ok bool) {
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envNS+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		signal.Stop(sigs)
		fmt.Fprintf(os.Stderr, "steer tests: no private namespaces (%v): running in the host's\n", err)
		return 0, false
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, true
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode(), true
	}
	fmt.Fprintf(os.Stderr, "steer tests: %v\n", err)
	return 1, true
}

// setupNamespaces makes the mount namespace private, takes any bpffs off
// /sys/fs/bpf (so the tests start from an empty one that Open mounts), and
// brings loopback up.
func setupNamespaces() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for range 8 {
		var st unix.Statfs_t
		if unix.Statfs(bpffsMount, &st) != nil || st.Type != unix.BPF_FS_MAGIC {
			break
		}
		if err := unix.Unmount(bpffsMount, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", bpffsMount, err)
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// inPrivateNS reports whether the tests run in their own namespaces.
func inPrivateNS() bool { return os.Getenv(envNS) == "1" }

// skipUnlessBPF skips unless the test runs as root in its own namespaces
// (where it may mount bpffs and load programs). Inside the SoftRoCE guest it
// fails instead. A test that then finds BPF missing calls skipIfDegraded.
func skipUnlessBPF(t testing.TB) {
	t.Helper()
	testutil.SkipUnlessRoot(t)
	if !inPrivateNS() {
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
