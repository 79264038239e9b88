package doctor

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/rdmabind/rdmabind/rdma"
)

// Facts are what the checks look at. LiveFacts gathers them from this
// process and host, FixtureFacts from a fixture; tests set single fields
// to see a check fail. A fact that could not be gathered has its error set
// (its check then says so).
type Facts struct {
	// Root is the root below which sysfs and /dev are read ("/" live).
	Root string
	// Addrs are the addresses of this network namespace's interfaces.
	Addrs    *rdma.AddrTable
	AddrsErr error
	// Memlock is RLIMIT_MEMLOCK.
	Memlock    Limit
	MemlockErr error
	// Caps are the process's effective capabilities that matter here.
	Caps    Caps
	CapsErr error
	// RDMACM is the rdma_cm device node.
	RDMACM Node
	// System is what `rdma system` says.
	System    System
	SystemErr error
	// Netns and HostNetns are the inode numbers of this thread's network
	// namespace and of PID 1's (the host's, outside a PID namespace); 0
	// where unknown, with NetnsErr saying why.
	Netns, HostNetns uint64
	NetnsErr         error
	// RegistryDir is the registry's directory (registry.DefaultDir);
	// RegistryDirErr is nil when it is a trusted directory this process
	// can write.
	RegistryDir    string
	RegistryDirErr error
	// RegistryFile is this namespace's and user's registry file;
	// RegistryFileErr is its stat error (fs.ErrNotExist: not made yet).
	RegistryFile     string
	RegistryFileSize int64
	RegistryFileErr  error
}

// Limit is a resource limit in bytes; Unlimited is RLIM_INFINITY.
type Limit struct{ Cur, Max uint64 }

// Unlimited is the value of an unlimited Limit.
const Unlimited = math.MaxUint64

// Caps are effective capabilities.
type Caps struct {
	BPF, SysAdmin, NetAdmin, IPCLock bool
}

// Node is what a stat of a device node found.
type Node struct {
	Path string
	// Err is the stat's error (fs.ErrNotExist: no node).
	Err error
	// Char reports a character device.
	Char bool
	Mode fs.FileMode
	// AccessErr is nil when this process may open the node for reading
	// and writing.
	AccessErr error
}

// System is the RDMA subsystem's settings, as `rdma system` shows them.
type System struct {
	// NetnsMode is "shared" (every namespace sees every device) or
	// "exclusive" (a device is in one namespace).
	NetnsMode string
	// CopyOnFork is "on" or "off".
	CopyOnFork string
}

// hostNetns is the inode of the initial network namespace on Linux.
const hostNetns = 4026531840

// FixtureFacts returns the facts of a healthy host whose sysfs and /dev
// are the fixture below root (package rdma's testdata layout, addresses
// in root/addrs.txt): no memlock limit, root's capabilities, the rdma_cm
// node as the fixture has it (its empty file stands for the character
// device), the shared namespace mode with copy-on-fork, the host's network
// namespace, a writable registry directory and no registry file yet.
func FixtureFacts(root string) *Facts {
	f := &Facts{
		Root:        root,
		Memlock:     Limit{Cur: Unlimited, Max: Unlimited},
		Caps:        Caps{BPF: true, SysAdmin: true, NetAdmin: true, IPCLock: true},
		System:      System{NetnsMode: "shared", CopyOnFork: "on"},
		Netns:       hostNetns,
		HostNetns:   hostNetns,
		RegistryDir: "/run/rdmabind", RegistryFile: "/run/rdmabind/rdmabind-netns-4026531840-uid-0.reg",
		RegistryFileErr: fs.ErrNotExist,
	}
	f.Addrs, f.AddrsErr = rdma.ReadAddrTable(filepath.Join(root, "addrs.txt"))
	f.RDMACM = Node{Path: "/dev/infiniband/rdma_cm", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Char: true}
	if _, err := os.Stat(filepath.Join(root, "dev/infiniband/rdma_cm")); err != nil {
		f.RDMACM = Node{Path: "/dev/infiniband/rdma_cm", Err: err}
		if errors.Is(err, fs.ErrNotExist) {
			f.RDMACM.Err = fs.ErrNotExist
		}
	}
	return f
}
