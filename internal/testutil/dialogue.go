package testutil

import (
	"io"
	"strings"
	"testing"
	"time"
)

// Dialogue is the test's side of a helper process that answers commands
// line by line: the test writes a command to Stdin, and the goroutine
// reading the helper's stdout forwards every reply line to Replies (and
// closes it when the helper exits).
type Dialogue struct {
	T       testing.TB
	Name    string // names the helper in failures
	Stdin   io.WriteCloser
	Replies chan string
}

// ReplyTimeout bounds the wait for one reply.
const ReplyTimeout = 20 * time.Second

// Reply waits for the next reply line, which must start with want, and
// returns it. It fails the test when the helper exits first, answers
// something else, or does not answer within ReplyTimeout.
func (d *Dialogue) Reply(want string) string {
	d.T.Helper()
	select {
	case r, ok := <-d.Replies:
		if !ok {
			d.T.Fatalf("%s exited, waiting for %q", d.Name, want)
		}
		if !strings.HasPrefix(r, want) {
			d.T.Fatalf("%s: %q, want %q", d.Name, r, want)
		}
		return r
	case <-time.After(ReplyTimeout):
		d.T.Fatalf("%s: no %q after %v", d.Name, want, ReplyTimeout)
	}
	return ""
}

// Do sends the command cmd and returns its reply, which must start with
// want (see Reply).
func (d *Dialogue) Do(cmd, want string) string {
	d.T.Helper()
	if _, err := io.WriteString(d.Stdin, cmd+"\n"); err != nil {
		d.T.Fatalf("%s: %s: %v", d.Name, cmd, err)
	}
	return d.Reply(want)
}
