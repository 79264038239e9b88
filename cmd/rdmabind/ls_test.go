package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/bindcore/registry"
)

// ls shows the roles of every record and, per address and port where a
// socket listens, who receives the connection requests, the standby, how
// many wait in line and how many are bound only.
func TestLsListeners(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(registry.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ap := netip.MustParseAddrPort("10.77.0.1:6001")
	for _, role := range []registry.Role{registry.RoleBound, registry.RoleDesignated, registry.RoleStandby, registry.RoleListening, registry.RoleListening, registry.RoleBound} {
		if _, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: ap.Port(), Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Claim(registry.ClaimRequest{Addr: ap.Addr(), Port: 6002}); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if st := run([]string{"ls", "--registry", dir, "--json"}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	var out lsOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Records) != 7 || len(out.Listeners) != 1 {
		t.Fatalf("%d records, listeners %+v", len(out.Records), out.Listeners)
	}
	p := out.Listeners[0]
	if p.Addr != "10.77.0.1" || p.Port != 6001 || p.Designated == nil || p.Standby == nil || len(p.Listening) != 2 || p.Bound != 2 {
		t.Fatalf("listeners %+v", p)
	}
	stdout.Reset()
	if st := run([]string{"ls", "--registry", dir}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"designated", "standby", "listening", "bound", "LISTENING ON", "10.77.0.1:6001"} {
		if !strings.Contains(text, want) {
			t.Errorf("ls output lacks %q:\n%s", want, text)
		}
	}
	t.Logf("\n%s", text)
}
