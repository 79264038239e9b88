package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rdmabind/rdmabind/internal/doctor"
)

func init() {
	commands["doctor"] = command{"doctor [--json] [ADDR]: what keeps RDMA from working here, and how to fix it", runDoctor}
}

func runDoctor(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, `print {"checks":[{"name","ok","detail","fix"}]}`)
	root := fs.String("sysfs", "", "check the sysfs fixture below this root instead of this host (its addrs.txt, a healthy host's other facts)")
	pos, err := parse(fs, args, 0, 1)
	if err != nil {
		return err
	}
	var addr netip.Addr
	if len(pos) == 1 {
		if addr, err = netip.ParseAddr(pos[0]); err != nil {
			return fmt.Errorf("doctor: %q is not an IP address: %w", pos[0], err)
		}
	}
	var facts *doctor.Facts
	if *root != "" {
		facts = doctor.FixtureFacts(*root)
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		facts = doctor.LiveFacts(ctx)
	}
	rep := doctor.Run(facts, addr)
	if *asJSON {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else if err := writeDoctor(stdout, rep); err != nil {
		return err
	}
	if !rep.OK() {
		return exitStatus(1)
	}
	return nil
}

// writeDoctor prints one line per check, "ok" or "FAIL", and the fix under
// each failed one.
func writeDoctor(w io.Writer, rep *doctor.Report) error {
	for _, c := range rep.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %-22s %s\n", mark, c.Name, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(w, "     %-22s fix: %s\n", "", c.Fix)
		}
	}
	failed := rep.Failed()
	if len(failed) == 0 {
		_, err := fmt.Fprintf(w, "\nall %d checks passed\n", len(rep.Checks))
		return err
	}
	names := make([]string, len(failed))
	for i, c := range failed {
		names[i] = c.Name
	}
	_, err := fmt.Fprintf(w, "\n%d of %d checks failed: %s\n", len(failed), len(rep.Checks), strings.Join(names, ", "))
	return err
}
