package registry

import "golang.org/x/sys/unix"

// Every lock of the registry is an open file description lock, taken,
// dropped, probed and waited for through internal/ofdlock: owned by the
// open file description, not by the process, so two open(2)s of the file
// in one process conflict with each other like two processes do, and a lock
// goes away exactly when the last fd of its description is closed (or its
// process dies). That makes a lock a claim's liveness: one open(2) per
// claim. Which bytes each lock covers: docs/registry.md, "Lock map".

// isBusy reports whether a lock request failed on a conflicting lock
// (ofdlock.Set returns the bare errno).
func isBusy(err error) bool { return err == unix.EAGAIN }

// Lock ranges: the registry lock is the header's byte range, a slot's lock
// its record's byte range.
func slotRange(slot int) (int64, int64) { return int64(recOff(slot)), RecordSize }
