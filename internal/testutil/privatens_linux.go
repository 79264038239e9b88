package testutil

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Private namespaces: a test that needs its own ports, sysctls and bpffs
// runs in a copy of the test binary in new network and mount namespaces.
// Either the whole binary (ReexecInPrivateNS, from TestMain) or one test
// at a time (RunInPrivateNS). The copy sets them up (InitPrivateNS, from
// TestMain); the helper processes it starts inherit them.

// privateNSEnv is set in such a copy, and so in its helper processes.
const privateNSEnv = "RDMABIND_TEST_PRIVATE_NS"

// bpffs is where steering mounts its bpffs.
const bpffs = "/sys/fs/bpf"

// InPrivateNS reports whether this process runs in private network and
// mount namespaces made by ReexecInPrivateNS or RunInPrivateNS.
func InPrivateNS() bool { return os.Getenv(privateNSEnv) == "1" }

// privateNSCommand is the test binary with args, in new network and mount
// namespaces, killed with this process.
func privateNSCommand(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), privateNSEnv+"=1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWNET | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	return cmd
}

// ReexecInPrivateNS is for TestMain, after it dispatched its helper
// processes: as root, and not in private namespaces yet, it runs the test
// binary again with the same arguments in new ones (forwarding SIGINT,
// SIGTERM and SIGQUIT to it) and returns its exit code with ok true. It
// returns ok false otherwise, and when the namespaces cannot be made (the
// tests then run here, and those that need them skip).
func ReexecInPrivateNS() (code int, ok bool) {
	if os.Geteuid() != 0 || InPrivateNS() {
		return 0, false
	}
	cmd := privateNSCommand(os.Args[1:]...)
	cmd.Stdin = os.Stdin
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		signal.Stop(sigs)
		fmt.Fprintf(os.Stderr, "no private namespaces (%v): running in the host's\n", err)
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
	fmt.Fprintf(os.Stderr, "test binary in private namespaces: %v\n", err)
	return 1, true
}

// RunInPrivateNS reports whether the calling test (or benchmark) runs in
// private namespaces. When it does not, it runs the test alone in a copy of
// the test binary in new network and mount namespaces, with the copy's
// output going to this one's, fails if the copy fails, and returns false:
// the caller returns at once. A benchmark is skipped here, its results
// being the copy's. Without root it skips.
func RunInPrivateNS(tb testing.TB) bool {
	tb.Helper()
	if InPrivateNS() {
		return true
	}
	SkipUnlessRoot(tb)
	name := "^" + regexp.QuoteMeta(tb.Name()) + "$"
	args := []string{"-test.run=" + name, "-test.count=1"}
	_, bench := tb.(*testing.B)
	if bench {
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
	if err := privateNSCommand(args...).Run(); err != nil {
		tb.Fatalf("%s in private namespaces: %v", tb.Name(), err)
	}
	if bench {
		tb.Skip("ran in private network and mount namespaces; the results are above")
	}
	return false
}

// InitPrivateNS sets up the private namespaces, if this process is the
// copy of the test binary that runs in them: it makes every mount private,
// takes any bpffs off /sys/fs/bpf (the tests start from an empty one, which
// steering mounts) and brings loopback up. Call it from TestMain after
// dispatching helper processes, which inherit the namespaces set up and
// must not do it again. A failure exits the process.
func InitPrivateNS() {
	if !InPrivateNS() {
		return
	}
	if err := setupPrivateNS(); err != nil {
		fmt.Fprintf(os.Stderr, "set up private namespaces: %v\n", err)
		os.Exit(1)
	}
}

func setupPrivateNS() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	for range 8 {
		var st unix.Statfs_t
		if unix.Statfs(bpffs, &st) != nil || st.Type != unix.BPF_FS_MAGIC {
			break
		}
		if err := unix.Unmount(bpffs, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", bpffs, err)
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
