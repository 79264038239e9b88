package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"syscall"
	"testing"

	"github.com/rdmabind/rdmabind/qp"
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
	if p.Counters == nil || p.Counters.HW["out_of_sequence"] != 7 || p.Counters.PMA["port_xmit_packets"] != 123456 {
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

// In the guest, the counters devices --json shows move when traffic flows:
// 200 echoed messages over a queue pair on rxe0 (to itself: rxe loops the
// packets back, and counts them sent and received) raise rxe0's sent_pkts
// and rcvd_pkts by at least two per message each (the message and its echo);
// the log shows every delta and any trouble (a retransmit is possible on a
// busy guest, so it is shown, not failed).
func TestDevicesCountersMoveWithTraffic(t *testing.T) {
	ap, srv, b := startEchoCLI(t)
	before := devicesCounters(t, "rxe0")
	if before.HW == nil {
		t.Fatalf("rxe0 port 1 has no hw_counters: %+v", before)
	}
	s, c := dialEcho(t, b, ap, qp.ModeCM)
	defer s.Close()
	srv.next("accept")
	const msgs = 200
	msg, buf := bytes.Repeat([]byte{7}, 1000), make([]byte, 4096)
	for i := range msgs {
		if err := c.Send(msg); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		if _, err := c.Recv(buf); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	srv.next("closed")
	d := devicesCounters(t, "rxe0").Sub(before)
	t.Logf("rxe0 port 1 over %d echoed messages: %v (trouble: %q)", msgs, d.NonZero().HW, d.Trouble())
	// Each message and its echo is at least one packet each way, plus
	// acknowledgements and the connection's own.
	if d.HW["sent_pkts"] < 2*msgs || d.HW["rcvd_pkts"] < 2*msgs {
		t.Errorf("sent_pkts +%d, rcvd_pkts +%d: want at least %d each", d.HW["sent_pkts"], d.HW["rcvd_pkts"], 2*msgs)
	}
	if d.Packets() < 4*msgs {
		t.Errorf("Packets() +%d, want at least %d", d.Packets(), 4*msgs)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	srv.cmd.Wait()
}

// devicesCounters runs devices --json and returns the counters of port 1
// of dev.
func devicesCounters(t *testing.T, dev string) rdma.Counters {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if st := run([]string{"devices", "--json"}, &stdout, &stderr); st != 0 {
		t.Fatalf("devices --json: status %d: %s", st, stderr.String())
	}
	var topo rdma.Topology
	if err := json.Unmarshal(stdout.Bytes(), &topo); err != nil {
		t.Fatal(err)
	}
	d, ok := topo.Device(dev)
	if !ok {
		t.Fatalf("devices --json: no %s", dev)
	}
	p, ok := d.Port(1)
	if !ok || p.Counters == nil {
		t.Fatalf("devices --json: %s port 1 without counters", dev)
	}
	return *p.Counters
}
