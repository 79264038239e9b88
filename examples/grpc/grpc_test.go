package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rdmabind/rdmabind/internal/testutil"
)

const helperEnv = "RDMABIND_GRPC_HELPER"

func TestMain(m *testing.M) {
	testutil.DispatchHelper(helperEnv, map[string]func() int{
		"serve": func() int {
			ln, err := listen(os.Getenv("RDMABIND_GRPC_ADDR"))
			if err != nil {
				fmt.Fprintf(os.Stderr, "grpc helper: %v\n", err)
				return 2
			}
			if p := os.Getenv("RDMABIND_GRPC_READY"); p != "" {
				os.WriteFile(p+".tmp", nil, 0o644)
				os.Rename(p+".tmp", p)
			}
			if err := newServer().Serve(ln); err != nil {
				fmt.Fprintf(os.Stderr, "grpc helper: %v\n", err)
				return 1
			}
			return 0
		},
	})
	os.Exit(m.Run())
}

// gRPC over rdmabind across two guests: a grpc.Server on rdmabind.Listen in
// guest 2; in guest 1 a client whose dialer is rdmabind's: 1,000 unary
// calls and one streaming call of 1,000 messages (1 B to 64 KiB), every
// answer checked.
func TestDeviceGRPC(t *testing.T) {
	testutil.SkipUnlessRDMA(t)
	testutil.SkipUnlessPeer(t)
	addr := net.JoinHostPort(testutil.PeerAddr(), "7700")
	ready := filepath.Join(testutil.PeerShared(t), fmt.Sprintf("grpc-%d.ready", time.Now().UnixNano()))
	testutil.StartPeer(t, helperEnv+"=serve", "RDMABIND_GRPC_ADDR="+addr, "RDMABIND_GRPC_READY="+ready)
	testutil.WaitFile(t, ready, 60*time.Second)
	if err := client(addr, 1000); err != nil {
		t.Fatal(err)
	}
}
