//go:build !linux

package election

import "golang.org/x/sys/unix"

// Off Linux there is no accept4 and no election: accept4 fails with
// unix.EOPNOTSUPP. No Member gets that far (the registry does not open off
// Linux, registry.ErrNotSupported); these exist so that the package builds.

const utimeNow = 0

func accept4(fd int) (int, unix.Sockaddr, error) { return -1, nil, unix.EOPNOTSUPP }
