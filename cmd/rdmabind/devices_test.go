package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rdmabind/rdmabind/rdma"
)

// devices --json carries each port's counters (rdmamap's reading of
// counters/ and hw_counters/) under "counters".
func TestDevicesJSONCounters(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := run([]string{"devices", "--json", "--sysfs", "../../rdma/testdata/connectx"}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	var topo rdma.Topology
	if err := json.Unmarshal(stdout.Bytes(), &topo); err != nil {
		t.Fatal(err)
	}
	p := topo.Devices[0].Ports[0]
	if p.Counters == nil || p.Counters.HW["out_of_sequence"] != 7 || p.Counters.Port["port_xmit_packets"] != 123456 {
		t.Errorf("mlx5_0 port 1 counters: %+v", p.Counters)
	}
	if !strings.Contains(stdout.String(), `"counters":{"counters":{`) || !strings.Contains(stdout.String(), `"hw_counters":{`) {
		t.Errorf("JSON lacks counters: %.300s", stdout.String())
	}
	stdout.Reset()
	if st := run([]string{"devices", "--sysfs", "../../rdma/testdata/connectx"}, &stdout, &stderr); st != 0 {
		t.Fatalf("status %d: %s", st, stderr.String())
	}
	if !strings.Contains(stdout.String(), "243456 packets") || !strings.Contains(stdout.String(), "out_of_sequence=7") {
		t.Errorf("table lacks the counters:\n%s", stdout.String())
	}
}
