package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/rdmabind/rdmabind/bindcore"
	"github.com/rdmabind/rdmabind/bindcore/wsa"
	"github.com/rdmabind/rdmabind/rdma"
)

func init() {
	commands["devices"] = command{"devices, ports, state, link layer, GID table, counters", runDevices}
}

func runDevices(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	root := fs.String("sysfs", "/", "read sysfs and /dev below this root")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	t, err := rdma.ReadTopology(*root)
	if err != nil {
		return bindcore.SpecError("devices", *root, err)
	}
	if len(t.Devices) == 0 && !t.RDMACM {
		return wsa.New(wsa.WSAENETDOWN, "devices", *root,
			"no RDMA subsystem: no device in /sys/class/infiniband and no /dev/infiniband/rdma_cm")
	}
	if err := (rdma.Sysfs{Root: *root}).AddCounters(t); err != nil {
		return bindcore.SpecError("devices", *root, err)
	}
	if *asJSON {
		return writeJSON(stdout, t)
	}
	if !t.RDMACM {
		fmt.Fprintln(stdout, "warning: /dev/infiniband/rdma_cm is absent: binds fail with WSAENETDOWN")
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, d := range t.Devices {
		for _, p := range d.Ports {
			fmt.Fprintf(tw, "%s\tport %d\t%s\t%s\t%s\tnode %s %s\n", d.Name, p.Number, p.State, p.PhysState, p.LinkLayer, d.NodeType, d.NodeGUID)
			for _, g := range p.GIDs {
				fmt.Fprintf(tw, "\tgid %d\t%s\t%s\t%s\t\n", g.Index, g.GID, g.Type, g.Netdev)
			}
			if c := p.Counters; c != nil && !c.Empty() {
				trouble := "none"
				if tr := c.Trouble(); len(tr) > 0 {
					trouble = strings.Join(tr, " ")
				}
				fmt.Fprintf(tw, "\tcounters\t%d packets\ttrouble: %s\n", c.Packets(), trouble)
			}
		}
	}
	return tw.Flush()
}
