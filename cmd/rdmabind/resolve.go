package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/rdma"
)

func init() {
	commands["resolve"] = command{"the device/port/GID a bind of ADDR:PORT would use", runResolve}
}

// resolveOutput is the --json form of resolve.
type resolveOutput struct {
	Addr      string          `json:"addr"`
	Port      uint16          `json:"port"`
	Family    string          `json:"family"`
	Endpoints []rdma.Endpoint `json:"endpoints"`
}

func runResolve(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	sa, err := sockaddrArg(pos[0])
	if err != nil {
		return err
	}
	eps, err := bindcore.Resolve(sa.Addr)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, resolveOutput{sa.Addr.String(), sa.Port, sa.Family.String(), eps})
	}
	for _, ep := range eps {
		if ep.GIDIndex < 0 {
			fmt.Fprintf(stdout, "%s -> %s port %d (wildcard) netdev %s %s\n", sa, ep.Device, ep.Port, ep.Netdev, ep.LinkLayer)
			continue
		}
		fmt.Fprintf(stdout, "%s -> %s port %d gid %d %s (%s) netdev %s %s\n", sa, ep.Device, ep.Port, ep.GIDIndex, ep.GID, ep.GIDType, ep.Netdev, ep.LinkLayer)
	}
	return nil
}

// sockaddrArg turns "ADDR:PORT" into the sockaddr WSPBind would receive
// (AF_INET for an IPv4 address, AF_INET6 otherwise) and runs it through the
// codec, so the CLI validates exactly as Bind does.
func sockaddrArg(s string) (bindcore.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return bindcore.Sockaddr{}, fmt.Errorf("%q is not ADDR:PORT (10.77.0.1:5000 or [fd77::1]:5000): %w", s, err)
	}
	family := bindcore.AFInet6
	if ap.Addr().Is4() {
		family = bindcore.AFInet
	}
	sa, err := bindcore.SockaddrFromAddrPort(family, ap)
	if err != nil {
		return bindcore.Sockaddr{}, err
	}
	return bindcore.ParseSockaddr(family, sa.Encode())
}
