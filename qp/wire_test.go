package qp

import (
	"bytes"
	"errors"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func TestHelloRoundTrip(t *testing.T) {
	h := hello{mode: ModeTCP, port: 7470, qpn: 0x123456, psn: 0xabcdef, lid: 7, mtu: 3,
		recvDepth: 32, chunk: 65536, ctrlAddr: 0x7f0011223344, ctrlKey: 0xdeadbeef, bulk: 16}
	h.gid = netip.MustParseAddr("::ffff:10.77.0.1")
	b := h.marshal()
	if len(b) != helloLen || len(b) > 56 {
		t.Fatalf("hello is %d bytes: an rdma_cm connect request carries 56", len(b))
	}
	got, err := parseHello(b)
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Fatalf("parsed %+v, want %+v", got, h)
	}
	for _, bad := range [][]byte{nil, b[:10], append([]byte("XXXX"), b[4:]...)} {
		if _, err := parseHello(bad); !errors.Is(err, ErrProtocol) {
			t.Errorf("parseHello(%q...): %v, want ErrProtocol", bad[:min(len(bad), 4)], err)
		}
	}
	v := append([]byte(nil), b...)
	v[4] = 9
	if _, err := parseHello(v); !errors.Is(err, ErrProtocol) {
		t.Errorf("version 9: %v", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	// The default spin needs two Ps (TestSpinOffWithOneP); the guests of
	// two have one vCPU, so GOMAXPROCS 1.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	o := (*Options)(nil).withDefaults()
	if o.Mode != ModeCM || o.Chunk != 8<<10 || o.RecvDepth != 32 || o.RecvStart != 4 || o.SendDepth != 16 || o.SendStart != 2 || o.Spin != 50*time.Microsecond {
		t.Fatalf("defaults: %+v", o)
	}
	o = (&Options{Chunk: 100, RecvDepth: 1, SendDepth: 1, Spin: -1}).withDefaults()
	if o.Chunk != 128 || o.RecvDepth != 4 || o.RecvStart != 4 || o.SendStart != 1 || o.Spin >= 0 {
		t.Fatalf("adjusted: %+v", o)
	}
	for _, s := range []string{"cm", "tcp"} {
		if m, ok := ParseMode(s); !ok || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, ok)
		}
	}
	if _, ok := ParseMode("udp"); ok {
		t.Error("ParseMode(udp) ok")
	}
}

func TestCreditWord(t *testing.T) {
	b := make([]byte, 32)
	if _, _, ok := loadCredit(b, 0); ok {
		t.Error("zeroed word reads as valid")
	}
	storeCredit(b, 0, 42, 3)
	if v, bv, ok := loadCredit(b, 0); !ok || v != 42 || bv != 3 {
		t.Errorf("load = %d, %d, %v", v, bv, ok)
	}
	b[19] ^= 1 // torn
	if _, _, ok := loadCredit(b, 0); ok {
		t.Error("torn word reads as valid")
	}
}

// FuzzParseHello: the hello decoder (the rdma_cm private data of a connect
// request, the first bytes of a TCP rendezvous, both from any remote peer)
// never panics, reads nothing past its 56 bytes, and what it accepts
// encodes back to those bytes.
func FuzzParseHello(f *testing.F) {
	h := hello{mode: ModeTCP, port: 7470, qpn: 0x123456, psn: 0xabcdef, lid: 7, mtu: 3,
		recvDepth: 32, chunk: 65536, ctrlAddr: 0x7f0011223344, ctrlKey: 0xdeadbeef, bulk: 16}
	h.gid = netip.MustParseAddr("::ffff:10.77.0.1")
	good := h.marshal()
	f.Add(good)
	f.Add(good[:helloLen-1])
	f.Add(append(append([]byte(nil), good...), "trailing bytes"...))
	f.Add([]byte("RBQ1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := parseHello(b)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("parseHello: %v, want ErrProtocol", err)
			}
			return
		}
		if len(b) < helloLen {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if re := got.marshal(); !bytes.Equal(re, b[:helloLen]) {
			t.Fatalf("accepted %x, which encodes back as %x", b[:helloLen], re)
		}
		if got.recvDepth < 2 || got.chunk < 64 {
			t.Fatalf("accepted %d buffers of %d bytes", got.recvDepth, got.chunk)
		}
	})
}
