package testutil

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// privateNSEnv is set in a copy of a test binary that runs one test in
// private network and mount namespaces (InPrivateNS).
const privateNSEnv = "RDMABIND_PRIVATE_NS"

// SetUpPrivateNS is for a test binary's init or TestMain: in a copy started
// by InPrivateNS (and not in a helper process, which inherits its test's
// namespaces), it makes the mount namespace private, takes any bpffs off
// /sys/fs/bpf (steer.Open mounts a fresh one) and brings loopback up. It
// does nothing elsewhere.
func SetUpPrivateNS(helper bool) error {
	if os.Getenv(privateNSEnv) != "1" || helper {
		return nil
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for range 8 {
		var st unix.Statfs_t
		if unix.Statfs("/sys/fs/bpf", &st) != nil || st.Type != unix.BPF_FS_MAGIC {
			break
		}
		if err := unix.Unmount("/sys/fs/bpf", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount /sys/fs/bpf: %w", err)
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
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// InPrivateNS reports whether the calling test runs in its private
// namespaces. When it does not, it runs the test (or benchmark) in a copy of
// the test binary in new network and mount namespaces, with its output
// going to this one's, fails if that fails, and returns false: the caller
// returns at once. Without root it skips. The binary must call
// SetUpPrivateNS first thing.
func InPrivateNS(tb testing.TB) bool {
	tb.Helper()
	if os.Getenv(privateNSEnv) == "1" {
		return true
	}
	SkipUnlessRoot(tb)
	name := "^" + regexp.QuoteMeta(tb.Name()) + "$"
	args := []string{"-test.run=" + name, "-test.count=1"}
	if _, ok := tb.(*testing.B); ok {
		args = []string{"-test.run=^$", "-test.bench=" + name, "-test.benchmem"}
		if f := flag.Lookup("test.benchtime"); f != nil {
			args = append(args, "-test.benchtime="+f.Value.String())
		}
	}
	if testing.Verbose() {
		args = append(args, "-test.v")
	}
	if f := flag.Lookup("test.timeout"); f != nil {
		args = append(args, "-test.timeout="+f.Value.String())
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), privateNSEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s in private namespaces: %v", tb.Name(), err)
	}
	if _, ok := tb.(*testing.B); ok {
		// Not a result of its own: the copy printed the benchmark's.
		tb.Skip("ran in private network and mount namespaces; the results are above")
	}
	return false
}
