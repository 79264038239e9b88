package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/registry"
)

func init() {
	commands["ls"] = command{"the registry of this network namespace: ports, owners, roles", runLs}
}

// lsRecord is the --json form of one registry record.
type lsRecord struct {
	Addr    string `json:"addr"`
	Port    uint16 `json:"port"`
	Role    string `json:"role"`
	PID     uint32 `json:"pid"`
	UID     uint32 `json:"uid"`
	Socket  string `json:"socket"`
	Share   string `json:"share"`
	Claimed string `json:"claimed"`
}

type lsOutput struct {
	Registry string     `json:"registry"`
	Netns    uint64     `json:"netns"`
	Records  []lsRecord `json:"records"`
}

func runLs(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	regDir := fs.String("registry", os.Getenv("RDMABIND_REGISTRY_DIR"), "registry directory (default /dev/shm; env RDMABIND_REGISTRY_DIR)")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	reg, err := registry.Open(registry.Options{Dir: *regDir})
	if err != nil {
		return err
	}
	defer reg.Close()
	recs, err := reg.List()
	if err != nil {
		return err
	}
	out := lsOutput{Registry: reg.Path(), Netns: reg.Netns(), Records: []lsRecord{}}
	for _, r := range recs {
		out.Records = append(out.Records, lsRecord{
			Addr: r.Addr.String(), Port: r.Port, Role: r.Role.String(), PID: r.PID, UID: r.UID,
			Socket: fmt.Sprintf("%#x", r.SocketID), Share: r.Share.String(),
			Claimed: time.Unix(0, r.Claimed).UTC().Format(time.RFC3339Nano),
		})
	}
	if *asJSON {
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PORT\tADDRESS\tROLE\tPID\tUID\tSOCKET\n")
	for _, r := range out.Records {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", r.Port, r.Addr, r.Role, r.PID, r.UID, r.Socket)
	}
	return tw.Flush()
}
