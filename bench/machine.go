package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Machine describes where a Report was measured.
type Machine struct {
	// Kind is what the ratios of the run are comparable with:
	// "softroce-guest" (the qemu guest of ci/softroce), "rdma-host" (a host
	// with RDMA devices) or "host" (none).
	Kind       string   `json:"kind"`
	Hostname   string   `json:"hostname"`
	Kernel     string   `json:"kernel"`
	CPU        string   `json:"cpu"`
	CPUs       int      `json:"cpus"`
	GOMAXPROCS int      `json:"gomaxprocs"`
	Go         string   `json:"go"`
	Virt       string   `json:"virt,omitempty"` // "qemu TCG (SoftRoCE guest)", "hypervisor", ""
	Devices    []string `json:"rdma_devices,omitempty"`
	Load       string   `json:"loadavg,omitempty"` // /proc/loadavg's first three fields at the start
	Root       bool     `json:"root"`
	// ClockNS is the median cost of the time.Now pair around each sample
	// (every sample includes it; in a guest without a vDSO clock it is two
	// system calls).
	ClockNS int64 `json:"clock_ns"`
}

// String is a one-line description, for titles.
func (m Machine) String() string {
	s := fmt.Sprintf("%s: %s, %d CPUs, Linux %s, %s", m.Kind, m.CPU, m.CPUs, m.Kernel, m.Go)
	if len(m.Devices) > 0 {
		s += ", " + strings.Join(m.Devices, " ")
	}
	return s
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func describeMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), Root: os.Geteuid() == 0}
	if h, _ := os.Hostname(); h != "(none)" { // the guest has none
		m.Hostname = h
	}
	m.Kernel = readTrim("/proc/sys/kernel/osrelease")
	if f := strings.Fields(readTrim("/proc/loadavg")); len(f) >= 3 {
		m.Load = strings.Join(f[:3], " ")
	}
	hyper := false
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch {
			case !ok:
			case k == "model name" && m.CPU == "":
				m.CPU = strings.Join(strings.Fields(v), " ")
			case k == "flags" && slices.Contains(strings.Fields(v), "hypervisor"):
				hyper = true
			}
		}
		f.Close()
	}
	if m.CPU == "" {
		m.CPU = runtime.GOARCH
	}
	ents, _ := os.ReadDir("/sys/class/infiniband")
	for _, e := range ents {
		dev := e.Name()
		if drv, err := filepath.EvalSymlinks(filepath.Join("/sys/class/infiniband", dev, "device", "driver")); err == nil {
			dev += "(" + filepath.Base(drv) + ")"
		} else if p := readTrim(filepath.Join("/sys/class/infiniband", dev, "parent")); p != "" {
			dev += "(on " + p + ")"
		}
		m.Devices = append(m.Devices, dev)
	}
	switch {
	case os.Getenv("RDMABIND_SOFTROCE") == "1":
		m.Kind, m.Virt = "softroce-guest", "qemu TCG (SoftRoCE guest)"
	case len(m.Devices) > 0:
		m.Kind = "rdma-host"
	default:
		m.Kind = "host"
	}
	if hyper && m.Virt == "" {
		m.Virt = "hypervisor"
	}
	m.ClockNS = clockCost()
	return m
}

// clockCost is the median of 101 back-to-back time.Now pairs.
func clockCost() int64 {
	d := make([]int64, 101)
	for i := range d {
		t0 := time.Now()
		d[i] = int64(time.Since(t0))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// buildVersion and buildCommit are set by the Makefile's -ldflags -X (the
// build's VCS stamp is off where GOFLAGS has -buildvcs=false).
var buildVersion, buildCommit string

// Version returns the version of rdmabind this binary is and its commit:
// the one the Makefile stamped, else the module's, else a pseudo-version
// v0.0.0-DATE-COMMIT from the build's VCS stamp ("+dirty" for a modified
// tree), else "devel".
func Version() (version, commit string) {
	if buildVersion != "" {
		return buildVersion, buildCommit
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", ""
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v, rev
	}
	if rev == "" {
		return "devel", ""
	}
	stamp := "00000000000000"
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		stamp = t.UTC().Format("20060102150405")
	}
	v := "v0.0.0-" + stamp + "-" + rev[:min(12, len(rev))]
	if dirty {
		v += "+dirty"
	}
	return v, rev
}
