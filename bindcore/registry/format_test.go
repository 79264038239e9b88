package registry

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func sampleImage(n int) []byte {
	h := Header{Version: Version, HeaderSize: HeaderSize, RecordSize: RecordSize, Records: uint32(n), Groups: IndexGroups(n),
		Netns: 4026531840, CreatorUID: 1000, Created: 1700000000123456789, HighWater: 2, Tickets: 77}
	recs := make([]Record, n)
	recs[0] = Record{Seq: 4, State: StateUsed, Addr: netip.MustParseAddr("192.168.1.7"), Port: 18515,
		Role: RoleListening, Generation: 3, SocketID: 0xfeedface, UID: 1000, PID: 4242, StartTime: 987654,
		Netns: 4026531840, Claimed: 1700000000999, Ticket: 70}
	if n > 1 {
		recs[1] = Record{Seq: 2, State: StateUsed, Addr: netip.IPv6Unspecified(), Port: 7471, Role: RoleBound,
			Share: Exclusive, DualStack: true, Generation: 1, SocketID: 9, UID: 0, PID: 1, StartTime: 1, Netns: 4026531840,
			Pending: true} // a claim in progress, without its ticket yet
	}
	if n > 2 {
		recs[2] = Record{Seq: 8, Generation: 9} // released
	}
	idx := make([]IndexGroup, h.Groups)
	idx[0] = IndexGroup{Reach: 0, Version: 5, Entries: [IndexEntries]IndexEntry{2: newEntry(0, 18515, 3)}}
	return Encode(h, recs, idx)
}

func TestFormatRoundTrip(t *testing.T) {
	img := sampleImage(4)
	if len(img) != HeaderSize+4*RecordSize+int(IndexGroups(4))*IndexGroupSize {
		t.Fatalf("image %d bytes", len(img))
	}
	if !bytes.Equal(img[:8], []byte("RDMABREG")) {
		t.Errorf("magic %q", img[:8])
	}
	h, recs, idx, err := Decode(img)
	if err != nil {
		t.Fatal(err)
	}
	if e := idx[0].Entries[2]; e.Slot() != 0 || e.Port() != 18515 || e.Gen() != 3 || !e.matches(recs[0]) || idx[0].Version != 5 {
		t.Errorf("index group 0 %+v", idx[0])
	}
	if h.Records != 4 || h.HighWater != 2 || h.CreatorUID != 1000 {
		t.Errorf("header %+v", h)
	}
	if r := recs[0]; r.AddrPort().String() != "192.168.1.7:18515" || r.Role != RoleListening || r.Slot != 0 || r.PID != 4242 {
		t.Errorf("record 0 %+v", r)
	}
	if r := recs[1]; !r.Addr.Is6() || !r.DualStack || r.Share != Exclusive || r.Slot != 1 {
		t.Errorf("record 1 %+v", r)
	}
	if !bytes.Equal(Encode(h, recs, idx), img) {
		t.Error("re-encoding differs")
	}
	// Layout spot checks against docs/registry.md.
	le := binary.LittleEndian
	r0 := img[HeaderSize:]
	if r0[8] != 1 || r0[9] != 4 || r0[10] != 2 || le.Uint16(r0[12:]) != 18515 ||
		!bytes.Equal(r0[16:32], netip.MustParseAddr("::ffff:192.168.1.7").AsSlice()) ||
		le.Uint64(r0[40:]) != 0xfeedface || le.Uint32(r0[52:]) != 4242 {
		t.Errorf("record bytes % x", r0[:80])
	}
	if le.Uint32(img[68:]) != ^uint32(2) {
		t.Errorf("high-water check %#x", le.Uint32(img[68:]))
	}
	if le.Uint64(img[72:]) != 77 || le.Uint64(r0[80:]) != 70 || r0[11] != 0 {
		t.Errorf("ticket counter %d, record ticket %d, flags %#x", le.Uint64(img[72:]), le.Uint64(r0[80:]), r0[11])
	}
	if r1 := img[HeaderSize+RecordSize:]; r1[11] != 0b111 || le.Uint64(r1[80:]) != 0 {
		t.Errorf("pending record: flags %#x, ticket %d", r1[11], le.Uint64(r1[80:]))
	}
}

func TestDecodeRejects(t *testing.T) {
	good := sampleImage(3)
	for _, c := range []struct {
		name   string
		mutate func(b []byte) []byte
		want   error
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrCorrupt},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrCorrupt},
		{"extended", func(b []byte) []byte { return append(b, 0) }, ErrCorrupt},
		{"short header", func(b []byte) []byte { return b[:HeaderSize-1] }, ErrCorrupt},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrCorrupt},
		{"version", func(b []byte) []byte { b[hVersion] = Version + 1; return b }, ErrVersion},
		{"version 1", func(b []byte) []byte { b[hVersion] = 1; return b }, ErrVersion},
		{"version 2", func(b []byte) []byte { b[hVersion] = 2; return b }, ErrVersion},
		{"index groups", func(b []byte) []byte { return reheader(b, func(b []byte) { b[hGroups] *= 2 }) }, ErrCorrupt},
		{"free hint", func(b []byte) []byte { b[hFreeHint] = 4; return b }, ErrCorrupt},
		{"header mutable reserved", func(b []byte) []byte { b[hMutableEnd] = 1; return b }, ErrCorrupt},
		{"reach", func(b []byte) []byte { b[indexOff(3)] = byte(IndexGroups(3)); return b }, ErrCorrupt},
		{"entry slot", func(b []byte) []byte { b[indexOff(3)+8] = 4; return b }, ErrCorrupt},
		{"header crc", func(b []byte) []byte { b[hCount] ^= 1; return b }, ErrCorrupt},
		{"high-water", func(b []byte) []byte { b[hHighWater] ^= 1; return b }, ErrCorrupt},
		{"header reserved", func(b []byte) []byte { b[100] = 1; return b }, ErrCorrupt},
		{"record crc", func(b []byte) []byte { b[HeaderSize+rPort] ^= 1; return b }, ErrCorrupt},
		{"record torn", func(b []byte) []byte { b[HeaderSize+rSeq] |= 1; return b }, ErrCorrupt},
		{"record reserved", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[100] = 1 }) }, ErrCorrupt},
		{"record state", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rState] = 9 }) }, ErrCorrupt},
		{"record family", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rFamily] = 5 }) }, ErrCorrupt},
		{"family 4 not mapped", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rAddr] = 1 }) }, ErrCorrupt},
		{"family 6 mapped", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rFamily] = 6 }) }, ErrCorrupt},
		{"flags", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rFlags] |= 0x80 }) }, ErrCorrupt},
		{"used without role", func(b []byte) []byte { return resum(b, 0, func(r []byte) { r[rRole] = 0 }) }, ErrCorrupt},
		{"finished claim without ticket", func(b []byte) []byte { return resum(b, 0, func(r []byte) { clear(r[rTicket : rTicket+8]) }) }, ErrCorrupt},
		{"free with ticket", func(b []byte) []byte { return resum(b, 2, func(r []byte) { r[rTicket] = 1 }) }, ErrCorrupt},
		{"zero record, checksum of v2", func(b []byte) []byte {
			r := b[HeaderSize+2*RecordSize:][:RecordSize]
			clear(r)
			binary.LittleEndian.PutUint32(r[rCRC:], crc32c(r[rState:]))
			return b
		}, ErrCorrupt},
		{"free and pending", func(b []byte) []byte { return resum(b, 2, func(r []byte) { r[rFlags] = flagPending }) }, ErrCorrupt},
	} {
		b := c.mutate(bytes.Clone(good))
		if _, _, _, err := Decode(b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// reheader changes the header of image b and fixes its checksum.
func reheader(b []byte, f func(b []byte)) []byte {
	f(b)
	binary.LittleEndian.PutUint32(b[hCRC:], crc32c(b[:hCRC]))
	return b
}

// resum changes record slot of image b and fixes its checksum.
func resum(b []byte, slot int, f func(r []byte)) []byte {
	r := b[HeaderSize+slot*RecordSize:][:RecordSize]
	f(r)
	binary.LittleEndian.PutUint32(r[rCRC:], recordSum(r))
	return b
}

func FuzzDecode(f *testing.F) {
	f.Add(sampleImage(1))
	f.Add(sampleImage(3))
	f.Add(sampleImage(3)[:HeaderSize])
	f.Add(sampleImage(1)[HeaderSize:])
	f.Add([]byte("RDMABREG"))
	f.Add(sampleImage(2)[HeaderSize : HeaderSize+RecordSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip(t, b)
		// Again with every checksum made right, so that the checks behind
		// them see the fuzzer's bytes too.
		roundTrip(t, fixImage(bytes.Clone(b)))
		roundTrip(t, fixRecord(bytes.Clone(b)))
	})
}

// fixImage recomputes the header's and every whole record's checksum of an
// image (and makes sequences even).
func fixImage(b []byte) []byte {
	le := binary.LittleEndian
	if len(b) >= HeaderSize {
		le.PutUint32(b[hCRC:], crc32c(b[:hCRC]))
		le.PutUint32(b[hHighCheck:], ^le.Uint32(b[hHighWater:]))
	}
	end := len(b)
	if h, err := DecodeHeader(b); err == nil {
		end = min(end, indexOff(int(h.Records)))
	}
	for off := HeaderSize; off+RecordSize <= end; off += RecordSize {
		fixRecord(b[off:])
	}
	return b
}

// fixRecord makes b's first record's sequence even and checksum right.
func fixRecord(b []byte) []byte {
	if len(b) >= RecordSize {
		b[rSeq] &^= 1
		binary.LittleEndian.PutUint32(b[rCRC:], recordSum(b))
	}
	return b
}

func roundTrip(t *testing.T, b []byte) {
	if h, recs, idx, err := Decode(b); err == nil {
		if got := Encode(h, recs, idx); !bytes.Equal(got, b) {
			t.Fatalf("Decode accepted an image that encodes differently:\n in % x\nout % x", b, got)
		}
	}
	if h, err := DecodeHeader(b); err == nil {
		if got := h.Encode(); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("DecodeHeader: re-encoding differs:\n in % x\nout % x", b[:HeaderSize], got)
		}
	}
	if r, err := DecodeRecord(b); err == nil {
		if got := r.Encode(); !bytes.Equal(got, b[:RecordSize]) {
			t.Fatalf("DecodeRecord: re-encoding differs:\n in % x\nout % x", b[:RecordSize], got)
		}
	}
}

// TestCRCPatch: a checksum patched byte by byte is the checksum computed
// afresh.
func TestCRCPatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 2000; i++ {
		var b [RecordSize]byte
		for j := rState; j < RecordSize; j++ {
			b[j] = byte(rng.Uint32())
		}
		binary.LittleEndian.PutUint32(b[rCRC:], recordSum(b[:]))
		off := patchable[rng.IntN(len(patchable))]
		if rng.IntN(2) == 0 && off >= rTicket {
			crcPatch64(&b, rTicket, rng.Uint64())
		} else {
			crcPatch(&b, off, byte(rng.Uint32()))
		}
		if got, want := binary.LittleEndian.Uint32(b[rCRC:]), recordSum(b[:]); got != want {
			t.Fatalf("patched checksum %#08x, computed %#08x", got, want)
		}
	}
}
