package rdmabind

import (
	"sync"

	"github.com/rdmabind/rdmabind/bindcore"
)

// shared is the process's Binder of the Listens and Dials that name none:
// opened at the first, with the default options, and kept for the life of
// the process (its registry handle and rdma_cm event channel serve every
// socket). An Open that fails is tried again at the next call.
var shared struct {
	mu sync.Mutex
	b  *bindcore.Binder
}

func sharedBinder() (*bindcore.Binder, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.b != nil {
		return shared.b, nil
	}
	b, err := bindcore.Open(bindcore.Options{})
	if err != nil {
		return nil, err
	}
	shared.b = b
	return b, nil
}

// binderOr is b, or the shared Binder.
func binderOr(b *bindcore.Binder) (*bindcore.Binder, error) {
	if b != nil {
		return b, nil
	}
	return sharedBinder()
}
