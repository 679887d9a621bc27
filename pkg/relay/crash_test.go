package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay/delivery"
)

// crashRelay is the built smgctl binary run as a relay subprocess, so
// that kill -9 hits a real process with real fsyncs.
type crashRelay struct {
	t      *testing.T
	bin    string
	args   []string
	listen string

	mu     sync.Mutex // cmd and exited change at every restart
	cmd    *exec.Cmd
	exited chan struct{}
	stderr *lockedWriter // all runs, in order
}

func (c *crashRelay) start() {
	c.t.Helper()
	cmd := exec.Command(c.bin, c.args...)
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	waitListening(c.t, c.listen, exited, c.stderr)
}

// kill9 sends SIGKILL to the current relay process (by PID) and waits
// until it is gone.
func (c *crashRelay) kill9() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// crashSubmitter is an SMTP client that records exactly which messages
// the relay acknowledged: a message counts only once the reply to its
// final "." is "250 2.0.0 Ok: queued as ID" (RFC 5321 §4.1.1.4 — the 250
// is the relay taking responsibility, given after its fsync). Every
// attempt, retries included, carries a new unique Message-ID, so a
// delivered copy names exactly one attempt.
type crashSubmitter struct {
	addr string
	next atomic.Int64 // last message number handed out

	mu    sync.Mutex
	acked map[string]string // Message-ID → queue ID from the 250
	tried int               // attempts whose outcome is unknown or failed
}

func (s *crashSubmitter) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked)
}

// session submits messages on one SMTP session until want are
// acknowledged in all, ctx ends, or the session breaks (the relay was
// killed): then it returns, and the caller opens a new one.
func (s *crashSubmitter) session(ctx context.Context, want int) error {
	c, err := net.DialTimeout("tcp4", s.addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	tp := textproto.NewConn(c)
	step := func(code int, format string, args ...any) (string, error) {
		c.SetDeadline(time.Now().Add(15 * time.Second))
		if format != "" {
			if err := tp.PrintfLine(format, args...); err != nil {
				return "", err
			}
		}
		_, msg, err := tp.ReadResponse(code)
		return msg, err
	}
	if _, err := step(220, ""); err != nil {
		return err
	}
	if _, err := step(250, "EHLO client.corp.test"); err != nil {
		return err
	}
	for ctx.Err() == nil && s.ackedCount() < want {
		n := s.next.Add(1)
		id := fmt.Sprintf("<crash-%d@corp.test>", n)
		s.mu.Lock()
		s.tried++
		s.mu.Unlock()
		if _, err := step(250, "MAIL FROM:<alice@corp.test>"); err != nil {
			return err
		}
		if _, err := step(250, "RCPT TO:<m%d@crash.test>", n); err != nil {
			return err
		}
		if _, err := step(354, "DATA"); err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		w := tp.DotWriter()
		fmt.Fprintf(w, "From: alice@corp.test\r\nTo: m%d@crash.test\r\nSubject: crash %d\r\nMessage-ID: %s\r\n\r\n", n, n, id)
		for range 8 {
			fmt.Fprintf(w, "%s\r\n", strings.Repeat("kill -9 proof ", 5))
		}
		if err := w.Close(); err != nil {
			return err
		}
		msg, err := step(250, "")
		if err != nil {
			return err
		}
		qid, ok := strings.CutPrefix(msg, "2.0.0 Ok: queued as ")
		if !ok {
			return fmt.Errorf("unexpected 250 text %q", msg)
		}
		s.mu.Lock()
		s.acked[id] = qid
		s.tried--
		s.mu.Unlock()
	}
	step(221, "QUIT")
	return nil
}

// maildirCount counts the files in a Postfix instance's maildir for
// domain, cheaply enough to poll.
func maildirCount(mx *testpeer.Postfix, domain string) int {
	n := 0
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(mx.Dir, "mail", domain, sub))
		n += len(ents)
	}
	return n
}

// TestCrashKill9 submits messages over concurrent SMTP sessions to an
// smgctl relay subprocess that delivers them with enforced TLS to a real
// Postfix MX, and kills the relay with SIGKILL three times — twice while
// submission is running, once after it, while the backlog is being
// delivered — restarting it on the same spool each time. Every message
// that got a 250 must arrive at the MX (matched by its unique
// Message-ID); duplicates are counted and may only come from deliveries
// in flight at a kill.
func TestCrashKill9(t *testing.T) {
	testpeer.RequirePostfix(t)
	const total, writers = 2000, 16 // the issue asks for 2,000
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, Domains: []string{"crash.test"}})

	bin := filepath.Join(t.TempDir(), "smgctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/smgctl/smgctl/cmd/smgctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	// Enforced: every delivery is a real TLS session judged by policy.
	if err := os.WriteFile(filepath.Join(dir, "policy.conf"), []byte("crash.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := closedPort(t)
	r := &crashRelay{t: t, bin: bin, listen: listen, stderr: &lockedWriter{w: &bytes.Buffer{}}, args: []string{"relay",
		"--listen", listen, "--hostname", "relay.corp.test", "--spool", filepath.Join(dir, "spool"),
		"--audit-log", filepath.Join(dir, "audit.log"), "--policy", filepath.Join(dir, "policy.conf"),
		"--route", "corp.test=" + closedPort(t),
		"--ca-file", mx.CA.CertFile(), "--log-level", "warn"}}
	direct := []string{"--route", "crash.test=" + mx.Addr()}
	// gated: the same MX behind a proxy that holds connections until it
	// is opened, so the last part of the queue builds up a backlog for
	// kill 3 to hit while it is being delivered.
	g := startGate(t, mx.Addr())
	gated := []string{"--route", "crash.test=" + g.ln.Addr().String()}
	base := r.args
	r.args = append(slices.Clip(base), direct...)
	// Runs after the writers stop and before the gate closes: whatever
	// happens, the relay process (by PID) is gone when the test ends.
	t.Cleanup(func() {
		r.kill9()
		if t.Failed() {
			t.Logf("relay stderr (all runs):\n%s", r.stderr.String())
		}
	})
	r.start()

	sub := &crashSubmitter{addr: listen, acked: map[string]string{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() }) // runs before the kill above
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for ctx.Err() == nil && sub.ackedCount() < total {
				if err := sub.session(ctx, total); err != nil {
					// Refused while the relay restarts, or cut by a kill.
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %d acknowledged, %d at the MX", what, sub.ackedCount(), maildirCount(mx, "crash.test"))
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	// before[k] is what the MX held when kill k hit (after the
	// transactions the kill cut mid-way had settled), so each duplicate
	// can be blamed on the kill whose restart sent it again.
	var kills []string
	var before []map[string]bool
	kill := func(when string) (atMX int) {
		t.Helper()
		r.kill9()
		time.Sleep(200 * time.Millisecond) // the MX finishes what it had
		seen := map[string]bool{}
		for _, m := range mx.Messages("crash.test") {
			seen[m.Header.Get("Message-ID")] = true
		}
		before = append(before, seen)
		kills = append(kills, fmt.Sprintf("%s (%d acknowledged, %d at the MX)", when, sub.ackedCount(), len(seen)))
		r.start()
		return len(seen)
	}

	// Kills 1 and 2: in the middle of submission, with deliveries running
	// alongside. The relay comes back from kill 2 behind the closed gate.
	for i, at := range []int{total / 4, total / 2} {
		waitFor(fmt.Sprintf("%d acknowledged", at), func() bool { return sub.ackedCount() >= at })
		if i == 1 {
			r.args = append(slices.Clip(base), gated...)
		}
		kill("during submission")
	}
	waitFor("submission to finish", func() bool { return sub.ackedCount() >= total })
	stop()
	wg.Wait()
	submitted := time.Since(start)
	acked := sub.ackedCount()

	// Kill 3: after submission, while the backlog is being delivered:
	// the gate opens, and the kill hits once 50 more messages arrived.
	atOpen := maildirCount(mx, "crash.test")
	if atOpen >= acked-100 {
		t.Fatalf("the MX held %d of %d messages with the gate closed; no backlog to kill", atOpen, acked)
	}
	g.release()
	waitFor("delivery to progress", func() bool { return maildirCount(mx, "crash.test") >= atOpen+50 })
	r.args = append(slices.Clip(base), direct...)
	if n := kill("during delivery"); n >= acked {
		t.Errorf("the MX held all %d messages at kill 3: it hit no delivery", n)
	}

	waitFor("every acknowledged message at the MX", func() bool { return maildirCount(mx, "crash.test") >= acked })
	var got map[string]int
	var missing []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = map[string]int{}
		for _, m := range mx.Messages("crash.test") {
			got[m.Header.Get("Message-ID")]++
		}
		missing = missing[:0]
		for id := range sub.acked {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	elapsed := time.Since(start)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged messages never reached the MX, e.g. %s (queue IDs %s)",
			len(missing), acked, missing[0], sub.acked[missing[0]])
	}

	duplicates, unacked := 0, 0
	perKill := make([]int, len(kills))
	for id, n := range got {
		if n > 1 {
			duplicates += n - 1
			for k := range before {
				if before[k][id] && (k == 0 || !before[k-1][id]) {
					perKill[k] += n - 1
				}
			}
		}
		if _, ok := sub.acked[id]; !ok {
			unacked++ // its 250 was cut off by a kill: delivered, never confirmed
		}
	}
	for k, what := range kills {
		t.Logf("kill -9 %s; restarted; %d sent again", what, perKill[k])
	}
	t.Logf("%d acknowledged over %d sessions in %v; all at the MX after %v", acked, writers,
		submitted.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	t.Logf("%d delivered without a 250 seen (of %d attempts cut off by kills); %d duplicate deliveries in all",
		unacked, sub.tried, duplicates)
	// A duplicate is a message the kill caught between the MX's 250 and
	// the relay's durable removal of it, which follows the audit log's
	// fsync of the delivery: at most the messages being worked on at
	// once (MaxMessages), per kill. The connection slot is released at
	// the MX's 250, so this is wider than the connections in flight.
	for k, n := range perKill {
		if n > delivery.DefaultMaxMessages {
			t.Errorf("kill %d: %d messages sent again, more than the %d the relay works on at once", k+1, n, delivery.DefaultMaxMessages)
		}
	}
	if unacked > sub.tried {
		t.Errorf("%d delivered messages were never submitted", unacked-sub.tried)
	}
}
