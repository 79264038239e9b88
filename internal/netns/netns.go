package netns

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrNotSupported: network namespaces need Linux. Errors matching it match
// unix.EOPNOTSUPP too.
var ErrNotSupported = fmt.Errorf("network namespaces need Linux: %w", unix.EOPNOTSUPP)
