package bench

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// A short run of every variant on this machine (bind-crowded apart, see
// TestBindCrowded): those it can run give
// samples, the others a reason; nothing is left behind (fds, the run's
// directory). On a host without RDMA the Bind variants say WSAENETDOWN;
// inside the SoftRoCE guest every variant must run.
func TestRunHere(t *testing.T) {
	// A first run opens what stays open for the process's life: librdmacm's
	// device contexts, the netpoller.
	if _, err := Run(context.Background(), Config{Samples: 1, Warmup: -1, Short: true}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFDs(t)
	parent := t.TempDir()
	defer func(old string) { runDirParent = old }(runDirParent)
	runDirParent = parent
	rep, err := Run(context.Background(), Config{Samples: 20, Warmup: 2, Short: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range rep.Results {
		if res.Summary.N != 20 || res.Summary.P50 <= 0 {
			t.Errorf("%s: %+v", res.Name, res.Summary)
		}
		if res.Floor != "" && (res.Ratio == nil || res.Ratio.P50 <= 0 || res.FloorSeries.Summary.N != 20) {
			t.Errorf("%s: floor %+v ratio %+v", res.Name, res.FloorSeries, res.Ratio)
		}
		if res.Name == "phases" && len(res.Phases) != 5 {
			t.Errorf("phases: %d series", len(res.Phases))
		}
	}
	if rep.Result("kernel-bind") == nil || rep.Result("claim") == nil {
		t.Fatalf("kernel-bind and claim run everywhere: %+v", rep.Unavailable)
	}
	_, rdmaErr := os.Stat("/dev/infiniband/rdma_cm")
	for _, u := range rep.Unavailable {
		t.Logf("unavailable: %s: %s", u.Name, u.Reason)
		if testutil.InGuest() {
			t.Errorf("in the guest every variant runs; %s: %s", u.Name, u.Reason)
		}
		if u.Name == "bind" && rdmaErr != nil && !strings.Contains(u.Reason, "WSAENETDOWN") {
			t.Errorf("bind without RDMA: %q, want WSAENETDOWN", u.Reason)
		}
	}
	if unix.Geteuid() == 0 && rep.Result("switch") == nil {
		t.Errorf("as root the switch variant runs: %+v", rep.Unavailable)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left in the run's directory: %v", left)
	}
	if rep.Machine.Kind == "" || rep.Machine.CPUs == 0 || rep.Version == "" {
		t.Errorf("machine %+v version %q", rep.Machine, rep.Version)
	}
}

// An address that is not this host's is the spec's WSAEADDRNOTAVAIL.
func TestRunForeignAddr(t *testing.T) {
	_, err := Run(context.Background(), Config{Addr: mustAddr("192.0.2.77"), Variants: []string{"kernel-bind"}})
	if !errors.Is(err, unix.EADDRNOTAVAIL) || !strings.Contains(err.Error(), "WSAEADDRNOTAVAIL") {
		t.Fatalf("foreign address: %v", err)
	}
}

// bind-crowded, with a crowd of 200 sockets instead of 10,000 (minutes in
// the guest): its samples, its floor, its phases, and nothing left behind
// (the crowd released, the run's directory empty).
func TestBindCrowded(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if _, err := Run(context.Background(), Config{Samples: 1, Warmup: -1, Variants: []string{"bind"}}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFDs(t)
	parent := t.TempDir()
	defer func(old string) { runDirParent = old }(runDirParent)
	runDirParent = parent
	rep, err := Run(context.Background(), Config{Samples: 10, Warmup: 1, Variants: []string{"bind-crowded"}, Crowd: 200})
	if err != nil {
		t.Fatal(err)
	}
	res := rep.Result("bind-crowded")
	if res == nil {
		t.Fatalf("bind-crowded did not run: %+v", rep.Unavailable)
	}
	if rep.Crowd != 200 {
		t.Errorf("the report says a crowd of %d, want 200", rep.Crowd)
	}
	if res.Summary.N != 10 || res.Ratio == nil || res.Ratio.P50 <= 0 || len(res.Phases) != 5 {
		t.Errorf("bind-crowded: %+v, ratio %+v, %d phase series", res.Summary, res.Ratio, len(res.Phases))
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("left in the run's directory: %v", left)
	}
}

// Count repeats the run: each repetition's distribution is kept (Runs),
// the summary is over all their samples, and the report says how many.
func TestRunRepeats(t *testing.T) {
	parent := t.TempDir()
	defer func(old string) { runDirParent = old }(runDirParent)
	runDirParent = parent
	rep, err := Run(context.Background(), Config{Samples: 5, Warmup: -1, Count: 3, Variants: []string{"kernel-bind", "claim"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count != 3 {
		t.Errorf("report count %d, want 3", rep.Count)
	}
	for _, name := range []string{"kernel-bind", "claim"} {
		res := rep.Result(name)
		if res == nil {
			t.Fatalf("%s did not run: %+v", name, rep.Unavailable)
		}
		if len(res.Runs) != 3 || res.Summary.N != 15 {
			t.Errorf("%s: %d runs, %d samples in all; want 3 and 15", name, len(res.Runs), res.Summary.N)
		}
		for i, r := range res.Runs {
			if r.N != 5 {
				t.Errorf("%s run %d: %d samples, want 5", name, i, r.N)
			}
		}
	}
}
