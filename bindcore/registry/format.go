package registry

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
	"sync"
)

// The file format, version 3. docs/registry.md has the byte layout; the
// decoders here are its reference. All integers are little-endian.
const (
	// Version is the format version this package reads and writes. Version
	// 2 added the claim tickets and the pending flag, for the claim protocol
	// without a registry-wide lock; version 3 the port index after the
	// records, the free-slot hint, and record checksums that make an
	// all-zero record a valid free one (so a new file is sparse). A reader
	// accepts only its own version.
	Version = 3
	// HeaderSize is the size of the header at the start of the file.
	HeaderSize = 128
	// RecordSize is the size of one record.
	RecordSize = 128
	// DefaultRecords is the record count of a file Open creates.
	DefaultRecords = 4096
	// MaxRecords bounds the record count a header may declare (a file of
	// 40 MiB, sparse: pages are allocated as records and index groups are
	// first written).
	MaxRecords = 1 << 18
	// IndexGroupSize is the size of one group of the port index.
	IndexGroupSize = 64
	// IndexEntries is the number of entries of an index group (word 0 is
	// the group's reach).
	IndexEntries = IndexGroupSize/8 - 1
)

// Magic is the first 8 bytes of a registry file.
var Magic = [8]byte{'R', 'D', 'M', 'A', 'B', 'R', 'E', 'G'}

// Header offsets.
const (
	hMagic      = 0
	hVersion    = 8
	hHeaderSize = 12
	hRecordSize = 16
	hCount      = 20
	hNetns      = 24
	hCreator    = 32
	hFlags      = 36
	hCreated    = 40
	hGroups     = 48 // index groups: IndexGroups(count)
	hCRC        = 60 // CRC32C of bytes [0, 60)
	hHighWater  = 64 // mutable area [64, 128): not covered by the CRC
	hHighCheck  = 68 // ^HighWater: the pair is one 64-bit word, checked on every use
	hTickets    = 72 // the last claim ticket handed out (atomic fetch-add)
	hFreeHint   = 80 // a slot at or below which a free record may be (a hint)
	hMutableEnd = 84 // [84, 128) zero
)

// Record offsets.
const (
	rSeq       = 0
	rCRC       = 4 // CRC32C of bytes [8, 128) xor zeroSum (see recordSum)
	rState     = 8
	rFamily    = 9
	rRole      = 10
	rFlags     = 11
	rPort      = 12
	rAddr      = 16
	rGen       = 32
	rSocketID  = 40
	rUID       = 48
	rPID       = 52
	rStartTime = 56
	rNetns     = 64
	rClaimed   = 72
	rTicket    = 80 // the claim's ticket; 0 until it has one
	rReserved  = 88 // [88, 128) zero
)

// Record flags (byte 11).
const (
	flagDualStack = 1 << 0
	flagExclusive = 1 << 1
	flagPending   = 1 << 2 // published, its conflict check not finished
	flagsKnown    = flagDualStack | flagExclusive | flagPending
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// State is a record's state.
type State uint8

// Record states.
const (
	StateFree State = 0 // no claim; the slot may be allocated
	StateUsed State = 1 // a claim; live exactly while its slot lock is held
)

func (s State) String() string {
	switch s {
	case StateFree:
		return "free"
	case StateUsed:
		return "used"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Role is what a claim's socket does with its port. The registry stores it
// and gives it no meaning in its sharing rules; listener designation (one
// designated listener per port, standbys waiting on it) builds on it.
type Role uint8

// Roles. Values are part of the file format; new roles take new values and
// old readers keep them as they are.
const (
	RoleBound      Role = 1 // bound, for outgoing connections
	RoleListening  Role = 2 // listening
	RoleDesignated Role = 3 // the listener that receives connection requests
	RoleStandby    Role = 4 // a listener waiting to take over
)

func (r Role) String() string {
	switch r {
	case RoleBound:
		return "bound"
	case RoleListening:
		return "listening"
	case RoleDesignated:
		return "designated"
	case RoleStandby:
		return "standby"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// Share is a claim's sharing policy.
type Share uint8

// Sharing policies.
const (
	// ShareSameUser (the zero value) shares the address and port with every
	// claim of the same uid whose policy is ShareSameUser too, in this and
	// other processes: the kernel's TCP rule for SO_REUSEPORT sockets.
	ShareSameUser Share = 0
	// Exclusive shares with nobody: the claim fails if any live claim
	// overlaps it, and later overlapping claims fail while it is live
	// (a socket without SO_REUSEPORT).
	Exclusive Share = 1
)

func (s Share) String() string {
	switch s {
	case ShareSameUser:
		return "same-user"
	case Exclusive:
		return "exclusive"
	}
	return fmt.Sprintf("share(%d)", uint8(s))
}

// Header is the decoded file header.
type Header struct {
	Version    uint32 // format version (Version)
	HeaderSize uint32 // HeaderSize
	RecordSize uint32 // RecordSize
	Records    uint32 // record count, 1..MaxRecords
	Netns      uint64 // inode of the network namespace the file is for
	CreatorUID uint32 // uid that created the file
	Flags      uint32 // 0
	Created    int64  // creation time, Unix nanoseconds
	Groups     uint32 // index groups: IndexGroups(Records)
	HighWater  uint32 // mutable: every used record is below it
	Tickets    uint64 // mutable: the last claim ticket handed out
	FreeHint   uint32 // mutable: a hint where a free record may be, at most Records
}

// FileSize returns the size of a file with h's record count: the header,
// the records, the index.
func (h Header) FileSize() int64 {
	return int64(HeaderSize) + int64(h.Records)*RecordSize + int64(h.Groups)*IndexGroupSize
}

// indexOff returns the offset of the index in a file of n records.
func indexOff(n int) int { return HeaderSize + n*RecordSize }

// IndexGroups returns the number of index groups of a file of n records:
// the smallest power of two whose entries are at least twice n, so that
// the index is at most half full of live claims' entries.
func IndexGroups(n int) uint32 {
	g := uint32(1)
	for int(g)*IndexEntries < 2*n {
		g <<= 1
	}
	return g
}

// Record is one decoded record: a claim of an address and port, or a free
// slot.
type Record struct {
	Slot       int        // index of the record in the file (not stored in it)
	Seq        uint32     // write sequence: even when stable
	State      State      // free or used
	Addr       netip.Addr // IPv4 or IPv6 address, no zone; invalid when free
	Port       uint16     // port, host byte order
	Role       Role       // what the socket does with the port
	Share      Share      // sharing policy
	DualStack  bool       // an IPv6 wildcard that covers IPv4 too (V6ONLY off)
	Generation uint64     // bumped by every claim of this slot
	SocketID   uint64     // the claiming socket's id
	UID        uint32     // owner uid (effective uid of the claiming process)
	PID        uint32     // owner pid
	StartTime  uint64     // owner's start time, clock ticks after boot (/proc/<pid>/stat field 22)
	Netns      uint64     // network namespace inode of the claim
	Claimed    int64      // claim time, Unix nanoseconds
	// Ticket orders concurrent claims: a fetch-add of the header's counter,
	// taken after the record was published. 0 while a claim has none yet.
	Ticket uint64
	// Pending marks a claim that is published but has not finished its
	// conflict check: it may still back out. List leaves such records out.
	Pending bool
}

// AddrPort returns the record's address and port.
func (r Record) AddrPort() netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

func (r Record) String() string {
	if r.State != StateUsed {
		return fmt.Sprintf("slot %d: %s", r.Slot, r.State)
	}
	pending := ""
	if r.Pending {
		pending = " (pending)"
	}
	return fmt.Sprintf("slot %d: %s %s pid %d uid %d socket %#x gen %d ticket %d%s",
		r.Slot, r.AddrPort(), r.Role, r.PID, r.UID, r.SocketID, r.Generation, r.Ticket, pending)
}

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// DecodeHeader decodes the first HeaderSize bytes of b. It returns an error
// wrapping ErrCorrupt for a short buffer, a wrong magic, a bad checksum, or
// fields this version does not allow, and one wrapping ErrVersion for a
// registry of another version. It never panics; a header it accepts encodes
// back to the same bytes.
func DecodeHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, corruptf("header: %d bytes, need %d", len(b), HeaderSize)
	}
	b = b[:HeaderSize]
	le := binary.LittleEndian
	if !bytes.Equal(b[hMagic:hMagic+8], Magic[:]) {
		return h, corruptf("header: magic %q, want %q: not an rdmabind registry", b[:8], Magic[:])
	}
	h.Version = le.Uint32(b[hVersion:])
	if h.Version != Version {
		hint := ""
		if h.Version < Version {
			hint = " (the file of an older rdmabind)"
		}
		return h, fmt.Errorf("%w: file format version %d, this rdmabind reads version %d%s", ErrVersion, h.Version, Version, hint)
	}
	if got, want := le.Uint32(b[hCRC:]), crc32.Checksum(b[:hCRC], castagnoli); got != want {
		return h, corruptf("header: checksum %#08x, computed %#08x", got, want)
	}
	h.HeaderSize = le.Uint32(b[hHeaderSize:])
	h.RecordSize = le.Uint32(b[hRecordSize:])
	h.Records = le.Uint32(b[hCount:])
	h.Netns = le.Uint64(b[hNetns:])
	h.CreatorUID = le.Uint32(b[hCreator:])
	h.Flags = le.Uint32(b[hFlags:])
	h.Created = int64(le.Uint64(b[hCreated:]))
	h.Groups = le.Uint32(b[hGroups:])
	h.HighWater = le.Uint32(b[hHighWater:])
	h.Tickets = le.Uint64(b[hTickets:])
	h.FreeHint = le.Uint32(b[hFreeHint:])
	switch {
	case le.Uint32(b[hHighCheck:]) != ^h.HighWater:
		return h, corruptf("header: high-water mark %d does not match its check %#08x", h.HighWater, le.Uint32(b[hHighCheck:]))
	case h.HeaderSize != HeaderSize:
		return h, corruptf("header: header size %d, version %d has %d", h.HeaderSize, Version, HeaderSize)
	case h.RecordSize != RecordSize:
		return h, corruptf("header: record size %d, version %d has %d", h.RecordSize, Version, RecordSize)
	case h.Records == 0 || h.Records > MaxRecords:
		return h, corruptf("header: record count %d, want 1..%d", h.Records, MaxRecords)
	case h.HighWater > h.Records:
		return h, corruptf("header: high-water mark %d above the record count %d", h.HighWater, h.Records)
	case h.Groups != IndexGroups(int(h.Records)):
		return h, corruptf("header: %d index groups, a file of %d records has %d", h.Groups, h.Records, IndexGroups(int(h.Records)))
	case h.FreeHint > h.Records:
		return h, corruptf("header: free-slot hint %d above the record count %d", h.FreeHint, h.Records)
	case h.Flags != 0:
		return h, corruptf("header: flags %#x, version %d has none", h.Flags, Version)
	case !allZero(b[hGroups+4 : hCRC]), !allZero(b[hMutableEnd:]):
		return h, corruptf("header: reserved bytes are not zero")
	}
	return h, nil
}

// Encode returns the HeaderSize bytes of h, with its checksum.
func (h Header) Encode() []byte {
	b := make([]byte, HeaderSize)
	le := binary.LittleEndian
	copy(b[hMagic:], Magic[:])
	le.PutUint32(b[hVersion:], h.Version)
	le.PutUint32(b[hHeaderSize:], h.HeaderSize)
	le.PutUint32(b[hRecordSize:], h.RecordSize)
	le.PutUint32(b[hCount:], h.Records)
	le.PutUint64(b[hNetns:], h.Netns)
	le.PutUint32(b[hCreator:], h.CreatorUID)
	le.PutUint32(b[hFlags:], h.Flags)
	le.PutUint64(b[hCreated:], uint64(h.Created))
	le.PutUint32(b[hGroups:], h.Groups)
	le.PutUint32(b[hCRC:], crc32.Checksum(b[:hCRC], castagnoli))
	le.PutUint32(b[hHighWater:], h.HighWater)
	le.PutUint32(b[hHighCheck:], ^h.HighWater)
	le.PutUint64(b[hTickets:], h.Tickets)
	le.PutUint32(b[hFreeHint:], h.FreeHint)
	return b
}

// DecodeRecord decodes one record from the first RecordSize bytes of b. The
// returned Record's Slot is 0. It returns an error wrapping ErrCorrupt for a
// short buffer, an odd sequence (a write in progress, or a writer that
// died), a bad checksum, or a field this version does not allow. It never
// panics; a record it accepts encodes back to the same bytes.
//
// Version 2 rules on the claim protocol's fields: only a used record may be
// pending; a used record that is not pending (a finished claim) has a
// ticket; a free record has none.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < RecordSize {
		return r, corruptf("record: %d bytes, need %d", len(b), RecordSize)
	}
	b = b[:RecordSize]
	le := binary.LittleEndian
	r.Seq = le.Uint32(b[rSeq:])
	if r.Seq&1 != 0 {
		return r, corruptf("record: sequence %d is odd: a write is in progress or its writer died", r.Seq)
	}
	if got, want := le.Uint32(b[rCRC:]), recordSum(b); got != want {
		return r, corruptf("record: checksum %#08x, computed %#08x", got, want)
	}
	r.State = State(b[rState])
	if r.State != StateFree && r.State != StateUsed {
		return r, corruptf("record: state %d", b[rState])
	}
	r.Role = Role(b[rRole])
	flags := b[rFlags]
	if flags&^flagsKnown != 0 {
		return r, corruptf("record: unknown flags %#x", flags)
	}
	r.DualStack = flags&flagDualStack != 0
	if flags&flagExclusive != 0 {
		r.Share = Exclusive
	}
	r.Port = le.Uint16(b[rPort:])
	if b[rPort+2] != 0 || b[rPort+3] != 0 || !allZero(b[rReserved:]) {
		return r, corruptf("record: reserved bytes are not zero")
	}
	a16 := [16]byte(b[rAddr : rAddr+16])
	switch fam := b[rFamily]; fam {
	case 0:
		if a16 != ([16]byte{}) {
			return r, corruptf("record: address without a family")
		}
	case 4:
		a := netip.AddrFrom16(a16)
		if !a.Is4In6() {
			return r, corruptf("record: family 4 with a non-IPv4 address %s", a)
		}
		r.Addr = a.Unmap()
	case 6:
		a := netip.AddrFrom16(a16)
		if a.Is4In6() {
			return r, corruptf("record: family 6 with the IPv4-mapped address %s", a)
		}
		r.Addr = a
	default:
		return r, corruptf("record: family %d", fam)
	}
	if r.State == StateUsed && (!r.Addr.IsValid() || r.Role == 0) {
		return r, corruptf("record: used without an address or role")
	}
	r.Generation = le.Uint64(b[rGen:])
	r.SocketID = le.Uint64(b[rSocketID:])
	r.UID = le.Uint32(b[rUID:])
	r.PID = le.Uint32(b[rPID:])
	r.StartTime = le.Uint64(b[rStartTime:])
	r.Netns = le.Uint64(b[rNetns:])
	r.Claimed = int64(le.Uint64(b[rClaimed:]))
	r.Ticket = le.Uint64(b[rTicket:])
	r.Pending = flags&flagPending != 0
	switch {
	case r.Pending && r.State != StateUsed:
		return r, corruptf("record: pending but not used")
	case r.State == StateUsed && !r.Pending && r.Ticket == 0:
		return r, corruptf("record: a finished claim without a ticket")
	case r.State == StateFree && r.Ticket != 0:
		return r, corruptf("record: free with ticket %d", r.Ticket)
	}
	return r, nil
}

// Encode returns the RecordSize bytes of r (Slot is not stored), with its
// checksum. An Addr that is neither IPv4 nor IPv6 is stored as no address.
func (r Record) Encode() []byte {
	var b [RecordSize]byte
	r.encodeTo(&b)
	return b[:]
}

func (r *Record) encodeTo(b *[RecordSize]byte) {
	le := binary.LittleEndian
	le.PutUint32(b[rSeq:], r.Seq)
	b[rState] = byte(r.State)
	a := r.Addr.WithZone("")
	switch {
	case a.Is4():
		b[rFamily] = 4
	case a.Is4In6():
		b[rFamily] = 4
	case a.Is6():
		b[rFamily] = 6
	}
	if b[rFamily] != 0 {
		a16 := a.As16()
		copy(b[rAddr:], a16[:])
	}
	b[rRole] = byte(r.Role)
	var flags byte
	if r.DualStack {
		flags |= flagDualStack
	}
	if r.Share == Exclusive {
		flags |= flagExclusive
	}
	if r.Pending {
		flags |= flagPending
	}
	b[rFlags] = flags
	le.PutUint16(b[rPort:], r.Port)
	le.PutUint64(b[rGen:], r.Generation)
	le.PutUint64(b[rSocketID:], r.SocketID)
	le.PutUint32(b[rUID:], r.UID)
	le.PutUint32(b[rPID:], r.PID)
	le.PutUint64(b[rStartTime:], r.StartTime)
	le.PutUint64(b[rNetns:], r.Netns)
	le.PutUint64(b[rClaimed:], uint64(r.Claimed))
	le.PutUint64(b[rTicket:], r.Ticket)
	le.PutUint32(b[rCRC:], recordSum(b[:]))
}

// Decode decodes a whole registry file image: a header, exactly the
// header's count of records, then its index groups. Errors wrap ErrCorrupt
// or ErrVersion and name the first bad record or group. It never panics;
// an image it accepts encodes back to the same bytes with Encode.
func Decode(b []byte) (Header, []Record, []IndexGroup, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return h, nil, nil, err
	}
	if int64(len(b)) != h.FileSize() {
		return h, nil, nil, corruptf("size %d, a file of %d records has %d", len(b), h.Records, h.FileSize())
	}
	recs := make([]Record, h.Records)
	for i := range recs {
		off := HeaderSize + i*RecordSize
		r, err := DecodeRecord(b[off : off+RecordSize])
		if err != nil {
			return h, nil, nil, fmt.Errorf("slot %d: %w", i, err)
		}
		r.Slot = i
		recs[i] = r
	}
	idx := make([]IndexGroup, h.Groups)
	for g := range idx {
		off := indexOff(int(h.Records)) + g*IndexGroupSize
		grp, err := decodeGroup(b[off:off+IndexGroupSize], h)
		if err != nil {
			return h, nil, nil, fmt.Errorf("index group %d: %w", g, err)
		}
		idx[g] = grp
	}
	return h, recs, idx, nil
}

// Encode returns the file image of h, recs and idx (h is not changed; give
// it len(recs) records and IndexGroups(len(recs)) groups for a consistent
// image). Missing index groups are encoded empty.
func Encode(h Header, recs []Record, idx []IndexGroup) []byte {
	b := make([]byte, 0, HeaderSize+len(recs)*RecordSize+int(h.Groups)*IndexGroupSize)
	b = append(b, h.Encode()...)
	var rb [RecordSize]byte
	for i := range recs {
		rb = [RecordSize]byte{}
		recs[i].encodeTo(&rb)
		b = append(b, rb[:]...)
	}
	le := binary.LittleEndian
	for g := 0; g < int(h.Groups); g++ {
		var grp IndexGroup
		if g < len(idx) {
			grp = idx[g]
		}
		b = le.AppendUint64(b, uint64(grp.Version)<<32|uint64(grp.Reach))
		for _, e := range grp.Entries {
			b = le.AppendUint64(b, uint64(e))
		}
	}
	return b
}

// IndexGroup is one decoded group of the port index: IndexEntries entries
// and the reach of the claims whose port hashes to the group.
type IndexGroup struct {
	// Reach is how many groups past this one the entries of ports that
	// hash to it may lie: a lookup reads groups g..g+Reach (mod the group
	// count).
	Reach uint32
	// Version counts the changes of the reach word (every insertion of an
	// entry of the group's ports changes it), for lowering the reach safely.
	Version uint32
	Entries [IndexEntries]IndexEntry
}

// IndexEntry is one word of the port index: 0 (empty), or the slot, port
// and generation (its low 28 bits) of a claim. An entry may outlive its
// claim (its claimant died, or its record was reclaimed): it is dead when
// the slot no longer holds that claim, and whoever meets it removes it.
type IndexEntry uint64

// newEntry makes the entry of a claim of port in slot, of generation gen.
func newEntry(slot int, port uint16, gen uint64) IndexEntry {
	return IndexEntry(uint64(slot+1) | uint64(port)<<20 | (gen&genMask)<<36)
}

const genMask = 1<<28 - 1

// Slot returns the entry's slot (-1 for an empty entry).
func (e IndexEntry) Slot() int { return int(e&(1<<20-1)) - 1 }

// Port returns the entry's port.
func (e IndexEntry) Port() uint16 { return uint16(e >> 20) }

// Gen returns the low 28 bits of the entry's generation.
func (e IndexEntry) Gen() uint64 { return uint64(e >> 36) }

// matches reports whether the entry names the claim of rec.
func (e IndexEntry) matches(rec Record) bool {
	return rec.State == StateUsed && rec.Port == e.Port() && rec.Generation&genMask == e.Gen()
}

// portHome returns the group a port's entries start from, of groups (a
// power of two): a multiplicative hash, so that neighbouring ports (an
// ephemeral range) land in different groups.
func portHome(port uint16, groups int) int {
	return int((uint32(port) * 0x9E3779B1 >> 8) & uint32(groups-1))
}

func decodeGroup(b []byte, h Header) (IndexGroup, error) {
	var g IndexGroup
	le := binary.LittleEndian
	w := le.Uint64(b)
	g.Reach, g.Version = uint32(w), uint32(w>>32)
	if g.Reach >= h.Groups {
		return g, corruptf("reach %d, want below the %d groups", g.Reach, h.Groups)
	}
	for k := range g.Entries {
		e := IndexEntry(le.Uint64(b[8+8*k:]))
		if e != 0 && (e.Slot() < 0 || e.Slot() >= int(h.Records)) {
			return g, corruptf("entry %d: slot %d, want below %d", k, e.Slot(), h.Records)
		}
		g.Entries[k] = e
	}
	return g, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// zeroSum is the CRC32C of 120 zero bytes, the checksummed part of an
// all-zero record.
var zeroSum = crc32c(make([]byte, RecordSize-rState))

// recordSum returns the checksum a record's bytes [4, 8) hold: the CRC32C
// of bytes [8, 128) xor zeroSum, so that an all-zero record, which a new
// (sparse) file is made of, is a valid free record. The xor keeps the
// checksum affine in the bytes, which crcPatch relies on.
func recordSum(b []byte) uint32 { return crc32c(b[rState:RecordSize]) ^ zeroSum }

// The claim protocol rewrites a few bytes of a record at a time: its ticket,
// its pending flag, its state, its role. CRC32C is affine over GF(2): for
// messages of one length, crc(m xor d) = crc(m) xor crc(d) xor crc(0), and
// crc(d) xor crc(0) is the xor, over the bytes of d, of a function of each
// byte and its position alone. So the checksum of a record with some bytes
// changed follows from the old one and one table lookup per changed byte,
// where recomputing it reads all 120 bytes (about 1 µs where the CRC32
// instruction is emulated, as in a TCG guest).

// patchable lists the record offsets crcPatch has tables for.
var patchable = [...]int{rState, rRole, rFlags, rTicket, rTicket + 1, rTicket + 2, rTicket + 3, rTicket + 4, rTicket + 5, rTicket + 6, rTicket + 7}

var patchTabs struct {
	once sync.Once
	at   [RecordSize]int8 // index into tab, or -1
	tab  [len(patchable)][256]uint32
}

func initPatchTabs() {
	t := &patchTabs
	for i := range t.at {
		t.at[i] = -1
	}
	var zero, one [RecordSize - rState]byte
	c0 := crc32c(zero[:])
	for k, off := range patchable {
		t.at[off] = int8(k)
		var basis [8]uint32
		for bit := range basis {
			one[off-rState] = 1 << bit
			basis[bit] = crc32c(one[:]) ^ c0
		}
		one[off-rState] = 0
		for b := 1; b < 256; b++ {
			var v uint32
			for bit := range basis {
				if b&(1<<bit) != 0 {
					v ^= basis[bit]
				}
			}
			t.tab[k][b] = v
		}
	}
}

// crcPatch sets b[off] to v and updates the checksum in b[rCRC:] to match,
// without recomputing it; b must hold a record whose checksum is right.
// off must be one of patchable.
func crcPatch(b *[RecordSize]byte, off int, v byte) {
	patchTabs.once.Do(initPatchTabs)
	patchByte(b, off, v)
}

// patchByte is crcPatch once the tables are made.
func patchByte(b *[RecordSize]byte, off int, v byte) {
	d := b[off] ^ v
	if d == 0 {
		return
	}
	k := patchTabs.at[off]
	crc := binary.LittleEndian.Uint32(b[rCRC:]) ^ patchTabs.tab[k][d]
	binary.LittleEndian.PutUint32(b[rCRC:], crc)
	b[off] = v
}

// crcPatch64 is crcPatch for the 8 little-endian bytes at off.
func crcPatch64(b *[RecordSize]byte, off int, v uint64) {
	patchTabs.once.Do(initPatchTabs)
	for i := 0; i < 8; i++ {
		patchByte(b, off+i, byte(v>>(8*i)))
	}
}
