package rdma

import (
	"testing"
)

// BenchmarkResolve measures the hot path: resolution against a topology and
// an address table read once. It reads no file.
func BenchmarkResolve(b *testing.B) {
	for _, bc := range []struct{ name, fixture, addr string }{
		{"softroce/ipv4", "softroce", "10.77.0.1"},
		{"softroce/ipv6", "softroce", "fd77::1"},
		{"connectx/vlan", "connectx", "192.168.100.5"},
		{"connectx/linklocal-zone", "connectx", "fe80::bace:f6ff:fea1:b2c0%eth2.100"},
		{"ipoib", "ipoib", "10.30.0.5"},
		{"softroce/wildcard", "softroce", "0.0.0.0"},
		{"softroce/not-local", "softroce", "10.77.0.9"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := fixtureResolver(b, bc.fixture)
			a := mustAddr(bc.addr)
			b.ReportAllocs()
			for b.Loop() {
				_, _ = r.Resolve(a)
			}
		})
	}
}

// BenchmarkReadTopology is the cost Resolve pays once: a sysfs walk (here
// of the trimmed connectx fixture).
func BenchmarkReadTopology(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadTopology("testdata/connectx"); err != nil {
			b.Fatal(err)
		}
	}
}
