package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/rdmabind/rdmabind/rdma"
)

// runCounters reads the RDMA ports' counters at the start of a run, to
// report what moved during it.
type runCounters struct {
	sysfs  rdma.Sysfs
	topo   *rdma.Topology
	before []rdma.PortCounters
	err    error
}

// startCounters reads every port's counters on the live system (rdma's
// ReadCounters: github.com/Mellanox/rdmamap).
func startCounters() *runCounters {
	c := &runCounters{}
	if c.topo, c.err = c.sysfs.ReadTopology(); c.err == nil {
		c.before, c.err = c.sysfs.ReadCounters(c.topo)
	}
	return c
}

// stop reads the counters again and returns the non-zero deltas per port,
// or a note saying why there are none.
func (c *runCounters) stop() ([]rdma.PortCounters, string) {
	if c.err != nil {
		return nil, "counters not read: " + c.err.Error()
	}
	if len(c.topo.Devices) == 0 {
		return nil, ""
	}
	after, err := c.sysfs.ReadCounters(c.topo)
	if err != nil {
		return nil, "counters not read at the end: " + err.Error()
	}
	var out []rdma.PortCounters
	for _, d := range rdma.DiffCounters(c.before, after) {
		if nz := d.Counters.NonZero(); !nz.Empty() {
			out = append(out, rdma.PortCounters{PortRef: d.PortRef, Counters: nz})
		}
	}
	if len(out) == 0 {
		return nil, "no counter of any RDMA port moved during the run"
	}
	return out, ""
}

// WriteCounters writes the counters' deltas over the run, a line per port:
// "rxe0 port 1: 412 packets; trouble: none; sent_pkts +206 rcvd_pkts +206".
// It writes nothing on a host without RDMA devices.
func (r *Report) WriteCounters(w io.Writer) error {
	if r.CountersNote != "" {
		_, err := fmt.Fprintf(w, "port counters over the run: %s\n", r.CountersNote)
		return err
	}
	if len(r.Counters) == 0 {
		return nil
	}
	fmt.Fprintln(w, "port counters over the run (deltas):")
	for _, pc := range r.Counters {
		trouble := "none"
		if t := pc.Trouble(); len(t) > 0 {
			trouble = strings.Join(t, " ")
		}
		var all []string
		for _, m := range []map[string]uint64{pc.PMA, pc.HW} {
			for _, name := range sortedKeys(m) {
				all = append(all, fmt.Sprintf("%s +%d", name, m[name]))
			}
		}
		if _, err := fmt.Fprintf(w, "  %s: %d packets; trouble: %s; %s\n", pc.PortRef, pc.Packets(), trouble, strings.Join(all, " ")); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]uint64) []string { return slices.Sorted(maps.Keys(m)) }
