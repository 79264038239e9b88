//go:build linux

package bindcore

import (
	"fmt"
	"os"
)

// listenHelperEnv selects a helper mode of the listen device tests (see
// init): the test binary again, as a process with a listening socket.
const listenHelperEnv = "RDMABIND_LISTEN_HELPER"

// init runs before TestMain (main_test.go): a helper process of the listen
// tests does its work and exits.
func init() {
	switch mode := os.Getenv(listenHelperEnv); mode {
	case "":
	case "rdma":
		os.Exit(rdmaListenerMain())
	default:
		fmt.Fprintf(os.Stderr, "unknown listen helper mode %q\n", mode)
		os.Exit(2)
	}
}
