package bench

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
)

// FormatNS formats nanoseconds with three significant digits: "812ns",
// "4.12µs", "123µs", "1.23ms".
func FormatNS(ns int64) string {
	f := float64(ns)
	switch {
	case ns < 1000:
		return fmt.Sprintf("%dns", ns)
	case ns < 1e6:
		return sig3(f/1e3) + "µs"
	case ns < 1e9:
		return sig3(f/1e6) + "ms"
	default:
		return sig3(f/1e9) + "s"
	}
}

func sig3(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// Header is the first lines of the table: the machine, the run.
func (r *Report) Header() string {
	var b strings.Builder
	root := ""
	if r.Machine.Root {
		root = ", root"
	}
	on := ""
	if r.Machine.Hostname != "" {
		on = " on " + r.Machine.Hostname
	}
	fmt.Fprintf(&b, "rdmabind bench %s%s (%s%s)\n", r.Version, on, r.Machine, root)
	short := ""
	if r.Short {
		short = " (short)"
	}
	fmt.Fprintf(&b, "address %s; %d samples per variant and per floor after %d warm-up%s, variant and floor interleaved; %.2f s; load %s; clock pair %dns\n",
		r.Addr, r.Samples, r.Warmup, short, r.Seconds, r.Machine.Load, r.Machine.ClockNS)
	return b.String()
}

// WriteTable writes the human table: per variant its distribution, its
// floor's and their ratios, the phases of a Bind, the unavailable variants.
func (r *Report) WriteTable(w io.Writer) error {
	if _, err := io.WriteString(w, r.Header()+"\n"); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "variant\tp50\tp90\tp99\tp99.9\tmax\t\tfloor\tp50\tp99\t\tratio p50\tp90\tp99\t")
	row := func(name string, s Summary) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t", name, FormatNS(s.P50), FormatNS(s.P90), FormatNS(s.P99), FormatNS(s.P999), FormatNS(s.Max))
	}
	phaseRows := func(label string, res Result) {
		fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", label)
		for _, p := range res.Phases {
			fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t\t\n", row("  "+p.Name, p.Summary))
		}
	}
	for _, res := range r.Results {
		if res.Name == "phases" {
			phaseRows("bind, by phase:", res) // the phases variant: phases only
			continue
		}
		line := row(res.Name, res.Summary)
		if res.FloorSeries != nil {
			f := res.FloorSeries.Summary
			line += fmt.Sprintf("\t%s\t%s\t%s\t\t%.2f\t%.2f\t%.2f\t", res.FloorSeries.Name, FormatNS(f.P50), FormatNS(f.P99), res.Ratio.P50, res.Ratio.P90, res.Ratio.P99)
		} else {
			line += "\t(a floor)\t\t\t\t\t\t\t"
		}
		fmt.Fprintln(tw, line)
		if len(res.Phases) > 0 {
			phaseRows(res.Name+", by phase:", res)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Unavailable) > 0 {
		fmt.Fprintln(w, "\nnot measured here:")
		for _, u := range r.Unavailable {
			fmt.Fprintf(w, "  %-12s %s\n", u.Name, u.Reason)
		}
	}
	_, err := fmt.Fprintln(w, "\nratio = variant / floor at the same percentile; docs/bench.md says what each floor is.")
	return err
}

// BenchstatChunks is how many lines WriteBenchstat writes per series: the
// samples in order, cut into that many runs, as `go test -count` would give.
const BenchstatChunks = 10

// WriteBenchstat writes the report in the Go benchmark format that
// benchstat reads: per series (variant, floor, phase) BenchstatChunks lines
// of consecutive samples, each with the chunk's median as ns/op and its
// p99; a variant's lines also carry the ratio of its chunk's median to its
// floor's.
func (r *Report) WriteBenchstat(w io.Writer) error {
	fmt.Fprintf(w, "goos: linux\ngoarch: %s\npkg: github.com/rdmabind/rdmabind/bench\ncpu: %s\n", runtime.GOARCH, r.Machine.CPU)
	fmt.Fprintf(w, "machine: %s\nversion: %s\n", r.Machine.Kind, r.Version)
	procs := r.Machine.GOMAXPROCS
	line := func(name string, s []int64, floor []int64) {
		n := len(s)
		if n == 0 {
			return
		}
		chunks := min(BenchstatChunks, n)
		for c := range chunks {
			lo, hi := c*n/chunks, (c+1)*n/chunks
			part := Summarize(s[lo:hi])
			fmt.Fprintf(w, "BenchmarkBind/%s-%d\t%d\t%d ns/op\t%d p99-ns", name, procs, hi-lo, part.P50, part.P99)
			if len(floor) == n && part.P50 > 0 {
				fp := Summarize(floor[lo:hi])
				if fp.P50 > 0 {
					fmt.Fprintf(w, "\t%.4f floor-ratio", float64(part.P50)/float64(fp.P50))
				}
			}
			fmt.Fprintln(w)
		}
	}
	for _, res := range r.Results {
		if res.Name == "phases" {
			for _, p := range res.Phases {
				line("phase="+p.Name, p.Samples, nil)
			}
			continue
		}
		for _, p := range res.Phases { // another variant's phases
			line(res.Name+"/phase="+p.Name, p.Samples, nil)
		}
		var floor []int64
		if res.FloorSeries != nil {
			floor = res.FloorSeries.Samples
		}
		line(res.Name, res.Samples, floor)
		if res.FloorSeries != nil {
			line("floor="+res.FloorSeries.Name, res.FloorSeries.Samples, nil)
		}
	}
	return nil
}
