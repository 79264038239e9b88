package bench

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"
)

func TestSummarize(t *testing.T) {
	ns := make([]int64, 1000)
	for i := range ns {
		ns[i] = int64(1000 - i) // 1000..1, unsorted
	}
	s := Summarize(ns)
	want := Summary{N: 1000, Min: 1, Mean: 500.5, P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	if s != want {
		t.Fatalf("Summarize = %+v, want %+v", s, want)
	}
	if ns[0] != 1000 {
		t.Fatal("Summarize sorted its argument")
	}
	if one := Summarize([]int64{7}); one.P50 != 7 || one.P999 != 7 || one.Max != 7 {
		t.Fatalf("one sample: %+v", one)
	}
	if (Summarize(nil) != Summary{}) {
		t.Fatal("no samples: want the zero Summary")
	}
}

func TestFormatNS(t *testing.T) {
	for ns, want := range map[int64]string{812: "812ns", 4123: "4.12µs", 12345: "12.3µs", 123456: "123µs", 1234567: "1.23ms", 2e9: "2.00s"} {
		if got := FormatNS(ns); got != want {
			t.Errorf("FormatNS(%d) = %q, want %q", ns, got, want)
		}
	}
}

// report builds a Report with a bind result of the given p50 ratio.
func report(kind string, want map[string]float64) *Report {
	r := &Report{Machine: Machine{Kind: kind}, Version: "v1", Date: time.Now().UTC(), Samples: 100}
	for _, v := range variants {
		ratio, ok := want[v.Name]
		if !ok {
			continue
		}
		f := make([]int64, 100)
		s := make([]int64, 100)
		for i := range f {
			f[i] = 1000 + int64(i%2) // ratios exact at p50
			s[i] = int64(math.Round(1000*ratio)) + int64(i%2)*10
		}
		res := Result{Variant: v, Summary: Summarize(s), Samples: s,
			FloorSeries: &Series{Name: v.Floor, Summary: Summarize(f), Samples: f}}
		res.Ratio = ratios(res.Summary, res.FloorSeries.Summary)
		r.Results = append(r.Results, res)
	}
	return r
}

// The check: an unchanged ratio passes, one worse than the tolerance fails
// (measured or injected), a better one passes with a note, a recorded
// variant now unavailable fails, one not run is skipped.
func TestCheck(t *testing.T) {
	rec := report("softroce-guest", map[string]float64{"bind": 1.25, "claim": 3.0, "listen": 50})
	run := rec.Summarize()

	fnd, bad := Check(report("softroce-guest", map[string]float64{"bind": 1.25, "claim": 3.0, "listen": 50}), &run, nil)
	if bad || len(fnd) != 3 {
		t.Fatalf("unchanged ratios: regressed %v, %v", bad, fnd)
	}
	// Within the tolerance.
	if _, bad := Check(report("softroce-guest", map[string]float64{"bind": 1.25 * 1.2, "claim": 3.0, "listen": 70}), &run, nil); bad {
		t.Fatal("bind +20%, listen +40%: within the tolerances, but regressed")
	}
	// Worse beyond it.
	fnd, bad = Check(report("softroce-guest", map[string]float64{"bind": 1.25 * 1.5, "claim": 3.0, "listen": 50}), &run, nil)
	if !bad || len(Regressed(fnd)) != 1 || Regressed(fnd)[0] != "bind" {
		t.Fatalf("bind ×1.5: regressed %v, %v", bad, fnd)
	}
	if s := fnd[0].String(); !strings.Contains(s, "WORSE") || !strings.Contains(s, "1.88") || !strings.Contains(s, "limit 1.56") {
		t.Fatalf("finding reads %q", s)
	}
	// Injected.
	fnd, bad = Check(report("softroce-guest", map[string]float64{"bind": 1.25, "claim": 3.0, "listen": 50}), &run, map[string]float64{"claim": 1.5})
	if !bad || Regressed(fnd)[0] != "claim" || fnd[1].Injected != 1.5 || !strings.Contains(fnd[1].String(), "on purpose") {
		t.Fatalf("claim injected ×1.5: %v %v", bad, fnd)
	}
	// Better: passes, with a note.
	fnd, bad = Check(report("softroce-guest", map[string]float64{"bind": 0.9, "claim": 3.0, "listen": 50}), &run, nil)
	if bad || !strings.Contains(fnd[0].Note, "better") {
		t.Fatalf("bind better: %v %v", bad, fnd)
	}
	// Unavailable now: a regression. Not run: skipped.
	now := report("softroce-guest", map[string]float64{"claim": 3.0})
	now.Unavailable = []Unavailable{{Name: "bind", Reason: "WSAENETDOWN"}}
	fnd, bad = Check(now, &run, nil)
	if !bad || len(fnd) != 2 || fnd[0].Variant != "bind" || !strings.Contains(fnd[0].String(), "WSAENETDOWN") {
		t.Fatalf("bind unavailable, listen not run: %v %v", bad, fnd)
	}
}

func TestKeepBetter(t *testing.T) {
	r := report("host", map[string]float64{"bind": 2, "claim": 3})
	r.KeepBetter(report("host", map[string]float64{"bind": 1.5, "claim": 4}))
	if got := r.Ratios(); got["bind"] != 1.5 || got["claim"] != 3 {
		t.Fatalf("KeepBetter: %v, want bind 1.5 (better), claim 3 (kept)", got)
	}
}

func TestParseInject(t *testing.T) {
	m, err := ParseInject("bind=1.5, claim=2")
	if err != nil || m["bind"] != 1.5 || m["claim"] != 2 {
		t.Fatal(m, err)
	}
	for _, bad := range []string{"bind", "bind=x", "bind=0", "nope=2"} {
		if _, err := ParseInject(bad); err == nil {
			t.Errorf("ParseInject(%q): no error", bad)
		}
	}
	if m, err := ParseInject(""); err != nil || len(m) != 0 {
		t.Fatal(m, err)
	}
}

// Record keeps one run per machine kind in <version>.json; NewestHistory
// finds the newest run of a kind, or of any kind when there is none.
func TestRecordNewest(t *testing.T) {
	dir := t.TempDir()
	old := report("softroce-guest", map[string]float64{"bind": 1.3})
	old.Version, old.Date = "v0.1.0", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	newer := report("softroce-guest", map[string]float64{"bind": 1.2})
	newer.Version, newer.Date = "v0.2.0+dirty", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	host := report("host", map[string]float64{"claim": 2})
	host.Version, host.Date = "v0.2.0+dirty", time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)
	for _, r := range []*Report{old, newer, host, newer} {
		if _, err := Record(dir, r); err != nil {
			t.Fatal(err)
		}
	}
	h, err := ReadHistory(filepath.Join(dir, "v0.2.0_dirty.json"))
	if err != nil || len(h.Runs) != 2 {
		t.Fatalf("v0.2.0: %+v %v (want the guest and the host run, once each)", h, err)
	}
	path, h, run, err := NewestHistory(dir, "softroce-guest")
	if err != nil || filepath.Base(path) != "v0.2.0_dirty.json" || h.Version != "v0.2.0+dirty" || run.Results[0].Ratio.P50 != 1.2 {
		t.Fatalf("newest guest run: %s %+v %v", path, run, err)
	}
	if _, _, run, err := NewestHistory(dir, "rdma-host"); err != nil || run.Machine.Kind != "host" {
		t.Fatalf("no rdma-host run: want the newest of any kind (host), got %+v %v", run, err)
	}
	if _, _, _, err := NewestHistory(t.TempDir(), "host"); !errors.Is(err, ErrNoHistory) {
		t.Fatalf("empty dir: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() > 16<<10 {
		t.Fatalf("history file: %v, %v (want small)", fi.Size(), err)
	}
}

// The output formats of a report: the table names every variant, the
// benchstat lines have the Go benchmark shape, the SVG is well-formed XML
// with a line and a legend entry per series.
func TestOutputs(t *testing.T) {
	r := report("host", map[string]float64{"bind": 1.2, "claim": 2.5})
	r.Unavailable = []Unavailable{{Name: "listen", Reason: "why not"}}
	var tab bytes.Buffer
	if err := r.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"bind", "raw-bind", "claim", "ofd-lock", "1.20", "2.50", "listen", "why not"} {
		if !strings.Contains(tab.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tab.String())
		}
	}
	// Three repetitions of the run, the variant 1.1 and 1.3 times slower
	// in the second and third, the floor 1.05 times slower in the third:
	// benchstat lines per repetition, each with its own ratio.
	for i := range r.Results {
		for _, k := range []float64{1.1, 1.3} {
			fk := map[float64]float64{1.1: 1, 1.3: 1.05}[k]
			again := r.Results[i]
			again.Samples = make([]int64, len(r.Results[i].Samples[:100]))
			for j, v := range r.Results[i].Samples[:100] {
				again.Samples[j] = int64(math.Round(float64(v) * k))
			}
			again.Summary = Summarize(again.Samples)
			again.Runs = nil
			fs := *again.FloorSeries
			fs.Samples = make([]int64, 100)
			for j, v := range r.Results[i].FloorSeries.Samples[:100] {
				fs.Samples[j] = int64(math.Round(float64(v) * fk))
			}
			fs.Summary = Summarize(fs.Samples)
			fs.Runs = nil
			again.FloorSeries = &fs
			r.Results[i].add(again)
		}
	}
	wantRatios := []float64{1.2, 1.2 * 1.1, 1.2 * 1.3 / 1.05}
	var bindRatios []float64
	var bs bytes.Buffer
	if err := r.WriteBenchstat(&bs); err != nil {
		t.Fatal(err)
	}
	rd := benchfmt.NewReader(bytes.NewReader(bs.Bytes()), "bench.txt")
	n := 0
	for rd.Scan() {
		switch rec := rd.Result().(type) {
		case *benchfmt.SyntaxError:
			t.Errorf("benchfmt rejects a line: %v", rec)
		case *benchfmt.Result:
			n++
			name := rec.Name.String()
			if v, ok := rec.Value("sec/op"); !ok || v <= 0 {
				t.Errorf("%s: no sec/op", name)
			}
			if _, ok := rec.Value("p99-sec"); !ok { // benchfmt tidies p99-ns
				t.Errorf("%s: no p99-ns", name)
			}
			ratio, ok := rec.Value("floor-ratio")
			if strings.Contains(name, "floor=") == ok {
				t.Errorf("%s: floor-ratio %v", name, ok)
			}
			if name == "Bind/bind-0" {
				bindRatios = append(bindRatios, ratio)
			}
			if rec.GetConfig("machine") != "host" {
				t.Errorf("%s: machine %q", name, rec.GetConfig("machine"))
			}
		}
	}
	if n != 4*3 {
		t.Errorf("%d benchstat results, want %d (4 series, 3 repetitions)", n, 4*3)
	}
	near := func(got []float64) bool {
		if len(got) != len(wantRatios) {
			return false
		}
		for i := range got {
			if math.Abs(got[i]-wantRatios[i]) > 0.02 {
				return false
			}
		}
		return true
	}
	if !near(bindRatios) {
		t.Errorf("benchstat floor-ratio of Bind/bind-0 by repetition %v, want %v", bindRatios, wantRatios)
	}
	if got := r.Result("bind").RunRatios(); !near(got) {
		t.Errorf("RunRatios %v, want %v", got, wantRatios)
	}
	if s := r.Result("bind").Summary; s.N != 300 {
		t.Errorf("after three repetitions, %d samples", s.N)
	}
	var svg bytes.Buffer
	if err := r.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&svg)
	paths := 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "path" {
			paths++
		}
	}
	if paths != 4 {
		t.Errorf("%d paths in the SVG, want 4 (two variants, two floors)", paths)
	}
}

// With repetitions, the check shows the confidence interval of their
// ratios beside its verdict (benchmath), and the verdict stays the
// tolerance's.
func TestCheckRepetitions(t *testing.T) {
	rec := report("host", map[string]float64{"bind": 1.25})
	run := rec.Summarize()
	now := report("host", map[string]float64{"bind": 1.25})
	res := &now.Results[0]
	for _, ratio := range []float64{1.2, 1.3, 1.22, 1.28, 1.24} {
		o := report("host", map[string]float64{"bind": ratio}).Results[0]
		res.add(o)
	}
	if got, want := res.RunRatios(), []float64{1.25, 1.2, 1.3, 1.22, 1.28, 1.24}; len(got) != len(want) || func() bool {
		for i := range got {
			if math.Abs(got[i]-want[i]) > 0.01 {
				return true
			}
		}
		return false
	}() {
		t.Fatalf("RunRatios %v, want %v", got, want)
	}
	fnd, bad := Check(now, &run, nil)
	// The interval spans the repetitions' spread: neither a point nor
	// wider than their range.
	if bad || len(fnd) != 1 || fnd[0].Runs != 6 || fnd[0].Lo < 1.19 || fnd[0].Hi > 1.31 || !(fnd[0].Lo < 1.25 && 1.25 < fnd[0].Hi) {
		t.Fatalf("findings %+v, regressed %v", fnd, bad)
	}
	if s := fnd[0].String(); !strings.Contains(s, "6 repetitions, 95% CI 1.") {
		t.Errorf("finding %q", s)
	}
	if hr := now.Summarize(); hr.Count != 0 {
		t.Errorf("history count %d for a report without Count", hr.Count)
	}
}

func TestUnknownVariant(t *testing.T) {
	if _, err := Run(context.Background(), Config{Variants: []string{"bind", "nope"}}); !errors.Is(err, ErrUnknownVariant) {
		t.Fatalf("Run with an unknown variant: %v", err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
