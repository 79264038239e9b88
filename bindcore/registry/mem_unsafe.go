//go:build linux

package registry

import (
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// mem is the MAP_SHARED mapping of the registry file. Every access to it is
// an aligned 32- or 64-bit atomic load or store (the mapping is page aligned
// and every field an atomic touches is aligned to its size), so that
// processes reading and writing it concurrently stay within Go's memory
// model: all of them are sequentially consistent atomics.
//
// Records use a sequence lock. A writer makes the sequence odd, stores the
// words that change, then the checksum and the even sequence (word 0) in
// one store; a reader
// copies the record between two loads of the sequence and retries when they
// differ or are odd. Writers of one record never overlap: see the locking
// protocol in docs/registry.md.
type mem []byte

func (m mem) u32(off int) *uint32 {
	_ = m[off+3]
	return (*uint32)(unsafe.Pointer(&m[off]))
}

func (m mem) u64(off int) *uint64 {
	_ = m[off+7]
	return (*uint64)(unsafe.Pointer(&m[off]))
}

func recOff(slot int) int { return HeaderSize + slot*RecordSize }

// highWater returns the header's high-water mark, and false when the word
// holding it and its complement is damaged.
func (m mem) highWater() (uint32, bool) {
	return splitHighWater(m.highWaterWord())
}

// highWaterWord loads the word holding the mark and its complement.
func (m mem) highWaterWord() uint64 { return atomic.LoadUint64(m.u64(hHighWater)) }

func splitHighWater(w uint64) (uint32, bool) {
	hw := uint32(w)
	return hw, uint32(w>>32) == ^hw
}

// packHighWater makes the word holding the mark v and its complement.
func packHighWater(v uint32) uint64 { return uint64(^v)<<32 | uint64(v) }

// casHighWater replaces the word old by the mark v, if it still is old.
func (m mem) casHighWater(old uint64, v uint32) bool {
	return atomic.CompareAndSwapUint64(m.u64(hHighWater), old, packHighWater(v))
}

// raiseHighWater makes the mark at least n, unless it is damaged (scans then
// cover the whole table until it is repaired) or above count. It only ever
// raises the mark; lowering it takes the locks of the slots it gives up
// (see Registry.lowerHighWater).
func (m mem) raiseHighWater(n uint32, count int) {
	p := m.u64(hHighWater)
	for {
		w := atomic.LoadUint64(p)
		hw, ok := splitHighWater(w)
		if !ok || int(hw) > count || hw >= n {
			return
		}
		if atomic.CompareAndSwapUint64(p, w, packHighWater(n)) {
			return
		}
	}
}

// tickets loads the header's counter: the last ticket handed out.
func (m mem) tickets() uint64 { return atomic.LoadUint64(m.u64(hTickets)) }

// nextTicket hands out a claim ticket: the header's counter after an atomic
// increment. Tickets are never 0 and never handed out twice.
func (m mem) nextTicket() uint64 { return atomic.AddUint64(m.u64(hTickets), 1) }

// load64 loads one aligned word.
func (m mem) load64(off int) uint64 { return atomic.LoadUint64(m.u64(off)) }

// seq returns the sequence of a slot.
func (m mem) seq(slot int) uint32 { return atomic.LoadUint32(m.u32(recOff(slot) + rSeq)) }

// writeHeader stores a header; the caller holds the header lock of a file
// nobody else uses yet (initialization). The magic goes last.
func (m mem) writeHeader(src []byte) {
	for w := 8; w < HeaderSize; w += 8 {
		atomic.StoreUint64(m.u64(w), binary.LittleEndian.Uint64(src[w:]))
	}
	atomic.StoreUint64(m.u64(0), binary.LittleEndian.Uint64(src[0:]))
}

// snapshot copies a slot's record. It reports false when a writer was inside
// (an odd sequence, or one that changed under the copy) on every one of a
// few tries; the copy is then torn and must not be used.
func (m mem) snapshot(slot int, dst *[RecordSize]byte) bool {
	off := recOff(slot)
	seqp := m.u32(off + rSeq)
	for try := 0; try < 64; try++ {
		s1 := atomic.LoadUint32(seqp)
		if s1&1 == 0 {
			for w := 0; w < RecordSize; w += 8 {
				binary.LittleEndian.PutUint64(dst[w:], atomic.LoadUint64(m.u64(off+w)))
			}
			if atomic.LoadUint32(seqp) == s1 {
				// The copy's sequence is s1: word 0 was loaded between the two.
				return true
			}
		}
		if try%8 == 7 {
			runtime.Gosched()
		}
	}
	return false
}

// write stores src (whose bytes [4, 128) are the new record, checksum
// included) into slot and returns the new, even, sequence. The caller is the
// slot's only writer: it holds the slot's write lock (see the locking
// protocol).
func (m mem) write(slot int, src *[RecordSize]byte) uint32 {
	s, _ := m.begin(slot)
	return m.finish(slot, src, s)
}

// begin opens a write of slot: it makes the sequence odd (a writer is
// inside) and returns it, and whether it was odd already (a writer died
// inside the record). An odd sequence left by a dead writer stays odd.
func (m mem) begin(slot int) (uint32, bool) {
	seqp := m.u32(recOff(slot) + rSeq)
	old := atomic.LoadUint32(seqp)
	s := old | 1
	atomic.StoreUint32(seqp, s)
	return s, old&1 != 0
}

// looksFree reports whether a slot's record looked free at a glance (an
// even sequence and state free): a hint for the choice of a slot, which
// taking its lock then makes sure of.
func (m mem) looksFree(slot int) bool {
	off := recOff(slot)
	return atomic.LoadUint32(m.u32(off+rSeq))&1 == 0 && byte(atomic.LoadUint64(m.u64(off+8))) == byte(StateFree)
}

// freeHint loads the header's free-slot hint.
func (m mem) freeHint() uint32 { return atomic.LoadUint32(m.u32(hFreeHint)) }

// casFreeHint replaces the hint old by v, if it still is old.
func (m mem) casFreeHint(old, v uint32) {
	if old != v {
		atomic.CompareAndSwapUint32(m.u32(hFreeHint), old, v)
	}
}

// lowerFreeHint makes the hint at most v (a slot just freed).
func (m mem) lowerFreeHint(v uint32) {
	p := m.u32(hFreeHint)
	for {
		old := atomic.LoadUint32(p)
		if old <= v || atomic.CompareAndSwapUint32(p, old, v) {
			return
		}
	}
}

// finish completes the write begin opened (s is what it returned): it
// stores the words of src that differ from the slot's (only the writer
// changes them, so it may compare), then word 0, the checksum and the next,
// even, sequence together in one store. It returns the new sequence.
func (m mem) finish(slot int, src *[RecordSize]byte, s uint32) uint32 {
	off := recOff(slot)
	for w := 8; w < RecordSize; w += 8 {
		p := m.u64(off + w)
		if v := binary.LittleEndian.Uint64(src[w:]); atomic.LoadUint64(p) != v {
			atomic.StoreUint64(p, v)
		}
	}
	s++
	atomic.StoreUint64(m.u64(off), uint64(binary.LittleEndian.Uint32(src[rCRC:]))<<32|uint64(s))
	return s
}

// copyOwn copies the record of a slot whose write lock the caller holds
// (nobody else writes it, so no sequence check), with the sequence word
// made even (it may be odd: the caller's own open write, or a dead
// writer's), for DecodeRecord.
func (m mem) copyOwn(slot int, dst *[RecordSize]byte) {
	off := recOff(slot)
	for w := 0; w < RecordSize; w += 8 {
		binary.LittleEndian.PutUint64(dst[w:], atomic.LoadUint64(m.u64(off+w)))
	}
	dst[rSeq] &^= 1
}
