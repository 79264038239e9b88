package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rdmabind/rdmabind/bench"
)

func init() {
	commands["bench"] = command{"bench [--json|--benchstat] [--short] [--samples N] [--count N] [--variants a,b] [--crowd N] [--plot FILE.svg] [--check DIR] [--record DIR]: bind latency vs its floors, port counters", runBench}
}

// benchOutput is bench's --json document: the report, and the check when
// --check was given.
type benchOutput struct {
	*bench.Report
	Check *checkOutput `json:"check,omitempty"`
	Plot  string       `json:"plot,omitempty"`
}

type checkOutput struct {
	History   string          `json:"history"`
	Version   string          `json:"version"`
	Kind      string          `json:"kind"` // the recorded run's machine kind
	Samples   int             `json:"samples"`
	Regressed bool            `json:"regressed"`
	Findings  []bench.Finding `json:"findings"`
}

func runBench(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	benchstat := fs.Bool("benchstat", false, fmt.Sprintf("print Go benchmark lines for benchstat instead of the table, one per repetition (--count, default %d with --benchstat)", bench.BenchstatCount))
	count := fs.Int("count", 0, fmt.Sprintf("repeat the whole run N times, each a run of its own (default 1; %d with --benchstat)", bench.BenchstatCount))
	short := fs.Bool("short", false, fmt.Sprintf("a short run: %d samples after %d warm-up (unless --samples/--warmup say)", bench.ShortSamples, bench.ShortWarmup))
	samples := fs.Int("samples", 0, fmt.Sprintf("samples per variant and per floor (default %d)", bench.DefaultSamples))
	warmup := fs.Int("warmup", 0, fmt.Sprintf("warm-up samples per variant, not counted (default %d)", bench.DefaultWarmup))
	list := fs.String("variants", "", "comma-separated variants to run (default all)")
	crowd := fs.Int("crowd", bench.DefaultCrowd, "sockets bind-crowded keeps bound while it measures")
	addr := fs.String("addr", "", "local address to bind (default the first IPv4 address an RDMA device serves, else 127.0.0.1)")
	plot := fs.String("plot", "", "write the latency CDFs to this file (.svg)")
	check := fs.String("check", "", "compare the p50 ratios with the newest recorded run of this machine kind in DIR; exit 1 on a regression")
	inject := fs.String("inject", "", "with --check: multiply measured ratios first, VARIANT=FACTOR[,...] (to test the check)")
	record := fs.String("record", "", "write the run's summary into DIR/<version>.json")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	if *asJSON && *benchstat {
		return errors.New("bench: --json and --benchstat exclude each other")
	}
	if *plot != "" && !strings.EqualFold(filepath.Ext(*plot), ".svg") {
		return fmt.Errorf("bench: --plot %s: only .svg is written (rsvg-convert makes a PNG of it)", *plot)
	}
	inj, err := bench.ParseInject(*inject)
	if err != nil {
		return err
	}
	if *crowd <= 0 {
		return fmt.Errorf("bench: --crowd %d: want a positive number of sockets", *crowd)
	}
	if *count < 0 {
		return fmt.Errorf("bench: --count %d: want 1 or more", *count)
	}
	cfg := bench.Config{Samples: *samples, Warmup: *warmup, Short: *short, Count: *count, Crowd: *crowd}
	if cfg.Count == 0 && *benchstat {
		cfg.Count = bench.BenchstatCount
	}
	if *short {
		if cfg.Samples == 0 {
			cfg.Samples = bench.ShortSamples
		}
		if cfg.Warmup == 0 {
			cfg.Warmup = bench.ShortWarmup
		}
	}
	if *list != "" {
		cfg.Variants = strings.Split(*list, ",")
	}
	if *addr != "" {
		a, err := netip.ParseAddr(*addr)
		if err != nil {
			return fmt.Errorf("bench: --addr %q is not an IP address: %w", *addr, err)
		}
		cfg.Addr = a
	}
	var bar *progressBar
	if isTerminal(os.Stderr) {
		bar = &progressBar{w: os.Stderr, start: time.Now()}
		cfg.Progress = bar.update
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench.Run(ctx, cfg)
	bar.clear()
	if err != nil {
		return err
	}
	out := benchOutput{Report: rep}
	var regressed error
	if *check != "" {
		path, h, run, err := bench.NewestHistory(*check, rep.Machine.Kind)
		if err != nil {
			return err
		}
		fnd, bad := bench.Check(rep, run, inj)
		// A busy machine makes ratios worse, never better: measure the
		// variants that look worse again, up to checkRetries times, and
		// keep the best of the runs before calling it a regression.
		for try := 1; bad && try <= checkRetries; try++ {
			again := bench.Regressed(fnd)
			fmt.Fprintf(os.Stderr, "bench check: %s worse than recorded; measuring again (%d of %d)\n", strings.Join(again, ", "), try, checkRetries)
			rcfg := cfg
			rcfg.Variants, rcfg.Progress = again, nil
			more, err := bench.Run(ctx, rcfg)
			if err != nil {
				return err
			}
			rep.KeepBetter(more)
			fnd, bad = bench.Check(rep, run, inj)
		}
		out.Check = &checkOutput{History: path, Version: h.Version, Kind: run.Machine.Kind, Samples: run.Samples, Regressed: bad, Findings: fnd}
		if bad {
			var worse []string
			for _, f := range fnd {
				if f.Regressed {
					worse = append(worse, fmt.Sprintf("%s %.2f > %.2f", f.Variant, f.Now, f.Limit))
				}
			}
			regressed = fmt.Errorf("bench check: regression against %s (%s): %s", h.Version, path, strings.Join(worse, "; "))
		}
	}
	// Where human notes go: stdout with the table, stderr otherwise.
	notes := stdout
	if *asJSON || *benchstat {
		notes = os.Stderr
	}
	if *plot != "" {
		if err := writeFile(*plot, rep.WriteSVG); err != nil {
			return err
		}
		out.Plot = *plot
	}
	switch {
	case *asJSON:
		if err := writeJSON(stdout, out); err != nil {
			return err
		}
	case *benchstat:
		if err := rep.WriteBenchstat(stdout); err != nil {
			return err
		}
	default:
		if err := rep.WriteTable(stdout); err != nil {
			return err
		}
	}
	if *asJSON || *benchstat {
		rep.WriteCounters(notes) // the table has them
	}
	if *plot != "" {
		fmt.Fprintf(notes, "plot: %s\n", *plot)
	}
	if out.Check != nil {
		fmt.Fprintf(notes, "\ncheck: p50 ratios against the %s run of %s (%s, %d samples):\n", out.Check.Kind, out.Check.Version, out.Check.History, out.Check.Samples)
		if out.Check.Kind != rep.Machine.Kind {
			fmt.Fprintf(notes, "  (no %s run is recorded: comparing with another kind of machine)\n", rep.Machine.Kind)
		}
		for _, f := range out.Check.Findings {
			fmt.Fprintf(notes, "  %s\n", f)
		}
		if !out.Check.Regressed {
			fmt.Fprintln(notes, "bench check: no ratio worse than recorded beyond its tolerance")
		}
	}
	if *record != "" {
		path, err := bench.Record(*record, rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(notes, "recorded: %s\n", path)
	}
	return regressed
}

// checkRetries is how many times --check measures a variant again that
// looks worse than recorded before it calls it a regression.
const checkRetries = 2

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// progressBar draws "[=====>    ] 45% 3.2s" on a terminal, from the
// second second of a run on (a shorter run shows none).
type progressBar struct {
	w     io.Writer
	start time.Time
	drawn bool
	last  time.Time
}

func (p *progressBar) update(done, total int) {
	now := time.Now()
	if now.Sub(p.start) < time.Second || now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = now
	const width = 40
	n := done * width / max(total, 1)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	fmt.Fprintf(p.w, "\r[%s] %3d%% %.1fs ", bar, done*100/max(total, 1), now.Sub(p.start).Seconds())
	p.drawn = true
}

// clear erases the bar; safe on a nil bar.
func (p *progressBar) clear() {
	if p != nil && p.drawn {
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", 60))
	}
}
