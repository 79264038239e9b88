package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/bench"
)

// bench --json: the report, with the machine, the variants that ran (and
// those that could not, with a reason), the ratios, the plot's path; the
// SVG is written.
func TestBenchJSON(t *testing.T) {
	plot := filepath.Join(t.TempDir(), "cdf.svg")
	var stdout, stderr bytes.Buffer
	st := run([]string{"bench", "--json", "--samples", "30", "--warmup", "3", "--variants", "kernel-bind,claim,bind", "--plot", plot}, &stdout, &stderr)
	if st != 0 {
		t.Fatalf("status %d, stderr %s", st, stderr.String())
	}
	var out benchOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout.String())
	}
	if out.Machine.Kind == "" || out.Samples != 30 || out.Plot != plot {
		t.Fatalf("report: %+v", out.Report)
	}
	claim := out.Result("claim")
	if claim == nil || claim.Ratio == nil || claim.Ratio.P50 <= 0 || claim.Summary.N != 30 {
		t.Fatalf("claim: %+v", claim)
	}
	if out.Result("bind") == nil && (len(out.Unavailable) != 1 || out.Unavailable[0].Name != "bind") {
		t.Fatalf("bind neither measured nor unavailable: %+v", out.Unavailable)
	}
	if b, err := os.ReadFile(plot); err != nil || !bytes.HasPrefix(b, []byte("<svg")) {
		t.Fatalf("plot: %v", err)
	}
}

func TestBenchTableAndBenchstat(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := run([]string{"bench", "--samples", "20", "--variants", "kernel-bind"}, &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "kernel-bind") || !strings.Contains(stdout.String(), "p99.9") {
		t.Fatalf("table: status %d\n%s%s", st, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if st := run([]string{"bench", "--benchstat", "--samples", "20", "--variants", "kernel-bind"}, &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "BenchmarkBind/kernel-bind-") {
		t.Fatalf("benchstat: status %d\n%s", st, stdout.String())
	}
	// --benchstat repeats the run BenchstatCount times, a line each.
	if n := strings.Count(stdout.String(), "BenchmarkBind/kernel-bind-"); n != bench.BenchstatCount {
		t.Errorf("%d benchstat lines, want %d:\n%s", n, bench.BenchstatCount, stdout.String())
	}
	stdout.Reset()
	if st := run([]string{"bench", "--benchstat", "--count", "2", "--samples", "20", "--variants", "kernel-bind"}, &stdout, &stderr); st != 0 || strings.Count(stdout.String(), "BenchmarkBind/kernel-bind-") != 2 {
		t.Fatalf("--count 2: status %d\n%s", st, stdout.String())
	}
	stdout.Reset()
	if st := run([]string{"bench", "--json", "--count", "3", "--samples", "20", "--variants", "kernel-bind"}, &stdout, &stderr); st != 0 {
		t.Fatalf("--json --count 3: status %d\n%s", st, stderr.String())
	}
	var out bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || out.Count != 3 || len(out.Results) != 1 || len(out.Results[0].Runs) != 3 || out.Results[0].Summary.N != 60 {
		t.Fatalf("--json --count 3: %v %+v", err, out)
	}
}

// Errors: an address not of this host is a spec error (exit 2), an unknown
// variant or a PNG plot are not (exit 1).
func TestBenchErrors(t *testing.T) {
	for _, c := range []struct {
		args   []string
		status int
		msg    string
	}{
		{[]string{"--addr", "192.0.2.77", "--variants", "kernel-bind"}, 2, "WSAEADDRNOTAVAIL"},
		{[]string{"--variants", "nope"}, 1, "unknown variant"},
		{[]string{"--plot", "x.png"}, 1, "only .svg"},
		{[]string{"--json", "--benchstat"}, 1, "exclude"},
		{[]string{"--inject", "bind"}, 1, "VARIANT=FACTOR"},
		{[]string{"extra"}, 1, "want 0 argument"},
	} {
		var stdout, stderr bytes.Buffer
		st := run(append([]string{"bench"}, c.args...), &stdout, &stderr)
		if st != c.status || !strings.Contains(stderr.String(), c.msg) {
			t.Errorf("bench %v: status %d, stderr %q; want %d and %q", c.args, st, stderr.String(), c.status, c.msg)
		}
	}
}

// --check against a recorded run: passes as measured, fails (exit 1, the
// regression named) when the ratio is worsened on purpose with --inject.
func TestBenchCheck(t *testing.T) {
	dir := t.TempDir()
	args := []string{"bench", "--samples", "200", "--warmup", "20", "--variants", "claim"}
	var stdout, stderr bytes.Buffer
	if st := run(append(args, "--record", dir), &stdout, &stderr); st != 0 {
		t.Fatalf("record: status %d: %s", st, stderr.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("recorded files: %v", files)
	}
	stdout.Reset()
	stderr.Reset()
	// Unchanged (the same machine a moment later): passes. The claim's
	// ratio on a shared machine can move, and the check measures again
	// before it calls anything a regression.
	if st := run(append(args, "--check", dir), &stdout, &stderr); st != 0 || !strings.Contains(stdout.String(), "no ratio worse") {
		t.Fatalf("check as measured: status %d\n%s%s", st, stdout.String(), stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	st := run(append(args, "--check", dir, "--inject", "claim=3"), &stdout, &stderr)
	if st != 1 || !strings.Contains(stderr.String(), "bench check: regression") || !strings.Contains(stdout.String(), "WORSE") {
		t.Fatalf("check with claim ×3: status %d\n%s%s", st, stdout.String(), stderr.String())
	}
	h, err := bench.ReadHistory(files[0])
	if err != nil || len(h.Runs) != 1 {
		t.Fatal(h, err)
	}
}
