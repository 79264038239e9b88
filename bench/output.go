package bench

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"
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
	reps := ""
	if r.Count > 1 {
		reps = fmt.Sprintf(", %d repetitions", r.Count)
	}
	fmt.Fprintf(&b, "address %s; %d samples per variant and per floor after %d warm-up%s%s, variant and floor interleaved; %.2f s; load %s; clock pair %dns\n",
		r.Addr, r.Samples, r.Warmup, reps, short, r.Seconds, r.Machine.Load, r.Machine.ClockNS)
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
	if err := r.WriteCounters(w); err != nil {
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

// BenchstatCount is the repetitions (Config.Count) that `rdmabind bench
// --benchstat` makes unless told otherwise: benchstat gives a 95%
// confidence interval from 6 values on.
const BenchstatCount = 6

// WriteBenchstat writes the report in the Go benchmark format
// (golang.org/x/perf/benchfmt) that benchstat reads: per series (variant,
// floor, phase) one line per repetition of the run (Config.Count), each
// with the repetition's median as ns/op and its p99; a variant's lines also
// carry the ratio of its median to its floor's in the same repetition.
// Two runs' outputs compare with `benchstat old.txt new.txt`.
func (r *Report) WriteBenchstat(w io.Writer) error {
	bw := benchfmt.NewWriter(w)
	// File configuration, the same for every line (a key whose value
	// differed between two files would make benchstat put them in tables
	// of their own instead of comparing them: the version is left out).
	res := &benchfmt.Result{}
	for _, kv := range [][2]string{{"goos", "linux"}, {"goarch", runtime.GOARCH}, {"pkg", "github.com/rdmabind/rdmabind/bench"}, {"cpu", r.Machine.CPU}, {"machine", r.Machine.Kind}} {
		if kv[1] != "" {
			res.Config = append(res.Config, benchfmt.Config{Key: kv[0], Value: []byte(kv[1]), File: true})
		}
	}
	procs := r.Machine.GOMAXPROCS
	line := func(name string, runs, floor []Summary) error {
		for i, s := range runs {
			if s.N == 0 {
				continue
			}
			res.Name = benchfmt.Name(fmt.Sprintf("Bind/%s-%d", name, procs))
			res.Iters = s.N
			res.Values = append(res.Values[:0],
				benchfmt.Value{Value: float64(s.P50), Unit: "ns/op"},
				benchfmt.Value{Value: float64(s.P99), Unit: "p99-ns"})
			if len(floor) == len(runs) && floor[i].P50 > 0 {
				res.Values = append(res.Values, benchfmt.Value{Value: math.Round(float64(s.P50)/float64(floor[i].P50)*1e4) / 1e4, Unit: "floor-ratio"})
			}
			if err := bw.Write(res); err != nil {
				return err
			}
		}
		return nil
	}
	for _, res := range r.Results {
		if res.Name == "phases" {
			for _, p := range res.Phases {
				if err := line("phase="+p.Name, runsOf(p.Summary, p.Runs), nil); err != nil {
					return err
				}
			}
			continue
		}
		for _, p := range res.Phases { // another variant's phases
			if err := line(res.Name+"/phase="+p.Name, runsOf(p.Summary, p.Runs), nil); err != nil {
				return err
			}
		}
		var floor []Summary
		if res.FloorSeries != nil {
			floor = runsOf(res.FloorSeries.Summary, res.FloorSeries.Runs)
		}
		if err := line(res.Name, runsOf(res.Summary, res.Runs), floor); err != nil {
			return err
		}
		if res.FloorSeries != nil {
			if err := line("floor="+res.FloorSeries.Name, floor, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
