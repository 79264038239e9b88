package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/internal/doctor"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// runDoctorJSON runs doctor --json with args and returns its report and
// exit status.
func runDoctorJSON(t *testing.T, args ...string) (*doctor.Report, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	st := run(append([]string{"doctor", "--json"}, args...), &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil || len(rep.Checks) == 0 {
		t.Fatalf("doctor --json %q: status %d, %v: %s%s", args, st, err, stdout.String(), stderr.String())
	}
	return &rep, st
}

func TestDoctorFixtures(t *testing.T) {
	for fx, wantStatus := range map[string]int{"softroce": 0, "bond": 0, "connectx": 1, "ipoib": 1, "nordma": 1} {
		rep, st := runDoctorJSON(t, "--sysfs", "../../rdma/testdata/"+fx)
		if st != wantStatus || rep.OK() != (wantStatus == 0) {
			t.Errorf("%s: status %d, want %d; failed %+v", fx, st, wantStatus, rep.Failed())
		}
	}
	// The table, and an address asked about.
	var stdout, stderr bytes.Buffer
	if st := run([]string{"doctor", "--sysfs", "../../rdma/testdata/connectx", "192.168.10.99"}, &stdout, &stderr); st != 1 {
		t.Errorf("status %d", st)
	}
	for _, s := range []string{"FAIL gid 192.168.10.99", "has no GID", "fix: wait", "FAIL port mlx5_1/1", "checks failed"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("doctor output lacks %q:\n%s", s, stdout.String())
		}
	}
	if st := run([]string{"doctor", "not-an-ip"}, &stdout, &stderr); st != 1 || !strings.Contains(stderr.String(), "not an IP address") {
		t.Errorf("bad address: status %d, %s", st, stderr.String())
	}
}

// In the guest, with the host's real facts, every check passes: the rxe
// ports are ACTIVE, each address has its RoCE v2 GID, memlock is unlimited,
// rdma_cm opens, root may load BPF.
func TestDoctorGuest(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("needs the SoftRoCE guest (rxe0 on eth0 with 10.77.0.1, root)")
	}
	rep, st := runDoctorJSON(t)
	for _, c := range rep.Checks {
		t.Logf("%-5v %-28s %s", c.OK, c.Name, c.Detail)
	}
	if st != 0 || !rep.OK() {
		t.Errorf("status %d; failed: %+v", st, rep.Failed())
	}
	for _, name := range []string{"devices", "port rxe0/1", "port rxe1/1", "gid 10.77.0.1", "gid 10.78.0.1", "memlock", "rdma_cm", "netns", "copy-on-fork", "bpf", "registry"} {
		if _, ok := rep.Find(name); !ok {
			t.Errorf("no check %q", name)
		}
	}
	if c, _ := rep.Find("gid 10.77.0.1"); !strings.Contains(c.Detail, "rxe0 port 1, GID index 1") {
		t.Errorf("gid 10.77.0.1: %s", c.Detail)
	}
}
