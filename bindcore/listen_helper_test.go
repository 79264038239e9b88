//go:build linux

package bindcore

import "github.com/rdmabind/rdmabind/internal/testutil"

// listenHelperEnv selects a helper mode of the listen device tests (see
// init): the test binary again, as a process with a listening socket.
const listenHelperEnv = "RDMABIND_LISTEN_HELPER"

// init runs before TestMain (main_test.go): a helper process of the listen
// tests does its work and exits.
func init() {
	testutil.DispatchHelper(listenHelperEnv, map[string]func() int{"rdma": rdmaListenerMain})
}
