package rdma

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Counters are one port's traffic and error counters at one moment, as the
// kernel exposes them in sysfs and github.com/Mellanox/rdmamap reads them
// (Sysfs.ReadCounters).
type Counters struct {
	// PMA holds ports/<n>/counters: the InfiniBand performance
	// management counters (port_xmit_packets, port_rcv_packets,
	// port_xmit_data and port_rcv_data in units of 4 bytes, symbol_error,
	// link_downed...). Devices without a PMA (rxe) have none.
	PMA map[string]uint64 `json:"counters,omitempty"`
	// HW holds ports/<n>/hw_counters: the driver's own. mlx5:
	// out_of_sequence, packet_seq_err, local_ack_timeout_err and
	// roce_adp_retrans (retransmits), np_cnp_sent and rp_cnp_handled
	// (congestion notification packets), rx_write_requests...; rxe:
	// sent_pkts, rcvd_pkts, out_of_seq_request, duplicate_request,
	// retry_exceeded_err... The setting "lifespan" (how many milliseconds
	// the kernel keeps a reading: 12 for rxe, 10 for mlx5) is left out: it
	// is not a counter. Two readings closer together than that may see the
	// same values.
	HW map[string]uint64 `json:"hw_counters,omitempty"`
}

// PortCounters are the Counters of the port Device, Port.
type PortCounters struct {
	PortRef
	Counters
}

// Packets is the number of packets sent and received: the PMA counters'
// port_xmit_packets and port_rcv_packets, or where there is no PMA the
// hw_counters sent_pkts and rcvd_pkts (rxe). On a delta, the packets of the
// interval.
func (c Counters) Packets() uint64 {
	if n, ok := c.PMA["port_xmit_packets"]; ok {
		return n + c.PMA["port_rcv_packets"]
	}
	return c.HW["sent_pkts"] + c.HW["rcvd_pkts"]
}

// Trouble lists the counters, among those that say a run went badly
// (retransmits, out-of-sequence packets, congestion notifications, errors),
// that are not zero, as "name=value", sorted. On a delta it tells what
// happened during the interval.
func (c Counters) Trouble() []string {
	var out []string
	c.eachTrouble(func(name string, v uint64) { out = append(out, fmt.Sprintf("%s=%d", name, v)) })
	slices.Sort(out)
	return slices.Compact(out)
}

// TroubleSum is the sum of the counters Trouble lists: 0 when nothing went
// wrong.
func (c Counters) TroubleSum() uint64 {
	var n uint64
	c.eachTrouble(func(_ string, v uint64) { n += v })
	return n
}

func (c Counters) eachTrouble(f func(name string, v uint64)) {
	for _, m := range []map[string]uint64{c.PMA, c.HW} {
		for name, v := range m {
			if v != 0 && isTrouble(name) {
				f(name, v)
			}
		}
	}
}

// isTrouble reports whether a counter counts something that went wrong or
// slowed traffic down: one of the words of its name (split at "_") is one
// of troubleWords. (A substring test would take rxe's ack_deferred, a
// normal event, for an error.)
func isTrouble(name string) bool {
	for _, w := range strings.Split(name, "_") {
		if slices.Contains(troubleWords, w) {
			return true
		}
	}
	return false
}

var troubleWords = []string{
	"err", "error", "errors", "retry", "retries", "retrans", "retransmits", "seq", "sequence",
	"cnp", "ecn", "duplicate", "discards", "downed", "rnr", "timeout", "buffer",
}

// Sub returns c minus old, counter by counter: what happened between the
// two readings. A counter absent from old counts from zero; one that went
// down (the driver reset it, or the device was replaced) is reported as
// its new value.
func (c Counters) Sub(old Counters) Counters {
	sub := func(now, before map[string]uint64) map[string]uint64 {
		if now == nil {
			return nil
		}
		out := make(map[string]uint64, len(now))
		for name, v := range now {
			if b, ok := before[name]; ok && b <= v {
				v -= b
			}
			out[name] = v
		}
		return out
	}
	return Counters{PMA: sub(c.PMA, old.PMA), HW: sub(c.HW, old.HW)}
}

// NonZero returns c without its zero counters (nil maps when none is left).
func (c Counters) NonZero() Counters {
	keep := func(m map[string]uint64) map[string]uint64 {
		out := maps.Clone(m)
		maps.DeleteFunc(out, func(_ string, v uint64) bool { return v == 0 })
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return Counters{PMA: keep(c.PMA), HW: keep(c.HW)}
}

// Empty reports whether c holds no counter.
func (c Counters) Empty() bool { return len(c.PMA) == 0 && len(c.HW) == 0 }

// ReadCounters reads the counters of every port of t's devices below s's
// root, in t's order.
//
// Errors: those of Sysfs.ReadPortCounters.
func (s Sysfs) ReadCounters(t *Topology) ([]PortCounters, error) {
	var out []PortCounters
	for _, d := range t.Devices {
		for _, p := range d.Ports {
			c, err := s.ReadPortCounters(d.Name, p.Number)
			if err != nil {
				return nil, err
			}
			out = append(out, PortCounters{PortRef: PortRef{Device: d.Name, Port: p.Number}, Counters: c})
		}
	}
	return out, nil
}

// AddCounters reads the counters of every port of t and sets Port.Counters.
//
// Errors: those of Sysfs.ReadPortCounters.
func (s Sysfs) AddCounters(t *Topology) error {
	cs, err := s.ReadCounters(t)
	if err != nil {
		return err
	}
	k := 0
	for i := range t.Devices {
		for j := range t.Devices[i].Ports {
			t.Devices[i].Ports[j].Counters = &cs[k].Counters
			k++
		}
	}
	return nil
}

// DiffCounters returns after minus before for every port of after (a port
// missing from before counts from zero).
func DiffCounters(before, after []PortCounters) []PortCounters {
	out := make([]PortCounters, 0, len(after))
	for _, a := range after {
		var b Counters
		if i := slices.IndexFunc(before, func(x PortCounters) bool { return x.PortRef == a.PortRef }); i >= 0 {
			b = before[i].Counters
		}
		out = append(out, PortCounters{PortRef: a.PortRef, Counters: a.Counters.Sub(b)})
	}
	return out
}
