// Command rdmabind binds sockets to RDMA devices with WSPBind's semantics and
// shows what it does: the devices, how an address resolves, binding and
// listening, the registry of bound ports, and how long binding takes.
//
// Usage:
//
//	rdmabind devices [--json]            devices, ports, state, link layer, GID table,
//	                                     counters (retransmits, out-of-sequence, CNPs...)
//	rdmabind doctor [--json] [ADDR]      checks the host: devices, ports, the GID of each
//	                                     address and why, memlock, rdma_cm, netns mode,
//	                                     copy-on-fork, BPF, the registry; says how to fix
//	rdmabind resolve ADDR:PORT [--json]  the device/port/GID a bind of it would use
//	rdmabind bind ADDR:PORT [--listen] [--backlog N] [--echo]
//	                                     binds (and listens), prints one JSON line when
//	                                     bound and one per event (listening, designated,
//	                                     accept, closed), holds until signalled; --echo
//	                                     accepts queue pairs (qp/) and echoes messages
//	rdmabind ls [--json]                 the registry: ports, owners, roles, listeners
//	rdmabind bench [--json|--benchstat] [--short] [--samples N] [--warmup N] [--count N]
//	               [--variants a,b] [--addr ADDR] [--plot FILE.svg]
//	               [--check DIR [--inject V=F]] [--record DIR]
//	                                     bind latency as distributions (p50 to max)
//	                                     next to each variant's floor, their ratios,
//	                                     a CDF plot, the ports' counter deltas; --count N
//	                                     repeats the run (benchstat lines per repetition);
//	                                     --check compares the ratios with bench/history
//	                                     (docs/bench.md)
//
// Errors print "rdmabind: WSAEADDRNOTAVAIL (10049): ..." on stderr, and with
// --json also an object {"error","wsa","errno","message"} on stdout. The exit
// status is 2 for a spec error (one with a WSA code), 1 for anything else.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

type command struct {
	summary string
	run     func(args []string, stdout io.Writer) error
}

var commands = map[string]command{}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 1
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "rdmabind: unknown command %q\n", args[0])
		usage(stderr)
		return 1
	}
	err := cmd.run(args[1:], stdout)
	if err == nil {
		return 0
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	return report(err, wantsJSON(args[1:]), stdout, stderr)
}

// exitStatus is returned by a command that has printed all it has to say
// and only sets the exit status (doctor, when a check failed).
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: rdmabind COMMAND [ARGS] [--json]")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}
