package doctor

import (
	"fmt"
	"strings"
)

// parseSystem parses the output of `rdma system` (iproute2): "netns shared
// copy-on-fork on"; older iproute2 prints no copy-on-fork.
func parseSystem(out string) (System, error) {
	var s System
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "netns":
			s.NetnsMode = f[i+1]
		case "copy-on-fork":
			s.CopyOnFork = f[i+1]
		}
	}
	if s.NetnsMode == "" {
		return s, fmt.Errorf("rdma system: %q: expected \"netns shared|exclusive ...\"", strings.TrimSpace(out))
	}
	return s, nil
}
