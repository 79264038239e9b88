package rdma

import (
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestAddrTableLookup(t *testing.T) {
	tab, err := ReadAddrTable(filepath.Join("testdata", "connectx", "addrs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr   string
		netdev string // "" for not found
	}{
		{"192.168.10.5", "eth2"},
		{"::ffff:192.168.10.5", "eth2"}, // mapped: looked up as IPv4
		{"fd10::5", "eth2"},
		{"fd10::5%eth9", "eth2"}, // the zone of a global address is ignored
		{"192.168.100.5", "eth2.100"},
		{"192.0.2.9", "eth9"},
		{"127.0.0.1", "lo"},
		{"::1", "lo"},
		// The same link-local address on eth2 and on its VLAN.
		{"fe80::bace:f6ff:fea1:b2c0%eth2", "eth2"},
		{"fe80::bace:f6ff:fea1:b2c0%eth2.100", "eth2.100"},
		{"fe80::bace:f6ff:fea1:b2c0", "eth2"}, // no zone: the first holder
		{"fe80::bace:f6ff:fea1:b2c0%eth3", ""},
		{"fe80::bace:f6ff:fea1:b2c0%7", ""}, // fixtures have no indexes
		{"10.0.0.9", ""},
		{"fd10::6", ""},
	} {
		nd, ok := tab.Lookup(netip.MustParseAddr(tc.addr))
		if nd != tc.netdev || ok != (tc.netdev != "") {
			t.Errorf("Lookup(%s) = %q, %v; want %q", tc.addr, nd, ok, tc.netdev)
		}
	}
}

func TestAddrTableIndexZone(t *testing.T) {
	tab := NewAddrTable([]NetdevAddr{
		{Netdev: "eth0", Index: 2, Addr: netip.MustParseAddr("fe80::1")},
		{Netdev: "eth1", Index: 3, Addr: netip.MustParseAddr("fe80::1")},
	})
	for zone, want := range map[string]string{"2": "eth0", "3": "eth1", "eth1": "eth1", "4": ""} {
		nd, _ := tab.Lookup(netip.MustParseAddr("fe80::1%" + zone))
		if nd != want {
			t.Errorf("Lookup(fe80::1%%%s) = %q, want %q", zone, nd, want)
		}
	}
	all := tab.All()
	if len(all) != 2 || all[0].Addr.Zone() != "eth0" || all[1].Addr.Zone() != "eth1" {
		t.Errorf("All() = %+v, want link-local addresses zoned with their netdev", all)
	}
	all[0].Netdev = "changed"
	if tab.All()[0].Netdev != "eth0" {
		t.Error("All() returned the table's own slice")
	}
}

func TestParseAddrTableErrors(t *testing.T) {
	for _, in := range []string{"eth0\n", "eth0 10.0.0.1 extra\n", "# ok\n\neth0 10.0.0.300/24\n"} {
		_, err := ParseAddrTable(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "expected a netdev name and an address") ||
			!strings.Contains(err.Error(), "line ") {
			t.Errorf("ParseAddrTable(%q): %v, want an error naming the line and the format", in, err)
		}
	}
	if _, err := ReadAddrTable("testdata/none/addrs.txt"); err == nil {
		t.Error("ReadAddrTable(missing file): no error")
	}
}

func TestLiveAddrs(t *testing.T) {
	tab, err := LiveAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.All()) == 0 {
		t.Skip("no addresses in this network namespace")
	}
	for _, na := range tab.All() {
		if nd, ok := tab.Lookup(na.Addr); !ok {
			t.Errorf("Lookup(%s) of a live address: not found", na.Addr)
		} else if !isLinkLocal6(na.Addr) && nd != na.Netdev {
			t.Errorf("Lookup(%s) = %s, want %s", na.Addr, nd, na.Netdev)
		}
		if isLinkLocal6(na.Addr) {
			if na.Addr.Zone() != na.Netdev {
				t.Errorf("%s on %s: want the netdev as zone", na.Addr, na.Netdev)
			}
			idx := na.Addr.WithZone(strconv.Itoa(na.Index))
			if nd, ok := tab.Lookup(idx); !ok || nd != na.Netdev {
				t.Errorf("Lookup(%s) = %q, %v; want %s", idx, nd, ok, na.Netdev)
			}
		}
	}
}
