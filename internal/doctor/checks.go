package doctor

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/rdmabind/rdmabind/rdma"
)

// Checks are the checks Run runs, in order.
var Checks = []Check{
	{"devices", checkDevices},
	{"port", checkPorts},
	{"gid", checkGIDs},
	{"memlock", checkMemlock},
	{"rdma_cm", checkRDMACM},
	{"netns", checkNetns},
	{"copy-on-fork", checkCopyOnFork},
	{"bpf", checkBPF},
	{"registry", checkRegistry},
}

// MemlockPerConn is the most locked memory one qp connection registers
// with the default options (2.4 MiB once it has grown to its largest; 60
// KiB at setup; docs/qp.md, "Memory and lifetimes"), rounded up.
const MemlockPerConn = 5 << 19

// topology is the topology of the facts' root and a resolver over it and
// the facts' addresses.
type topology struct {
	t   *rdma.Topology
	res *rdma.Resolver
}

func readTopology(f *Facts) (*topology, error) {
	t, err := rdma.ReadTopology(f.Root)
	if err != nil {
		return nil, err
	}
	tp := &topology{t: t}
	if f.Addrs != nil {
		// Resolve as if the rdma_cm node were there: its own check says
		// when it is not, and every GID would only repeat that.
		withCM := *t
		withCM.RDMACM = true
		tp.res = rdma.NewResolver(&withCM, f.Addrs)
	}
	return tp, nil
}

func one(name string, ok bool, detail, fix string) []Result {
	return []Result{{Name: name, OK: ok, Detail: detail, Fix: fix}}
}

func checkDevices(e *Env) []Result {
	if e.topoErr != nil {
		return one("devices", false, e.topoErr.Error(), "a device went away while sysfs was read, or sysfs is damaged: run again; see `rdma dev` and dmesg")
	}
	var names []string
	for _, d := range e.topo.t.Devices {
		names = append(names, fmt.Sprintf("%s (%d port(s))", d.Name, len(d.Ports)))
	}
	if len(names) == 0 {
		return one("devices", false, "no RDMA device: /sys/class/infiniband lists none",
			"load the driver of the HCA (mlx5_ib, ...), or for SoftRoCE: modprobe rdma_rxe && rdma link add rxe0 type rxe netdev eth0; in a container, the runtime must pass the device (and under `rdma system set netns exclusive`, move it in with `rdma dev set DEV netns NS`)")
	}
	return one("devices", true, strings.Join(names, ", "), "")
}

func checkPorts(e *Env) []Result {
	if e.topoErr != nil || len(e.topo.t.Devices) == 0 {
		return nil // devices said why
	}
	var out []Result
	for _, d := range e.topo.t.Devices {
		for _, p := range d.Ports {
			r := Result{Name: fmt.Sprintf("port %s/%d", d.Name, p.Number), OK: p.Active()}
			nd := "no netdev"
			if len(p.Netdevs) > 0 {
				nd = "netdev " + strings.Join(p.Netdevs, ", ")
			}
			r.Detail = fmt.Sprintf("%s, phys_state %s, %s, %s", p.State, cmp.Or(p.PhysState, "unknown"), p.LinkLayer, nd)
			if !r.OK {
				r.Fix = portFix(&p)
			}
			out = append(out, r)
		}
	}
	return out
}

// portFix says what to do about a port that is not ACTIVE.
func portFix(p *rdma.Port) string {
	nd := "its netdev"
	if len(p.Netdevs) > 0 {
		nd = p.Netdevs[0]
	}
	switch {
	case p.LinkLayer == rdma.LinkLayerInfiniBand && p.State == "INIT":
		return "the link is up but no subnet manager has configured the port: start opensm on one host of the fabric (or enable the switch's SM)"
	case p.PhysState == "Disabled":
		return fmt.Sprintf("the port is administratively down: ip link set %s up", nd)
	case p.PhysState == "Polling" || p.PhysState == "Sleep":
		return "no link: check the cable, the switch port and the transceiver (ibstat, ethtool " + nd + ")"
	case p.LinkLayer == rdma.LinkLayerEthernet:
		return fmt.Sprintf("bring the link up: ip link set %s up, and check the cable (ethtool %s)", nd, nd)
	}
	return "check the link: ibstat, and the cable and switch port"
}

func checkMemlock(e *Env) []Result {
	f := e.Facts
	const fix = "raise the limit: ulimit -l unlimited (a shell), LimitMEMLOCK=infinity (systemd), memlock in /etc/security/limits.conf, docker run --ulimit memlock=-1"
	if f.MemlockErr != nil {
		return one("memlock", false, f.MemlockErr.Error(), fix)
	}
	cur := f.Memlock.Cur
	switch {
	case cur == Unlimited:
		return one("memlock", true, "RLIMIT_MEMLOCK unlimited", "")
	case f.Caps.IPCLock && f.CapsErr == nil:
		return one("memlock", true, fmt.Sprintf("RLIMIT_MEMLOCK %s, but CAP_IPC_LOCK lifts it for memory registration", size(cur)), "")
	case cur < MemlockPerConn:
		return one("memlock", false, fmt.Sprintf("RLIMIT_MEMLOCK %s (hard %s): less than one connection registers (%s with the default options): Dial and Accept fail with ENOMEM from ibv_reg_mr",
			size(cur), size(f.Memlock.Max), size(MemlockPerConn)), fix)
	}
	return one("memlock", true, fmt.Sprintf("RLIMIT_MEMLOCK %s: about %d connection(s) at %s each", size(cur), cur/MemlockPerConn, size(MemlockPerConn)), "")
}

func size(n uint64) string {
	switch {
	case n == Unlimited:
		return "unlimited"
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

func checkRDMACM(e *Env) []Result {
	n := e.Facts.RDMACM
	switch {
	case errors.Is(n.Err, fs.ErrNotExist):
		return one("rdma_cm", false, n.Path+" does not exist: librdmacm cannot work (binds fail with WSAENETDOWN)",
			"modprobe rdma_ucm (the node appears with it; udev makes it); in a container pass the device: docker run --device /dev/infiniband/rdma_cm --device /dev/infiniband/uverbs0")
	case n.Err != nil:
		return one("rdma_cm", false, n.Err.Error(), "")
	case !n.Char:
		return one("rdma_cm", false, fmt.Sprintf("%s is not a character device (mode %v)", n.Path, n.Mode), "remove it and let udev (modprobe rdma_ucm) make the node: mknod "+n.Path+" c 10 <minor from /sys/class/misc/rdma_cm/dev>")
	case n.AccessErr != nil:
		return one("rdma_cm", false, fmt.Sprintf("%s (mode %#o): this process may not open it for reading and writing: %v", n.Path, n.Mode.Perm(), n.AccessErr),
			"add the user to the group of the node (group rdma with rdma-core's udev rules, or chmod 666 as rdma-core's 90-rdma-ucm.rules does), then log in again")
	}
	return one("rdma_cm", true, fmt.Sprintf("%s, a character device (mode %#o), opened for reading and writing", n.Path, n.Mode.Perm()), "")
}

func checkNetns(e *Env) []Result {
	f := e.Facts
	mode := f.System.NetnsMode
	if f.SystemErr != nil {
		mode = "unknown (" + f.SystemErr.Error() + ")"
	}
	where := "this process's network namespace is unknown"
	own := false
	switch {
	case f.Netns != 0 && f.HostNetns != 0 && f.Netns == f.HostNetns:
		where = "this process is in the host's network namespace"
	case f.Netns != 0 && f.HostNetns != 0:
		where = fmt.Sprintf("this process is in network namespace %d, not the host's (%d)", f.Netns, f.HostNetns)
		own = true
	case f.NetnsErr != nil:
		where += ": " + f.NetnsErr.Error()
	}
	detail := fmt.Sprintf("RDMA namespace mode %s; %s", mode, where)
	if !own || e.topoErr != nil {
		return one("netns", true, detail, "")
	}
	devs := len(e.topo.t.Devices)
	switch {
	case devs == 0 && f.System.NetnsMode == "exclusive":
		return one("netns", false, detail+"; no RDMA device is in this namespace",
			"move a device in from the host: rdma dev set DEV netns NSNAME (exclusive mode), or use the shared mode: rdma system set netns shared")
	case devs > 0 && f.System.NetnsMode == "shared" && served(e) == 0:
		return one("netns", false, detail+"; the devices and their GID tables are the host's, and none of this namespace's addresses is in them",
			"give the namespace an interface whose addresses the kernel adds to a GID table (a macvlan or ipvlan on the RDMA netdev, or the netdev itself moved in), or an RDMA device of its own (rdma system set netns exclusive; rdma dev set DEV netns NSNAME)")
	}
	return one("netns", true, detail, "")
}

// served counts the addresses of this namespace that resolve.
func served(e *Env) int {
	if e.topo == nil || e.topo.res == nil || e.Facts.Addrs == nil {
		return 0
	}
	n := 0
	for _, a := range e.Facts.Addrs.All() {
		if _, err := e.topo.res.Resolve(a.Addr); err == nil {
			n++
		}
	}
	return n
}

func checkCopyOnFork(e *Env) []Result {
	f := e.Facts
	switch {
	case f.SystemErr != nil:
		return one("copy-on-fork", true, "not checked: "+f.SystemErr.Error(), "install iproute2 (the rdma tool) to check it")
	case f.System.CopyOnFork == "on":
		return one("copy-on-fork", true, "on: a forked child does not corrupt the parent's registered memory", "")
	case f.System.CopyOnFork == "":
		return one("copy-on-fork", true, "not reported (an iproute2 or kernel older than Linux 5.13, which has it always on)", "")
	}
	return one("copy-on-fork", false, "copy-on-fork "+f.System.CopyOnFork+": a process that forks after registering memory may corrupt it (the child's copy-on-write takes the pages)",
		"use a kernel of Linux 5.13 or later, or set RDMAV_FORK_SAFE=1 (ibv_fork_init) in processes that fork")
}

func checkBPF(e *Env) []Result {
	f := e.Facts
	const fix = "run as root, or grant CAP_BPF and CAP_NET_ADMIN (setcap cap_bpf,cap_net_admin+ep BINARY; docker run --cap-add BPF --cap-add NET_ADMIN)"
	if f.CapsErr != nil {
		return one("bpf", false, "capabilities unknown: "+f.CapsErr.Error(), fix)
	}
	bpf := f.Caps.BPF || f.Caps.SysAdmin
	if bpf && f.Caps.NetAdmin {
		return one("bpf", true, "CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN: listener steering (SK_REUSEPORT programs) can load", "")
	}
	var miss []string
	if !bpf {
		miss = append(miss, "CAP_BPF")
	}
	if !f.Caps.NetAdmin {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	return one("bpf", false, "no "+strings.Join(miss, ", no ")+": listeners run in the degraded mode (exclusivity kept, the queue of a dying listener lost; docs/listen.md)", fix)
}

func checkRegistry(e *Env) []Result {
	f := e.Facts
	if f.RegistryDirErr != nil {
		return one("registry", false, f.RegistryDirErr.Error(),
			"the registry lives in a directory only its user can make (docs/security.md): /run/rdmabind for root, /run/user/<uid>/rdmabind with a logind session (loginctl enable-linger USER), else /dev/shm/rdmabind-uid-<uid>; make one of them usable, or set RDMABIND_REGISTRY_DIR (Options.RegistryDir) to a directory of the user's own, the same in every process")
	}
	switch {
	case errors.Is(f.RegistryFileErr, fs.ErrNotExist):
		return one("registry", true, fmt.Sprintf("%s is writable; %s not made yet (the first Bind of this user in this namespace makes it)", f.RegistryDir, f.RegistryFile), "")
	case f.RegistryFileErr != nil:
		return one("registry", false, fmt.Sprintf("%s is writable; the registry file: %v", f.RegistryDir, f.RegistryFileErr), "")
	}
	return one("registry", true, fmt.Sprintf("%s is writable; %s, %d bytes (`rdmabind ls` lists it)", f.RegistryDir, f.RegistryFile, f.RegistryFileSize), "")
}
