package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

// On a host without RDMA, resolve answers WSAENETDOWN with exit 2, not a
// crash or an empty answer; with RDMA (the guest), loopback is not an RDMA
// address (WSAEADDRNOTAVAIL).
func TestResolveLoopbackJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	st := run([]string{"resolve", "127.0.0.1:5000", "--json"}, &stdout, &stderr)
	var got errorJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q is not a JSON error: %v", stdout.String(), err)
	}
	want := "WSAENETDOWN"
	if _, err := os.Stat("/dev/infiniband/rdma_cm"); err == nil {
		want = "WSAEADDRNOTAVAIL"
	}
	if st != 2 || got.Error != want || got.Message == "" {
		t.Fatalf("status %d, %+v: want 2 and %s", st, got, want)
	}
}

func TestResolveBadArgument(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := run([]string{"resolve", "10.0.0.1"}, &stdout, &stderr); st != 1 || !strings.Contains(stderr.String(), "not ADDR:PORT") {
		t.Fatalf("status %d stderr %q", st, stderr.String())
	}
}

func TestDevicesFixture(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := run([]string{"devices", "--sysfs", "../../rdma/testdata/softroce"}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	for _, want := range []string{"rxe0", "rxe1", "::ffff:10.77.0.1", "RoCEv2", "ACTIVE"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("devices output lacks %q:\n%s", want, stdout.String())
		}
	}
}

// In the SoftRoCE guest every address of an rxe netdev resolves, and the CLI
// says which device.
func TestResolveDevice(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	if !testutil.InGuest() {
		t.Skip("needs the SoftRoCE guest's addresses (10.77.0.1 on an rxe netdev)")
	}
	var stdout, stderr bytes.Buffer
	if st := run([]string{"resolve", "10.77.0.1:5000", "--json"}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	var out resolveOutput
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil || len(out.Endpoints) != 1 {
		t.Fatalf("%q: %v", stdout.String(), err)
	}
	ep := out.Endpoints[0]
	if ep.Device == "" || ep.Port != 1 || ep.GID.String() != "::ffff:10.77.0.1" {
		t.Fatalf("endpoint %+v", ep)
	}
}
