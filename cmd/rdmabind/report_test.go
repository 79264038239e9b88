package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rdmabind/rdmabind/bindcore/wsa"
)

func TestReportSpecError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := fmt.Errorf("resolve: %w", wsa.New(wsa.WSAEADDRNOTAVAIL, "resolve", "10.0.0.9:5000", "10.0.0.9 is not an address of this host"))
	if st := report(err, true, &stdout, &stderr); st != 2 {
		t.Fatalf("exit status %d, want 2", st)
	}
	if !strings.HasPrefix(stderr.String(), "rdmabind: ") || !strings.Contains(stderr.String(), "WSAEADDRNOTAVAIL (10049)") {
		t.Fatalf("stderr %q", stderr.String())
	}
	var got errorJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	if got.Error != "WSAEADDRNOTAVAIL" || got.WSA != 10049 || got.Errno != "EADDRNOTAVAIL" || !strings.Contains(got.Message, "not an address of this host") {
		t.Fatalf("json %+v", got)
	}
}

func TestReportOtherError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := report(fmt.Errorf("open: %w", unix.EACCES), true, &stdout, &stderr); st != 1 {
		t.Fatalf("exit status %d, want 1", st)
	}
	var got errorJSON
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got.Error != "ERROR" || got.WSA != 0 || got.Errno != "EACCES" {
		t.Fatalf("json %q: %+v %v", stdout.String(), got, err)
	}
	stdout.Reset()
	if st := report(errors.New("x"), false, &stdout, &stderr); st != 1 || stdout.Len() != 0 {
		t.Fatalf("status %d, stdout %q: want 1 and nothing on stdout without --json", st, stdout.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
	j := fs.Bool("json", false, "")
	pos, err := parse(fs, []string{"10.0.0.1:1", "--json"}, 1, 1)
	if err != nil || !*j || len(pos) != 1 || pos[0] != "10.0.0.1:1" {
		t.Fatalf("pos %v json %v err %v", pos, *j, err)
	}
	fs = flag.NewFlagSet("resolve", flag.ContinueOnError)
	fs.Bool("json", false, "")
	if _, err := parse(fs, []string{"a", "b"}, 1, 1); err == nil {
		t.Fatal("two positionals accepted")
	}
	if _, err := parse(fs, []string{"--nope"}, 0, 1); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if st := run([]string{"frobnicate"}, &stdout, &stderr); st != 1 || !strings.Contains(stderr.String(), "unknown command") {
		t.Fatalf("status %d stderr %q", st, stderr.String())
	}
}
