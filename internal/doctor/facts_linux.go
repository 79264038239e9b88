package doctor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/internal/netns"
	"github.com/rdmabind/rdmabind/rdma"
)

// SystemTimeout bounds how long LiveFacts waits for `rdma system`.
const SystemTimeout = 5 * time.Second

// LiveFacts gathers the facts of this process and host: sysfs and /dev from
// "/", the addresses of the calling thread's network namespace, its
// namespace, RLIMIT_MEMLOCK, the effective capabilities, the rdma_cm node
// (opened for reading and writing, and closed), `rdma system` (iproute2,
// run with a deadline of SystemTimeout or ctx's, whichever is sooner), and
// the registry directory (registry.DefaultDir) and this user's file there.
// A fact it cannot gather carries its error in Facts; LiveFacts itself
// does not fail.
//
// Call it on the thread whose network namespace is to be checked (a
// locked one, to check another namespace than the process's).
func LiveFacts(ctx context.Context) *Facts {
	f := &Facts{Root: "/"}
	f.Addrs, f.AddrsErr = rdma.LiveAddrs()

	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		f.MemlockErr = fmt.Errorf("getrlimit(RLIMIT_MEMLOCK): %w", err)
	} else {
		f.Memlock = Limit{Cur: rl.Cur, Max: rl.Max}
	}
	f.Caps, f.CapsErr = readCaps("/proc/self/status")
	f.RDMACM = statNode("/dev/infiniband/rdma_cm")
	f.System, f.SystemErr = rdmaSystem(ctx)

	f.Netns, f.NetnsErr = netns.Current()
	var st unix.Stat_t
	if err := unix.Stat("/proc/1/ns/net", &st); err != nil {
		f.NetnsErr = errors.Join(f.NetnsErr, fmt.Errorf("stat /proc/1/ns/net: %w", err))
	} else {
		f.HostNetns = st.Ino
	}

	dir, err := registry.DefaultDir()
	f.RegistryDir = dir
	if err != nil {
		f.RegistryDirErr = err
	} else if err := unix.Stat(f.RegistryDir, &st); err != nil {
		f.RegistryDirErr = fmt.Errorf("stat %s: %w", f.RegistryDir, err)
	} else if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f.RegistryDirErr = fmt.Errorf("%s is not a directory", f.RegistryDir)
	} else if err := unix.Faccessat(unix.AT_FDCWD, f.RegistryDir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		f.RegistryDirErr = fmt.Errorf("access %s for writing: %w", f.RegistryDir, err)
	}
	if f.RegistryDirErr != nil {
		f.RegistryFileErr = f.RegistryDirErr
	} else if f.Netns != 0 {
		f.RegistryFile = filepath.Join(f.RegistryDir, registry.FileName(f.Netns, uint32(os.Geteuid())))
		if fi, err := os.Stat(f.RegistryFile); err != nil {
			f.RegistryFileErr = err
		} else {
			f.RegistryFileSize = fi.Size()
		}
	} else {
		f.RegistryFileErr = fmt.Errorf("the network namespace is unknown: %w", f.NetnsErr)
	}
	return f
}

// statNode stats a device node and tries to open it for reading and
// writing.
func statNode(path string) Node {
	n := Node{Path: path}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		n.Err = &fs.PathError{Op: "stat", Path: path, Err: err}
		return n
	}
	n.Char = st.Mode&unix.S_IFMT == unix.S_IFCHR
	n.Mode = fs.FileMode(st.Mode & 0o777)
	if n.Char {
		n.Mode |= fs.ModeDevice | fs.ModeCharDevice
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		n.AccessErr = &fs.PathError{Op: "open", Path: path, Err: err}
		return n
	}
	unix.Close(fd)
	return n
}

// Capability numbers (linux/capability.h).
const (
	capNetAdmin = 12
	capIPCLock  = 14
	capSysAdmin = 21
	capBPF      = 39
)

// readCaps reads the effective capabilities from a /proc/<pid>/status file.
func readCaps(path string) (Caps, error) {
	f, err := os.Open(path)
	if err != nil {
		return Caps{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return Caps{}, fmt.Errorf("%s: CapEff %q: %w", path, v, err)
		}
		has := func(c uint) bool { return m&(1<<c) != 0 }
		return Caps{BPF: has(capBPF), SysAdmin: has(capSysAdmin), NetAdmin: has(capNetAdmin), IPCLock: has(capIPCLock)}, nil
	}
	if err := sc.Err(); err != nil {
		return Caps{}, err
	}
	return Caps{}, fmt.Errorf("%s: no CapEff line", path)
}

// rdmaSystem runs `rdma system` and parses "netns shared copy-on-fork on".
func rdmaSystem(ctx context.Context) (System, error) {
	ctx, cancel := context.WithTimeout(ctx, SystemTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rdma", "system").CombinedOutput()
	if err != nil {
		return System{}, fmt.Errorf("rdma system: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return parseSystem(string(out))
}
