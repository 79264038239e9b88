package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/perf/benchmath"

	"github.com/rdmabind/rdmabind/rdma"
)

// History is what bench/history/<version>.json keeps of a version: one run
// per machine kind, summaries and ratios only (no samples).
type History struct {
	Version string       `json:"version"`
	Commit  string       `json:"commit,omitempty"`
	Runs    []HistoryRun `json:"runs"`
}

// HistoryRun is the summary of one Report.
type HistoryRun struct {
	Machine     Machine         `json:"machine"`
	Date        time.Time       `json:"date"`
	Addr        string          `json:"addr"`
	Samples     int             `json:"samples"`
	Count       int             `json:"count,omitempty"` // repetitions, when more than 1
	Short       bool            `json:"short,omitempty"`
	Results     []HistoryResult `json:"results"`
	Unavailable []Unavailable   `json:"unavailable,omitempty"`
	// Counters are the RDMA ports' counter deltas over the run.
	Counters []rdma.PortCounters `json:"counters,omitempty"`
}

// HistoryResult is a variant's summary, its floor's and their ratios.
type HistoryResult struct {
	Name   string             `json:"name"`
	Sum    Summary            `json:"summary"`
	Floor  string             `json:"floor,omitempty"`
	FSum   *Summary           `json:"floor_summary,omitempty"`
	Ratio  *Ratios            `json:"ratio,omitempty"`
	Phases map[string]Summary `json:"phases,omitempty"`
}

// Summarize returns the HistoryRun of r.
func (r *Report) Summarize() HistoryRun {
	run := HistoryRun{Machine: r.Machine, Date: r.Date, Addr: r.Addr, Samples: r.Samples, Short: r.Short,
		Unavailable: r.Unavailable, Counters: r.Counters}
	if r.Count > 1 {
		run.Count = r.Count
	}
	for _, res := range r.Results {
		h := HistoryResult{Name: res.Name, Sum: res.Summary, Floor: res.Floor, Ratio: res.Ratio}
		if res.FloorSeries != nil {
			s := res.FloorSeries.Summary
			h.FSum = &s
		}
		if len(res.Phases) > 0 {
			h.Phases = map[string]Summary{}
			for _, p := range res.Phases {
				h.Phases[p.Name] = p.Summary
			}
		}
		run.Results = append(run.Results, h)
	}
	return run
}

// Run returns the run of the given machine kind, or nil.
func (h *History) Run(kind string) *HistoryRun {
	for i := range h.Runs {
		if h.Runs[i].Machine.Kind == kind {
			return &h.Runs[i]
		}
	}
	return nil
}

// ReadHistory reads one history file.
func ReadHistory(path string) (*History, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h History
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("bench: history %s: %w", path, err)
	}
	return &h, nil
}

// ErrNoHistory is returned by NewestHistory when no file of the directory
// has a run of the machine kind.
var ErrNoHistory = errors.New("no recorded run")

// NewestHistory returns the history file of dir (*.json) whose run of the
// given machine kind is the newest, and that run. When no file has a run of
// that kind it returns the newest run of any kind (ratios are meant to
// travel between machines; the caller says so).
//
// Errors: ErrNoHistory (wrapped) when dir has no run at all; a file that
// cannot be read or parsed.
func NewestHistory(dir, kind string) (path string, h *History, run *HistoryRun, err error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return "", nil, nil, err
	}
	var anyPath string
	var anyH *History
	var anyRun *HistoryRun
	for _, f := range files {
		hf, err := ReadHistory(f)
		if err != nil {
			return "", nil, nil, err
		}
		for i := range hf.Runs {
			r := &hf.Runs[i]
			if r.Machine.Kind == kind && (run == nil || r.Date.After(run.Date)) {
				path, h, run = f, hf, r
			}
			if anyRun == nil || r.Date.After(anyRun.Date) {
				anyPath, anyH, anyRun = f, hf, r
			}
		}
	}
	if run != nil {
		return path, h, run, nil
	}
	if anyRun != nil {
		return anyPath, anyH, anyRun, nil
	}
	return "", nil, nil, fmt.Errorf("bench: %w in %s", ErrNoHistory, dir)
}

// Record writes r's summary into dir/<version>.json, replacing the run of
// the same machine kind and keeping the others, and returns the path.
func Record(dir string, r *Report) (string, error) {
	name := strings.NewReplacer("/", "_", "+", "_").Replace(r.Version) + ".json"
	path := filepath.Join(dir, name)
	h := &History{Version: r.Version, Commit: r.Commit}
	if old, err := ReadHistory(path); err == nil {
		h.Runs = old.Runs
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	run := r.Summarize()
	replaced := false
	for i := range h.Runs {
		if h.Runs[i].Machine.Kind == run.Machine.Kind {
			h.Runs[i], replaced = run, true
		}
	}
	if !replaced {
		h.Runs = append(h.Runs, run)
	}
	sort.Slice(h.Runs, func(i, j int) bool { return h.Runs[i].Machine.Kind < h.Runs[j].Machine.Kind })
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Tolerance is how much worse than recorded a p50 ratio may be before Check
// calls it a regression, per variant; DefaultTolerance for the others.
// docs/bench.md gives the run-to-run spread these come from.
var Tolerance = map[string]float64{
	// Three quarters of a listen is loading and verifying the steering
	// program: CPU-bound and long, it is the one a busy machine hits hardest.
	"listen": 0.50,
}

// DefaultTolerance: see Tolerance. On a quiet SoftRoCE guest the p50 ratios
// of bind, claim and switch varied by at most 4%, 8% and 9% between short
// runs; 25% leaves room for a machine shared with other jobs.
const DefaultTolerance = 0.25

// ToleranceOf returns the tolerance of a variant.
func ToleranceOf(name string) float64 {
	if t, ok := Tolerance[name]; ok {
		return t
	}
	return DefaultTolerance
}

// Finding is Check's verdict on one variant.
type Finding struct {
	Variant   string  `json:"variant"`
	Recorded  float64 `json:"recorded"` // the recorded p50 ratio
	Now       float64 `json:"now"`      // this run's, with any injection applied
	Injected  float64 `json:"injected,omitempty"`
	Tolerance float64 `json:"tolerance"`
	Limit     float64 `json:"limit"` // Recorded × (1 + Tolerance)
	Regressed bool    `json:"regressed"`
	Note      string  `json:"note,omitempty"`
	// Runs, Lo and Hi describe the repetitions of a run made with
	// Config.Count of 2 or more: how many, and the 95% confidence
	// interval of their median p50 ratio (benchmath, assuming nothing of
	// the distribution), shown beside the verdict. The verdict itself is
	// the tolerance's (docs/bench.md says why).
	Runs int     `json:"runs,omitempty"`
	Lo   float64 `json:"runs_lo,omitempty"`
	Hi   float64 `json:"runs_hi,omitempty"`
}

func (f Finding) String() string {
	if f.Note != "" && f.Now == 0 {
		return fmt.Sprintf("%-8s %-10s %s", verdict(f), f.Variant, f.Note)
	}
	s := fmt.Sprintf("%-8s %-10s p50 ratio %.2f, recorded %.2f, limit %.2f (+%.0f%%)", verdict(f), f.Variant, f.Now, f.Recorded, f.Limit, f.Tolerance*100)
	if f.Injected != 0 {
		s += fmt.Sprintf(" [worsened on purpose ×%g]", f.Injected)
	}
	if f.Runs >= 2 {
		s += fmt.Sprintf("; %d repetitions, 95%% CI %.2f–%.2f", f.Runs, f.Lo, f.Hi)
	}
	if f.Note != "" {
		s += "; " + f.Note
	}
	return s
}

func verdict(f Finding) string {
	if f.Regressed {
		return "WORSE"
	}
	return "ok"
}

// Check compares the p50 ratios of now with those of the recorded run:
// a ratio above recorded × (1 + ToleranceOf(variant)) is a regression,
// and so is a variant the record has and now lists as unavailable. A
// variant now did not run at all is skipped. inject multiplies this run's
// ratio of the named variants first (to test the check). Only ratios are
// compared: absolute times differ between machines.
func Check(now *Report, rec *HistoryRun, inject map[string]float64) (findings []Finding, regressed bool) {
	for _, h := range rec.Results {
		if h.Ratio == nil {
			continue
		}
		f := Finding{Variant: h.Name, Recorded: h.Ratio.P50, Tolerance: ToleranceOf(h.Name)}
		f.Limit = f.Recorded * (1 + f.Tolerance)
		res := now.Result(h.Name)
		if res == nil || res.Ratio == nil {
			for _, u := range now.Unavailable {
				if u.Name == h.Name {
					f.Regressed, f.Note = true, "recorded, but not measurable now: "+u.Reason
				}
			}
			if !f.Regressed {
				continue
			}
		} else {
			f.Now = res.Ratio.P50
			if m, ok := inject[h.Name]; ok {
				f.Injected = m
				f.Now *= m
			}
			f.Regressed = f.Now > f.Limit
			if rr := res.RunRatios(); len(rr) >= 2 {
				sum := benchmath.AssumeNothing.Summary(benchmath.NewSample(rr, &benchmath.DefaultThresholds), 0.95)
				f.Runs, f.Lo, f.Hi = len(rr), sum.Lo, sum.Hi
			}
			if f.Now < f.Recorded/(1+f.Tolerance) {
				f.Note = "better than recorded beyond the tolerance: record a new history"
			}
		}
		regressed = regressed || f.Regressed
		findings = append(findings, f)
	}
	return findings, regressed
}

// KeepBetter replaces each result of r by other's result of the same
// variant where other's p50 ratio is lower: the best of repeated runs,
// which a busy machine can only make worse, never better.
func (r *Report) KeepBetter(other *Report) {
	for _, o := range other.Results {
		cur := r.Result(o.Name)
		if cur != nil && o.Ratio != nil && (cur.Ratio == nil || o.Ratio.P50 < cur.Ratio.P50) {
			*cur = o
		}
	}
}

// Regressed returns the names of the variants of findings that regressed.
func Regressed(findings []Finding) []string {
	var out []string
	for _, f := range findings {
		if f.Regressed {
			out = append(out, f.Variant)
		}
	}
	return out
}

// ParseInject parses "bind=1.5,claim=2": variant names and factors > 0.
func ParseInject(s string) (map[string]float64, error) {
	m := map[string]float64{}
	if strings.TrimSpace(s) == "" {
		return m, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		f, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || f <= 0 {
			return nil, fmt.Errorf("bench: inject %q: want VARIANT=FACTOR (bind=1.5)", kv)
		}
		if _, err := selectVariants([]string{k}, false); err != nil {
			return nil, err
		}
		m[k] = f
	}
	return m, nil
}
