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
// words, then the checksum, then makes the sequence even again; a reader
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
	w := atomic.LoadUint64(m.u64(hHighWater))
	hw := uint32(w)
	return hw, uint32(w>>32) == ^hw
}

// setHighWater stores the mark and its complement in one atomic store.
func (m mem) setHighWater(v uint32) {
	atomic.StoreUint64(m.u64(hHighWater), uint64(^v)<<32|uint64(v))
}

// load64 loads one aligned word.
func (m mem) load64(off int) uint64 { return atomic.LoadUint64(m.u64(off)) }

// seq returns the sequence of a slot.
func (m mem) seq(slot int) uint32 { return atomic.LoadUint32(m.u32(recOff(slot) + rSeq)) }

// readHeader copies the header.
func (m mem) readHeader(dst *[HeaderSize]byte) {
	for w := 0; w < HeaderSize; w += 8 {
		binary.LittleEndian.PutUint64(dst[w:], atomic.LoadUint64(m.u64(w)))
	}
}

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
// slot's only writer (see the locking protocol).
func (m mem) write(slot int, src *[RecordSize]byte) uint32 {
	off := recOff(slot)
	seqp := m.u32(off + rSeq)
	s := atomic.LoadUint32(seqp)
	s |= 1 // odd: a writer is inside. An odd s left by a dead writer stays odd.
	atomic.StoreUint32(seqp, s)
	for w := 8; w < RecordSize; w += 8 {
		atomic.StoreUint64(m.u64(off+w), binary.LittleEndian.Uint64(src[w:]))
	}
	atomic.StoreUint32(m.u32(off+rCRC), binary.LittleEndian.Uint32(src[rCRC:]))
	s++
	atomic.StoreUint32(seqp, s)
	return s
}
