package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/internal/doctor"
	"github.com/rdmabind/rdmabind/internal/testutil"
)

// In the guest, from a network namespace of its own whose eth0 (one end of
// a veth pair, with 10.99.0.2: the guest's kernel has veth, not dummy) is not the eth0 the rxe GID tables name, as in a
// container under the shared RDMA namespace mode: the doctor, on the real
// facts of that namespace, says the address has no GID and why.
func TestDoctorGuestNetns(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("needs the SoftRoCE guest (root, rxe0 on eth0)")
	}
	ns := testutil.NewNetNS(t)
	// Do runs on another goroutine: no t.Fatal in there.
	var stdout, stderr bytes.Buffer
	var st int
	err := ns.Do(func() error {
		for _, args := range [][]string{
			{"link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
			{"addr", "add", "10.99.0.2/24", "dev", "eth0"},
			{"link", "set", "eth0p", "up"},
			{"link", "set", "eth0", "up"},
			{"link", "set", "lo", "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %q: %w: %s", args, err, out)
			}
		}
		st = run([]string{"doctor", "--json"}, &stdout, &stderr)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rep doctor.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("doctor --json in the namespace: status %d, %v: %s%s", st, err, stdout.String(), stderr.String())
	}
	for _, c := range rep.Checks {
		t.Logf("%-5v %-28s %s", c.OK, c.Name, c.Detail)
	}
	if st != 1 {
		t.Errorf("status %d, want 1", st)
	}
	c, ok := rep.Find("gid 10.99.0.2")
	if !ok || c.OK {
		t.Fatalf("gid 10.99.0.2: %+v", c)
	}
	for _, s := range []string{"10.99.0.2 on eth0 has no GID", "10.77.0.1", "not the host's", "another namespace's", "shared"} {
		if !strings.Contains(c.Detail, s) {
			t.Errorf("gid 10.99.0.2: detail lacks %q: %s", s, c.Detail)
		}
	}
	if n, _ := rep.Find("netns"); n.OK || !strings.Contains(n.Detail, "not the host's") {
		t.Errorf("netns: %+v", n)
	}
}
