package smtpserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// waitMessages waits for the backend to hold n messages.
func waitMessages(t *testing.T, b *testBackend, n int, timeout time.Duration) []message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := b.messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages after %v, want %d", len(b.messages()), timeout, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSwaks: swaks as the client, in clear with PIPELINING, and with
// STARTTLS and AUTH.
func TestSwaks(t *testing.T) {
	ts := startServer(t, Config{}, &testBackend{auth: true})
	base := []string{"--server", ts.addr, "--from", "a@example.com", "--to", "b@example.org", "--helo", "swaks.test",
		"--header", "Subject: swaks", "--body", "hello\n.leading dot\n"}
	out, code := testpeer.Swaks(t, append(base, "--pipeline")...)
	if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued as 1") {
		t.Fatalf("swaks --pipeline: exit %d\n%s", code, out)
	}
	out, code = testpeer.Swaks(t, append(base, "--tls", "--auth", "PLAIN", "--auth-user", "user", "--auth-password", "secret")...)
	if code != 0 || !strings.Contains(out, "235 2.7.0") || !strings.Contains(out, "queued as 2") {
		t.Fatalf("swaks --tls --auth: exit %d\n%s", code, out)
	}
	out, code = testpeer.Swaks(t, append(base, "--tls", "--auth", "LOGIN", "--auth-user", "user", "--auth-password", "wrong")...)
	if code == 0 || !strings.Contains(out, "535 5.7.8") {
		t.Fatalf("swaks wrong password: exit %d\n%s", code, out)
	}
	m := ts.backend.messages()
	if len(m) != 2 || m[0].tls || !m[1].tls || m[1].hello.Name != "swaks.test" {
		t.Fatalf("messages %+v", m)
	}
	for _, msg := range m {
		if !strings.Contains(string(msg.body), "\r\nhello\r\n.leading dot\r\n") {
			t.Errorf("body %q", msg.body)
		}
	}
}

// TestPostfixUpstream: a real Postfix relays to the server (relayhost),
// with STARTTLS, PIPELINING and the DSN parameters its client passes on
// (RFC 3461 §4, §6.2): they arrive decoded at the session.
func TestPostfixUpstream(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{RelayHost: ts.addr})
	c := &rawClient{t: t}
	nc := dialAddr(t, pf.Addr())
	c.nc, c.br = nc, newReader(nc)
	c.expect("220 ")
	c.send("EHLO client.test\r\n")
	c.expect("250 ")
	c.send("MAIL FROM:<sender@company.test> RET=HDRS ENVID=env+2Bid-1\r\n")
	c.expect("250 ")
	c.send("RCPT TO:<partner@partner.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Partner+2Bx@partner.example\r\n")
	c.expect("250 ")
	c.send("RCPT TO:<quiet@partner.example> NOTIFY=NEVER\r\n")
	c.expect("250 ")
	c.send("DATA\r\n")
	c.expect("354 ")
	c.send("Subject: via postfix\r\n\r\n..line\r\n.\r\n")
	c.expect("250 ")
	c.send("QUIT\r\n")
	m := waitMessages(t, ts.backend, 1, 30*time.Second)[0]
	got := fmt.Sprintf("tls=%v ret=%s envid=%s rcpts=%v params=%v", m.tls, m.mail.Ret, m.mail.EnvID, m.rcpts, m.rps)
	want := fmt.Sprintf("tls=true ret=HDRS envid=env+id-1 rcpts=%v params=%v",
		[]Path{mbox("partner", "partner.example"), mbox("quiet", "partner.example")},
		[]RcptParams{{Notify: NotifySuccess | NotifyFailure, ORcpt: ORcpt{"rfc822", "Partner+x@partner.example"}}, {Notify: NotifyNever, ORcpt: ORcpt{"rfc822", "quiet@partner.example"}}})
	// Postfix adds an ORCPT where the client gave none (RFC 3461 §4.2).
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if !strings.Contains(string(m.body), "\r\n.line\r\n") {
		t.Errorf("body %q", m.body)
	}
}
