package verbs

import "golang.org/x/sys/unix"

// mmapFlags maps a Region private, anonymous and populated (MAP_POPULATE),
// so that registering it does not fault every page in.
const mmapFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE

// reserveFlags maps a reserved Region (ReserveRegion): nothing populated.
const reserveFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_NORESERVE

// populate faults b's pages in at once (MADV_POPULATE_WRITE, Linux 5.14),
// before registration pins them, or page by page where the kernel lacks it.
func populate(b []byte) {
	if unix.Madvise(b, unix.MADV_POPULATE_WRITE) == nil {
		return
	}
	touch(b)
}

// noHugePages keeps transparent huge pages out of a reserved region: one
// registered page would otherwise fault in (and pin) 2 MiB.
func noHugePages(b []byte) { _ = unix.Madvise(b, unix.MADV_NOHUGEPAGE) }
