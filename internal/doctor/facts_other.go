//go:build !linux

package doctor

import (
	"context"
	"errors"
)

// errPlatform is the error of every live fact off Linux.
var errPlatform = errors.New("doctor: not supported: RDMA is Linux's here")

// LiveFacts off Linux returns facts whose every error is errPlatform.
func LiveFacts(ctx context.Context) *Facts {
	return &Facts{Root: "/", AddrsErr: errPlatform, MemlockErr: errPlatform, CapsErr: errPlatform,
		RDMACM: Node{Path: "/dev/infiniband/rdma_cm", Err: errPlatform}, SystemErr: errPlatform,
		NetnsErr: errPlatform, RegistryDirErr: errPlatform, RegistryFileErr: errPlatform}
}
