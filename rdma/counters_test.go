package rdma

import (
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/Mellanox/rdmamap"
	"golang.org/x/sys/unix"
)

func TestReadPortCountersFixtures(t *testing.T) {
	for _, tc := range []struct {
		fixture, dev string
		port         int
		port1, hw    map[string]uint64 // a subset expected
		noPort, noHW bool
		packets      uint64
		trouble      []string
	}{
		{fixture: "softroce", dev: "rxe0", port: 1, noPort: true,
			hw: map[string]uint64{"sent_pkts": 40, "rcvd_pkts": 38, "out_of_seq_request": 0}, packets: 78},
		{fixture: "softroce", dev: "rxe1", port: 1, noPort: true, hw: map[string]uint64{"sent_pkts": 41}, packets: 80},
		{fixture: "connectx", dev: "mlx5_0", port: 1,
			port1:   map[string]uint64{"port_xmit_packets": 123456, "port_rcv_data": 120000 * 256},
			hw:      map[string]uint64{"out_of_sequence": 7, "roce_adp_retrans": 3, "np_cnp_sent": 12},
			packets: 243456,
			trouble: []string{"local_ack_timeout_err=3", "np_cnp_sent=12", "np_ecn_marked_roce_packets=12", "out_of_sequence=7", "roce_adp_retrans=3", "rp_cnp_handled=12"}},
		{fixture: "bond", dev: "mlx5_bond_0", port: 1, port1: map[string]uint64{"port_rcv_packets": 5100}, hw: map[string]uint64{"out_of_sequence": 0}, packets: 10100},
		{fixture: "ipoib", dev: "mlx4_0", port: 2, port1: map[string]uint64{"port_xmit_packets": 0}, noHW: true},
	} {
		c, err := Sysfs{Root: "testdata/" + tc.fixture}.ReadPortCounters(tc.dev, tc.port)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.fixture, tc.dev, err)
		}
		if _, ok := c.HW["lifespan"]; ok {
			t.Errorf("%s %s: lifespan is a setting, not a counter", tc.fixture, tc.dev)
		}
		if tc.noPort != (c.PMA == nil) || tc.noHW != (c.HW == nil) {
			t.Errorf("%s %s: counters %v hw %v", tc.fixture, tc.dev, c.PMA, c.HW)
		}
		for name, want := range tc.port1 {
			if got, ok := c.PMA[name]; !ok || got != want {
				t.Errorf("%s %s: counters/%s = %d (%v), want %d", tc.fixture, tc.dev, name, got, ok, want)
			}
		}
		for name, want := range tc.hw {
			if got, ok := c.HW[name]; !ok || got != want {
				t.Errorf("%s %s: hw_counters/%s = %d (%v), want %d", tc.fixture, tc.dev, name, got, ok, want)
			}
		}
		if got := c.Packets(); got != tc.packets {
			t.Errorf("%s %s: Packets %d, want %d", tc.fixture, tc.dev, got, tc.packets)
		}
		if got := c.TroubleSum(); tc.fixture == "connectx" && tc.dev == "mlx5_0" && got != 3+12+12+7+3+12 {
			t.Errorf("%s %s: TroubleSum %d", tc.fixture, tc.dev, got)
		}
		if got := c.Trouble(); !slices.Equal(got, tc.trouble) {
			t.Errorf("%s %s: Trouble %q, want %q", tc.fixture, tc.dev, got, tc.trouble)
		}
	}
	// rdmamap is pointed back at the live tree after each call.
	if rdmamap.RdmaClassDir != "/sys/class/infiniband" {
		t.Errorf("rdmamap.RdmaClassDir left at %q", rdmamap.RdmaClassDir)
	}
}

func TestReadPortCountersErrors(t *testing.T) {
	for _, tc := range []struct {
		fixture, dev string
		port         int
	}{{"softroce", "rxe9", 1}, {"softroce", "rxe0", 2}, {"nordma", "rxe0", 1}} {
		_, err := Sysfs{Root: "testdata/" + tc.fixture}.ReadPortCounters(tc.dev, tc.port)
		if !errors.Is(err, ErrTopology) || !errors.Is(err, unix.ENETDOWN) {
			t.Errorf("%s %s/%d: %v, want ErrTopology", tc.fixture, tc.dev, tc.port, err)
		}
	}
}

func TestAddCountersAndDiff(t *testing.T) {
	s := Sysfs{Root: "testdata/connectx"}
	topo := readFixture(t, "connectx")
	if err := s.AddCounters(topo); err != nil {
		t.Fatal(err)
	}
	for _, d := range topo.Devices {
		for _, p := range d.Ports {
			if p.Counters == nil || p.Counters.Empty() {
				t.Errorf("%s port %d: no counters", d.Name, p.Number)
			}
		}
	}
	before, err := s.ReadCounters(topo)
	if err != nil || len(before) != 2 {
		t.Fatalf("ReadCounters: %v %v", before, err)
	}
	after := slices.Clone(before)
	after[0].Counters = Counters{
		PMA: map[string]uint64{"port_xmit_packets": 123456 + 10, "port_rcv_packets": 120000 + 9, "port_xmit_data": 0},
		HW:  map[string]uint64{"out_of_sequence": 7 + 2, "roce_adp_retrans": 3, "new_counter": 5},
	}
	d := DiffCounters(before, after)
	got := d[0].Counters.NonZero()
	want := Counters{PMA: map[string]uint64{"port_xmit_packets": 10, "port_rcv_packets": 9},
		HW: map[string]uint64{"out_of_sequence": 2, "new_counter": 5}}
	// port_xmit_data went down (a reset): its new value, 0, is the delta.
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delta %+v, want %+v", got, want)
	}
	if tr := (Counters{HW: map[string]uint64{"ack_deferred": 3, "rcvd_seq_err": 1, "retry_exceeded_err": 2, "rdma_sends": 9}}).Trouble(); !slices.Equal(tr, []string{"rcvd_seq_err=1", "retry_exceeded_err=2"}) {
		t.Errorf("rxe trouble: %q", tr)
	}
	if d[0].Counters.Packets() != 19 || !slices.Equal(d[0].Counters.Trouble(), []string{"out_of_sequence=2"}) {
		t.Errorf("delta packets %d trouble %q", d[0].Counters.Packets(), d[0].Counters.Trouble())
	}
	if !d[1].Counters.NonZero().Empty() {
		t.Errorf("unchanged port's delta: %+v", d[1].Counters.NonZero())
	}
}

// Concurrent readers of different roots each read their own tree: the lock
// around rdmamap's package variable holds.
func TestReadPortCountersConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			fx, dev, key := "softroce", "rxe0", "sent_pkts"
			if i%2 == 1 {
				fx, dev, key = "connectx", "mlx5_0", "out_of_sequence"
			}
			for range 50 {
				c, err := Sysfs{Root: "testdata/" + fx}.ReadPortCounters(dev, 1)
				if _, ok := c.HW[key]; err != nil || !ok {
					t.Errorf("%s: %v %v", fx, c, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
