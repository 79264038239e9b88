package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

// errorJSON is the --json form of an error (the CLI contract's fields).
type errorJSON struct {
	Error   string `json:"error"`           // the spec name, "WSAENETDOWN"; "ERROR" for a non-spec error
	WSA     int    `json:"wsa"`             // the WSA code; 0 for a non-spec error
	Errno   string `json:"errno,omitempty"` // "ENETDOWN"
	Message string `json:"message"`
}

// report prints err as the CLI contract says and returns the exit status: 2
// for a spec error, 1 for anything else.
func report(err error, asJSON bool, stdout, stderr io.Writer) int {
	fmt.Fprintf(stderr, "rdmabind: %v\n", err)
	status := 1
	out := errorJSON{Error: "ERROR", Message: err.Error()}
	var we *wsa.Error
	var errno unix.Errno
	switch {
	case errors.As(err, &we):
		status = 2
		out.Error, out.WSA = we.Code.String(), int(we.Code)
		out.Errno = unix.ErrnoName(we.Errno())
	case errors.As(err, &errno):
		out.Errno = unix.ErrnoName(errno)
	}
	if asJSON {
		writeJSON(stdout, out)
	}
	return status
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--json" || a == "-json" || a == "--json=true" || a == "-json=true" {
			return true
		}
	}
	return false
}
