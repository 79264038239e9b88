package testutil

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Dialogue is the test's side of a helper process that answers commands
// line by line: the test writes a command to Stdin, and the goroutine
// reading the helper's stdout forwards every reply line to Replies (and
// closes it, and Exited, when the helper's stdout ends).
type Dialogue struct {
	T       testing.TB
	Name    string // names the helper in failures
	Stdin   io.WriteCloser
	Replies chan string
	Exited  chan struct{}
	Proc    *Proc
}

// StartDialogue starts cmd (from HelperCommand) as a helper that answers
// line by line (StartProc). Each line of its stdout goes to report first:
// a line report takes (true: an asynchronous report, such as an accept)
// goes no further; the others are replies. report may be nil, and runs on
// the reading goroutine.
func StartDialogue(t testing.TB, name string, cmd *exec.Cmd, report func(line string) bool) *Dialogue {
	t.Helper()
	p := StartProc(t, cmd)
	d := &Dialogue{T: t, Name: name, Stdin: p.Stdin, Replies: make(chan string, 64), Exited: make(chan struct{}), Proc: p}
	go func() {
		defer close(d.Exited)
		defer close(d.Replies)
		sc := bufio.NewScanner(p.Stdout)
		for sc.Scan() {
			if line := sc.Text(); report == nil || !report(line) {
				d.Replies <- line
			}
		}
	}()
	return d
}

// Stop ends the helper: it closes its stdin, gives it grace to exit on its
// own (until its stdout ends), kills it if it has not, and waits for it.
// Safe to call twice.
func (d *Dialogue) Stop(grace time.Duration) {
	d.Stdin.Close()
	if d.Proc.Cmd.ProcessState != nil {
		return
	}
	select {
	case <-d.Exited:
		d.Proc.Cmd.Wait()
	case <-time.After(grace):
		d.Proc.Kill()
	}
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
