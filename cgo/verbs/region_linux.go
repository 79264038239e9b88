package verbs

import "golang.org/x/sys/unix"

// mmapFlags maps a Region private, anonymous and populated (MAP_POPULATE),
// so that registering it does not fault every page in.
const mmapFlags = unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
