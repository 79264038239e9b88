package registry

import (
	"net/netip"
	"testing"
)

func TestOverlap(t *testing.T) {
	p := netip.MustParseAddr
	for _, c := range []struct {
		a     string
		aDual bool
		b     string
		bDual bool
		want  bool
	}{
		{"10.0.0.1", false, "10.0.0.1", false, true},
		{"10.0.0.1", false, "10.0.0.2", false, false},
		{"0.0.0.0", false, "10.0.0.2", false, true},
		{"10.0.0.2", false, "0.0.0.0", false, true},
		{"0.0.0.0", false, "0.0.0.0", false, true},
		{"::", false, "10.0.0.1", false, false}, // V6ONLY wildcard: IPv6 only
		{"::", true, "10.0.0.1", false, true},   // dual-stack wildcard reaches IPv4
		{"10.0.0.1", false, "::", true, true},   // either order
		{"0.0.0.0", false, "::", true, true},    //
		{"0.0.0.0", false, "::", false, false},  //
		{"::", false, "fd00::1", false, true},   // IPv6 wildcard, specific
		{"fd00::1", false, "fd00::2", false, false},
		{"fd00::1", true, "10.0.0.1", false, false}, // dual-stack matters only for the wildcard
		{"::ffff:10.0.0.1", false, "10.0.0.1", false, true},
		{"::ffff:10.0.0.1", false, "0.0.0.0", false, true},
		{"fe80::1%eth0", false, "fe80::1%eth1", false, true}, // zones ignored
		{"10.0.0.1", false, "", false, false},
	} {
		var a, b netip.Addr
		if c.a != "" {
			a = p(c.a)
		}
		if c.b != "" {
			b = p(c.b)
		}
		if got := Overlap(a, c.aDual, b, c.bDual); got != c.want {
			t.Errorf("Overlap(%s dual=%v, %s dual=%v) = %v, want %v", c.a, c.aDual, c.b, c.bDual, got, c.want)
		}
		if got := Overlap(b, c.bDual, a, c.aDual); got != c.want {
			t.Errorf("Overlap(%s, %s) not symmetric", c.b, c.a)
		}
	}
}

func TestConflicts(t *testing.T) {
	held := Record{State: StateUsed, Addr: netip.MustParseAddr("10.0.0.1"), Port: 5000, UID: 1000}
	a := held.Addr
	for _, c := range []struct {
		name  string
		held  Record
		addr  netip.Addr
		port  uint16
		share Share
		uid   uint32
		want  bool
	}{
		{"same user shares", held, a, 5000, ShareSameUser, 1000, false},
		{"other user", held, a, 5000, ShareSameUser, 1001, true},
		{"other user, other port", held, a, 5001, ShareSameUser, 1001, false},
		{"other user, other address", held, netip.MustParseAddr("10.0.0.2"), 5000, ShareSameUser, 1001, false},
		{"other user, wildcard", held, netip.IPv4Unspecified(), 5000, ShareSameUser, 1001, true},
		{"exclusive request", held, a, 5000, Exclusive, 1000, true},
		{"exclusive holder", func() Record { h := held; h.Share = Exclusive; return h }(), a, 5000, ShareSameUser, 1000, true},
		{"free record", Record{Port: 5000, Addr: a}, a, 5000, Exclusive, 1001, false},
	} {
		if got := Conflicts(c.held, c.addr, c.port, false, c.share, c.uid); got != c.want {
			t.Errorf("%s: Conflicts = %v, want %v", c.name, got, c.want)
		}
	}
}
