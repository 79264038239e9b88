package main

import (
	"flag"
	"fmt"
	"io"
)

// parse parses args with fs, allowing flags before, between and after the
// positional arguments ("resolve 10.0.0.1:1 --json"), and checks the count
// of positionals is in [min, max].
func parse(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || len(pos) > max {
		if min == max {
			return nil, fmt.Errorf("%s: want %d argument(s), got %d", fs.Name(), min, len(pos))
		}
		return nil, fmt.Errorf("%s: want %d to %d arguments, got %d", fs.Name(), min, max, len(pos))
	}
	return pos, nil
}
