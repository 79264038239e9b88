package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"text/tabwriter"
	"time"

	"github.com/rdmabind/rdmabind/bindcore/registry"
	"github.com/rdmabind/rdmabind/rdma"
)

func init() {
	commands["ls"] = command{"the registry of this network namespace: ports, owners, roles (bound, designated, standby, listening)", runLs}
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
	// Device is the RDMA device serving the address now ("*" for the
	// wildcard), or "none" when none does (the device went away: the
	// binding stays until its socket is closed, docs/lifecycle.md).
	Device string `json:"device"`
}

type lsOutput struct {
	Registry  string     `json:"registry"`
	Netns     uint64     `json:"netns"`
	Records   []lsRecord `json:"records"`
	Listeners []lsPort   `json:"listeners"`
}

// lsPort sums up the listening sockets of one address and port: the
// designated one receives the connection requests, the standby takes over
// when it goes, the others wait in line.
type lsPort struct {
	Addr       string    `json:"addr"`
	Port       uint16    `json:"port"`
	Designated *lsOwner  `json:"designated"` // null while there is none (a takeover in progress)
	Standby    *lsOwner  `json:"standby"`
	Listening  []lsOwner `json:"listening"`
	Bound      int       `json:"bound"` // sockets of the address and port that do not listen
}

type lsOwner struct {
	PID    uint32 `json:"pid"`
	Socket string `json:"socket"`
}

// listeners sums up recs by address and port, for the ports where a socket
// listens, in the order of recs.
func listeners(recs []registry.Record) []lsPort {
	var order []netip.AddrPort
	by := map[netip.AddrPort]*lsPort{}
	listens := map[netip.AddrPort]bool{}
	for _, r := range recs {
		ap := r.AddrPort()
		p := by[ap]
		if p == nil {
			p = &lsPort{Addr: r.Addr.String(), Port: r.Port, Listening: []lsOwner{}}
			by[ap] = p
			order = append(order, ap)
		}
		o := lsOwner{PID: r.PID, Socket: fmt.Sprintf("%#x", r.SocketID)}
		switch r.Role {
		case registry.RoleDesignated:
			p.Designated = &o
			listens[ap] = true
		case registry.RoleStandby:
			p.Standby = &o
			listens[ap] = true
		case registry.RoleListening:
			p.Listening = append(p.Listening, o)
			listens[ap] = true
		default:
			p.Bound++
		}
	}
	out := []lsPort{}
	for _, ap := range order {
		if listens[ap] {
			out = append(out, *by[ap])
		}
	}
	return out
}

func runLs(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	regDir := fs.String("registry", os.Getenv("RDMABIND_REGISTRY_DIR"), "registry directory (default: the user's own, /run/rdmabind for root; env RDMABIND_REGISTRY_DIR)")
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
	out := lsOutput{Registry: reg.Path(), Netns: reg.Netns(), Records: []lsRecord{}, Listeners: listeners(recs)}
	served := map[netip.Addr]string{}
	device := func(a netip.Addr) string {
		if a.IsUnspecified() {
			return "*"
		}
		if d, ok := served[a]; ok {
			return d
		}
		d := "none"
		if eps, err := rdma.Resolve(a); err == nil && len(eps) > 0 {
			d = eps[0].Device
		}
		served[a] = d
		return d
	}
	for _, r := range recs {
		out.Records = append(out.Records, lsRecord{
			Addr: r.Addr.String(), Port: r.Port, Role: r.Role.String(), PID: r.PID, UID: r.UID,
			Socket: fmt.Sprintf("%#x", r.SocketID), Share: r.Share.String(),
			Claimed: time.Unix(0, r.Claimed).UTC().Format(time.RFC3339Nano),
			Device:  device(r.Addr),
		})
	}
	if *asJSON {
		return writeJSON(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PORT\tADDRESS\tROLE\tPID\tUID\tSOCKET\tDEVICE\n")
	for _, r := range out.Records {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Port, r.Addr, r.Role, r.PID, r.UID, r.Socket, r.Device)
	}
	if len(out.Listeners) > 0 {
		fmt.Fprintf(tw, "\nLISTENING ON\tRECEIVES (DESIGNATED)\tSTANDBY\tIN LINE\tBOUND\n")
		owner := func(o *lsOwner) string {
			if o == nil {
				return "-"
			}
			return fmt.Sprintf("pid %d", o.PID)
		}
		for _, p := range out.Listeners {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\n", netip.AddrPortFrom(netip.MustParseAddr(p.Addr), p.Port),
				owner(p.Designated), owner(p.Standby), len(p.Listening), p.Bound)
		}
	}
	return tw.Flush()
}
