package steer

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// Four listener processes share a port, each with its own shadow listener
// (SO_REUSEPORT) in the group it opened from the pins; the first designates
// itself, the second is the standby. 1000 connections: every one accepted
// by the first, none by the others (as they and the clients both report).
func TestFourProcessesOneReceives(t *testing.T) {
	skipUnlessBPF(t)
	for _, ap := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(ap, func(t *testing.T) {
			addr := reserve(t, ap)
			ls := []*listener{startListener(t, addr, 'A', listenerOpts{role: "designate"})}
			ls = append(ls, startListener(t, addr, 'B', listenerOpts{role: "standby"}))
			ls = append(ls, startListener(t, addr, 'C', listenerOpts{}), startListener(t, addr, 'D', listenerOpts{}))
			const n = 1000
			res := storm(addr, n, 16, nil)
			tl := count(res)
			if tl.by['A'] != n || len(tl.by) != 1 {
				t.Fatalf("clients: %v, want all %d by A", tl, n)
			}
			for i, l := range ls {
				want := 0
				if i == 0 {
					want = n
				}
				if got := l.count(); got != want {
					t.Errorf("listener %c accepted %d, want %d", l.id, got, want)
				}
			}
			// Every client port the clients saw greeted by A, A reported.
			acc := ls[0].acceptsCopy()
			for _, c := range res {
				if _, ok := acc[c.port]; !ok {
					t.Fatalf("client port %d not among A's accepts", c.port)
				}
			}
			t.Logf("%s: %v", addr, tl)
		})
	}
}

// percentiles returns min, p50, p90 and max of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	p := func(q float64) time.Duration { return s[int(q*float64(len(s)-1)+0.5)] }
	return fmt.Sprintf("min %v p50 %v p90 %v max %v (n=%d)", s[0], p(0.5), p(0.9), s[len(s)-1], len(s))
}
