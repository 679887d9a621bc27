package inbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

const simpleMsg = "From: alice@example.com\r\nTo: bob@partner.test\r\nSubject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\nHi Bob.\r\n"

// transaction runs MAIL, RCPT..., DATA with body (dot-stuffing is the
// caller's business) and returns the final reply.
func (c *client) transaction(from string, rcpts []string, body string) string {
	c.t.Helper()
	c.expect("MAIL FROM:<"+from+">", "250 ")
	for _, r := range rcpts {
		c.expect("RCPT TO:<"+r+">", "250 ")
	}
	c.expect("DATA", "354 ")
	c.send(body + ".\r\n")
	return c.reply()
}

func TestEHLOAdvertises(t *testing.T) {
	r := startRelay(t, Config{Auth: func(context.Context, string, string) bool { return true }, MaxMessageBytes: 12345})
	c := r.dial()
	ehlo := c.hello()
	for _, ext := range []string{"PIPELINING", "SIZE 12345", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS", "DSN", "CHUNKING"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO lacks %s:\n%s", ext, ehlo)
		}
	}
	// RFC 4954 §4 / RFC 3207: no AUTH before TLS, and it is refused.
	if strings.Contains(ehlo, "AUTH") {
		t.Errorf("AUTH offered in clear text:\n%s", ehlo)
	}
	c.expect("AUTH PLAIN AHVzZXIAcGFzcw==", "530 5.7.0 Must issue a STARTTLS command first")
	c.startTLS(r.ca)
	ehlo = c.expect("EHLO client.test", "250")
	if !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
		t.Errorf("AUTH not offered after STARTTLS:\n%s", ehlo)
	}
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("STARTTLS offered again inside TLS:\n%s", ehlo)
	}
}

// TestQueuedMessage sends one message and checks everything the spool
// holds: the 250 names a committed ID whose envelope and body are right.
func TestQueuedMessage(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.hello()
	id := queuedID(t, c.transaction("alice@example.com", []string{"bob@partner.test"}, simpleMsg))
	c.expect("QUIT", "221 ")

	if got := r.queued(); !slices.Equal(got, []string{id}) {
		t.Fatalf("spool holds %v, 250 named %s", got, id)
	}
	env, body := r.message(id)
	if env.From != "alice@example.com" || len(env.Recipients) != 1 || env.Recipients[0].Address != "bob@partner.test" ||
		env.Recipients[0].State != spool.Pending || env.MessageID != "<m1@example.com>" ||
		env.ClientAddr != "127.0.0.1" || env.ClientHelo != "client.test" || env.SMTPUTF8 || env.Body8Bit {
		t.Errorf("envelope: %+v", env)
	}
	if env.Size != int64(len(body)) {
		t.Errorf("envelope size %d, body %d", env.Size, len(body))
	}
	hdr, rest, ok := strings.Cut(body, "\r\nFrom: alice")
	if !ok || "From: alice"+rest != simpleMsg {
		t.Fatalf("body is not Received + the message:\n%q", body)
	}
	wantHdr := "Received: from client.test ([127.0.0.1])\r\n\tby relay.test (smgctl) with ESMTP id " + id +
		"\r\n\tfor <bob@partner.test>; "
	if !strings.HasPrefix(hdr, wantHdr) || !strings.HasSuffix(hdr, "+0000 (UTC)") {
		t.Errorf("Received header:\n%s\nwant prefix:\n%s", hdr, wantHdr)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Equal(r.notified, []string{id}) {
		t.Errorf("Notify got %v, want [%s]", r.notified, id)
	}
}

// TestSwaks drives the server with a real client, in clear and with
// STARTTLS, and checks the Received header records the TLS details.
func TestSwaks(t *testing.T) {
	testpeer.RequireSwaks(t)
	r := startRelay(t, Config{})
	host, port, _ := strings.Cut(r.addr, ":")
	_ = host
	tests := []struct {
		name    string
		args    []string
		wantHdr string
	}{
		{"clear", nil, "with ESMTP id"},
		{"starttls", []string{"--tls"}, "(using TLSv1.3 with cipher TLS_"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := r.queued()
			args := append([]string{"--server", "127.0.0.1", "--port", port, "--helo", "swaks.test",
				"--from", "alice@example.com", "--to", "bob@partner.test,carol@bank.test"}, tc.args...)
			out, code := testpeer.Swaks(t, args...)
			if code != 0 {
				t.Fatalf("swaks exit %d:\n%s", code, out)
			}
			after := r.queued()
			if len(after) != len(before)+1 {
				t.Fatalf("spool: %v → %v", before, after)
			}
			id := after[len(after)-1]
			if !strings.Contains(out, "250 2.0.0 Ok: queued as "+id) {
				t.Errorf("swaks did not see the queue ID %s:\n%s", id, out)
			}
			env, body := r.message(id)
			if len(env.Recipients) != 2 || env.ClientHelo != "swaks.test" {
				t.Errorf("envelope %+v", env)
			}
			if env.MessageID == "" || !strings.Contains(body, "\r\nMessage-Id: "+env.MessageID+"\r\n") {
				t.Errorf("envelope Message-ID %q is not the message's:\n%s", env.MessageID, body)
			}
			if !strings.Contains(body, tc.wantHdr) {
				t.Errorf("Received header lacks %q:\n%s", tc.wantHdr, body[:strings.Index(body, "\r\n\r\n")])
			}
			if tc.name == "starttls" {
				if !strings.Contains(body, "(256/256 bits))") && !strings.Contains(body, "(128/128 bits))") {
					t.Errorf("no cipher bits in:\n%s", body)
				}
				if !strings.Contains(body, "with ESMTPS id") {
					t.Errorf("protocol not ESMTPS:\n%s", body)
				}
			}
			if strings.Contains(body, "\tfor <") {
				t.Errorf("two recipients named in Received:\n%s", body)
			}
		})
	}
}

// TestRelayAccess: clients outside Allow may not relay unless they
// authenticated over TLS; never an open relay.
func TestRelayAccess(t *testing.T) {
	users := map[string]string{"alice": "s3cret"}
	r := startRelay(t, Config{
		Allow: []netip.Prefix{mustPrefix("127.0.0.2/32")},
		Auth: func(_ context.Context, u, p string) bool {
			want, ok := users[u]
			return ok && p == want
		},
	})

	t.Run("outside allow", func(t *testing.T) {
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.expect("MAIL FROM:<x@example.com>", "250 ")
		c.expect("RCPT TO:<bob@partner.test>", "554 5.7.1 Relay access denied")
		c.expect("RCPT TO:<postmaster@relay.test>", "554 5.7.1 Relay access denied")
		c.expect("DATA", "503 5.5.1 Error: need RCPT command")
	})
	t.Run("inside allow", func(t *testing.T) {
		c := r.dialFrom("127.0.0.2")
		c.hello()
		queuedID(t, c.transaction("x@example.com", []string{"bob@partner.test"}, simpleMsg))
	})
	t.Run("wrong password", func(t *testing.T) {
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.startTLS(r.ca)
		c.expect("EHLO client.test", "250")
		c.expect("AUTH PLAIN AGFsaWNlAHdyb25n", "535 5.7.8") // \0alice\0wrong
		c.expect("MAIL FROM:<x@example.com>", "250 ")
		c.expect("RCPT TO:<bob@partner.test>", "554 5.7.1")
	})
	t.Run("authzid other than user", func(t *testing.T) {
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.startTLS(r.ca)
		c.expect("EHLO client.test", "250")
		c.expect("AUTH PLAIN Ym9zcwBhbGljZQBzM2NyZXQ=", "535 5.7.8") // boss\0alice\0s3cret
	})
	t.Run("AUTH PLAIN after TLS", func(t *testing.T) {
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.startTLS(r.ca)
		c.expect("EHLO client.test", "250")
		c.expect("AUTH PLAIN AGFsaWNlAHMzY3JldA==", "235 2.7.0") // \0alice\0s3cret
		id := queuedID(t, c.transaction("alice@example.com", []string{"bob@partner.test"}, simpleMsg))
		_, body := r.message(id)
		if !strings.Contains(body, "with ESMTPSA id "+id) {
			t.Errorf("Received does not say ESMTPSA:\n%s", body)
		}
	})
	t.Run("AUTH LOGIN after TLS", func(t *testing.T) {
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.startTLS(r.ca)
		c.expect("EHLO client.test", "250")
		c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
		c.expect("YWxpY2U=", "334 UGFzc3dvcmQ6")
		c.expect("czNjcmV0", "235 2.7.0")
		queuedID(t, c.transaction("alice@example.com", []string{"bob@partner.test"}, simpleMsg))
	})
	t.Run("STARTTLS forgets AUTH", func(t *testing.T) {
		// Authenticated in clear is impossible; but a session's AUTH must
		// not survive into another: a fresh connection is unauthenticated.
		c := r.dialFrom("127.0.0.1")
		c.hello()
		c.startTLS(r.ca)
		c.expect("EHLO client.test", "250")
		c.expect("MAIL FROM:<x@example.com>", "250 ")
		c.expect("RCPT TO:<bob@partner.test>", "554 5.7.1")
	})
	t.Run("swaks --tls --auth", func(t *testing.T) {
		testpeer.RequireSwaks(t)
		_, port, _ := strings.Cut(r.addr, ":")
		out, code := testpeer.Swaks(t, "--server", "127.0.0.1", "--port", port, "--tls",
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret",
			"--from", "alice@example.com", "--to", "bob@partner.test")
		if code != 0 || !strings.Contains(out, "Ok: queued as") {
			t.Errorf("swaks exit %d:\n%s", code, out)
		}
		out, code = testpeer.Swaks(t, "--server", "127.0.0.1", "--port", port,
			"--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret",
			"--from", "alice@example.com", "--to", "bob@partner.test")
		if code == 0 {
			t.Errorf("swaks authenticated without TLS:\n%s", out)
		}
	})
}

func TestRecipientRules(t *testing.T) {
	r := startRelay(t, Config{MaxRecipients: 3})
	c := r.dial()
	c.hello()
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<postmaster>", "550 5.1.1") // the relay has no local mailboxes
	for i := range 2 {
		c.expect(fmt.Sprintf("RCPT TO:<r%d@partner.test>", i), "250 ")
	}
	// The same mailbox again: accepted, stored once (it counts towards
	// the limit, as smtpserver counts every accepted RCPT).
	c.expect("RCPT TO:<r0@PARTNER.test>", "250 ")
	c.expect("RCPT TO:<r3@partner.test>", "452 4.5.3 Error: too many recipients")
	c.expect("DATA", "354 ")
	c.send(simpleMsg + ".\r\n")
	id := queuedID(t, c.reply())
	env, _ := r.message(id)
	if len(env.Recipients) != 2 {
		t.Errorf("%d recipients stored, want 2: %+v", len(env.Recipients), env.Recipients)
	}
	c.expect("MAIL FROM:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<ü@partner.test>", "553 5.6.7")
	c.expect("RSET", "250 ")
	c.expect("MAIL FROM:<ålice@example.com> SMTPUTF8", "250 ")
	c.expect("RCPT TO:<ü@partner.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send("Subject: 8 bit: \xc3\xa4\r\n\r\nbody\r\n.\r\n")
	id = queuedID(t, c.reply())
	env, body := r.message(id)
	if !env.SMTPUTF8 || !env.Body8Bit || env.From != "ålice@example.com" {
		t.Errorf("UTF-8 envelope: %+v", env)
	}
	if !strings.Contains(body, "with UTF8SMTP id") {
		t.Errorf("protocol not UTF8SMTP:\n%s", body)
	}
}

func TestSizeLimit(t *testing.T) {
	r := startRelay(t, Config{MaxMessageBytes: 1024})
	c := r.dial()
	c.hello()
	c.expect("MAIL FROM:<a@example.com> SIZE=2000", "552 5.3.4")
	c.expect("MAIL FROM:<a@example.com>", "250 ")
	c.expect("RCPT TO:<b@partner.test>", "250 ")
	c.expect("DATA", "354 ")
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 98)+"\r\n", 30)
	c.send(big + ".\r\n")
	c.expect("", "552 5.3.4")
	if q := r.queued(); len(q) != 0 {
		t.Fatalf("oversize message queued: %v", q)
	}
	if n, _ := os.ReadDir(filepath.Join(r.spool.Dir(), "tmp")); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
	// The session is still in step: a small message goes through.
	queuedID(t, c.transaction("a@example.com", []string{"b@partner.test"}, simpleMsg))
}

func TestLineLength(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.hello()
	exact := "Subject: x\r\n\r\n" + strings.Repeat("y", 998) + "\r\n"
	queuedID(t, c.transaction("a@example.com", []string{"b@partner.test"}, exact))
	long := "Subject: x\r\n\r\n" + strings.Repeat("y", 999) + "\r\nnext\r\n"
	got := c.transaction("a@example.com", []string{"b@partner.test"}, long)
	if !strings.HasPrefix(got, "500 5.5.2 Error: line too long: a text line is at most 1000 octets") {
		t.Errorf("1001-octet line: %q", got)
	}
	if len(r.queued()) != 1 {
		t.Errorf("spool: %v", r.queued())
	}
	// Still in step after the refusal.
	queuedID(t, c.transaction("a@example.com", []string{"b@partner.test"}, simpleMsg))
	// A command line beyond any limit is read to its end and refused;
	// the session stays in step.
	c.send("NOOP " + strings.Repeat("z", 20000) + "\r\n")
	if got := c.reply(); got != "500 5.5.2 Error: line too long" {
		t.Errorf("overlong command: %q", got)
	}
	c.expect("NOOP", "250 ")
}

// TestSmuggling sends the SMTP smuggling payloads: each hides a second
// transaction behind a line end that some server might take for the end
// of DATA. Nothing may be queued, neither the carrier nor the smuggled
// message, and the carrier gets 550 5.5.2.
func TestSmuggling(t *testing.T) {
	smuggled := "MAIL FROM:<ceo@example.com>\r\nRCPT TO:<victim@partner.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nPay now.\r\n"
	ends := map[string]string{
		`\n.\n`:       "\n.\n",
		`\n.\r\n`:     "\n.\r\n",
		`\r.\r`:       "\r.\r",
		`\r.\r\n`:     "\r.\r\n",
		`\r\n.\n`:     "\r\n.\n",
		`\r\n.\r`:     "\r\n.\r",
		`\r\n.\rX`:    "\r\n.\rX",
		`\r\n.\r\r\n`: "\r\n.\r\r\n",
		`\n.\r`:       "\n.\r",
		`\r\n\n.\r\n`: "\r\n\n.\r\n",
		`bare LF`:     "\nline\n",
		`bare CR`:     "\rline\r\n",
	}
	for name, end := range ends {
		for _, tlsOn := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s tls=%v", name, tlsOn), func(t *testing.T) {
				r := startRelay(t, Config{})
				c := r.dial()
				c.hello()
				if tlsOn {
					c.startTLS(r.ca)
					c.expect("EHLO client.test", "250")
				}
				c.expect("MAIL FROM:<alice@example.com>", "250 ")
				c.expect("RCPT TO:<bob@partner.test>", "250 ")
				c.expect("DATA", "354 ")
				c.send("Subject: carrier\r\n\r\ntext" + end + smuggled + "\r\n.\r\n")
				var replies []string
				c.send("NOOP\r\n")
				for {
					got := c.reply()
					replies = append(replies, got)
					if got == "250 2.0.0 Ok" || got == "EOF" {
						break
					}
				}
				if !strings.HasPrefix(replies[0], "550 5.5.2") {
					t.Errorf("carrier got %q, want 550 5.5.2; all replies: %q", replies[0], replies)
				}
				for _, rp := range replies {
					if strings.Contains(rp, "queued as") {
						t.Errorf("something was queued: %q", replies)
					}
				}
				if q := r.queued(); len(q) != 0 {
					t.Errorf("spool holds %v", q)
				}
				// The end of data cannot be found any more: the
				// connection is closed after the 550 (smtpserver).
				if replies[len(replies)-1] != "EOF" {
					t.Errorf("connection not closed after a bare line end: %q", replies)
				}
			})
		}
	}
}

// TestBareLFInCommand: a bare LF is no line end (RFC 5321 §2.3.8); where
// the client meant its command to end cannot be known, so it is answered
// and the connection closed.
func TestBareLFInCommand(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.expect("", "220 ")
	c.send("EHLO client.test\nMAIL FROM:<a@example.com>\r\n")
	c.expect("", "500 5.5.2 Error: bare <CR> or <LF> received")
	if got := c.reply(); got != "EOF" {
		t.Errorf("after a bare LF: %q", got)
	}
}

// TestPipelinedGarbage: a pipelined group whose RCPT fails must not turn
// the message text into commands that queue anything.
func TestPipelinedGarbage(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.hello()
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<nodomain>\r\nDATA\r\n" +
		"MAIL FROM:<evil@example.com>\r\nRCPT TO:<x@partner.test>\r\nDATA\r\nSubject: evil\r\n\r\nx\r\n.\r\n" +
		"\x00\xff garbage\r\nQUIT\r\n")
	var replies []string
	for {
		got := c.reply()
		if got == "EOF" {
			break
		}
		replies = append(replies, got)
	}
	// RCPT fails, so DATA has no recipient, and the transaction of the
	// first MAIL is still open (RFC 5321 §4.1.4: a 503 changes no
	// state): the second MAIL is nested, its RCPT and DATA belong to
	// the first one. No octet of the body is read as a command.
	want := []string{"250 ", "501 5.1.3", "503 5.5.1 Error: need RCPT", "503 5.5.1 Error: nested MAIL", "250 ", "354 ",
		"250 2.0.0 Ok: queued as ", "500 5.5.2 Error: NUL character in command", "221 "}
	if len(replies) < len(want) {
		t.Fatalf("replies %q", replies)
	}
	for i, w := range want {
		if !strings.HasPrefix(replies[i], w) {
			t.Fatalf("reply %d = %q, want %q; all: %q", i, replies[i], w, replies)
		}
	}
	// One message is queued, and it carries exactly what was sent for it.
	q := r.queued()
	if len(q) != 1 {
		t.Fatalf("queued %v", q)
	}
	env, body := r.message(q[0])
	if env.From != "a@example.com" || len(env.Recipients) != 1 || env.Recipients[0].Address != "x@partner.test" || !strings.HasSuffix(body, "Subject: evil\r\n\r\nx\r\n") {
		t.Errorf("queued %+v %q", env, body)
	}
}

// failingQueue returns a fixed error from Put after reading the body.
type failingQueue struct{ err error }

func (f failingQueue) NewID() string { return "FAILQUEUE" }
func (f failingQueue) Put(_ *spool.Envelope, body io.Reader) error {
	io.Copy(io.Discard, body)
	return f.err
}

func TestSpoolErrors(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: %w", spool.ErrNoSpace, syscall.ENOSPC), "452 4.3.1 Insufficient system storage"},
		{errors.New("EIO"), "452 4.3.1 Local error"},
	}
	for _, tc := range tests {
		r := startRelay(t, Config{Queue: failingQueue{tc.err}})
		c := r.dial()
		c.hello()
		if got := c.transaction("a@example.com", []string{"b@partner.test"}, simpleMsg); !strings.HasPrefix(got, tc.want) {
			t.Errorf("Put error %v: reply %q, want %q", tc.err, got, tc.want)
		}
		r.mu.Lock()
		if len(r.notified) != 0 {
			t.Errorf("Notify called for a message not queued: %v", r.notified)
		}
		r.mu.Unlock()
	}
}

// TestSpoolFull fills a real tmpfs spool: 452 4.3.1, nothing left behind,
// and the connection still works.
func TestSpoolFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=128k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	r := startRelay(t, Config{Queue: sp})
	r.spool = sp
	c := r.dial()
	c.hello()
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 3000) // 240 KB
	if got := c.transaction("a@example.com", []string{"b@partner.test"}, big); !strings.HasPrefix(got, "452 4.3.1") {
		t.Fatalf("full spool: %q", got)
	}
	if q := r.queued(); len(q) != 0 {
		t.Errorf("queued %v", q)
	}
	for _, sub := range []string{"tmp", "queue"} {
		if n, _ := os.ReadDir(filepath.Join(dir, sub)); len(n) != 0 {
			t.Errorf("%s/ holds %v after 452", sub, n)
		}
	}
	queuedID(t, c.transaction("a@example.com", []string{"b@partner.test"}, simpleMsg))
}

func TestMaxConnections(t *testing.T) {
	r := startRelay(t, Config{MaxConnections: 2})
	a, b := r.dial(), r.dial()
	a.expect("", "220 ")
	b.expect("", "220 ")
	c := r.dial()
	c.expect("", "421 4.7.0")
	if got := c.reply(); got != "EOF" {
		t.Errorf("after 421: %q, want the connection closed", got)
	}
	a.expect("QUIT", "221 ")
	if a.reply() != "EOF" {
		t.Fatal("QUIT did not close")
	}
	for r.srv.Active() > 1 { // the slot frees when the session ends
		time.Sleep(time.Millisecond)
	}
	d := r.dial()
	d.expect("", "220 ")
}

func TestIdleTimeout(t *testing.T) {
	r := startRelay(t, Config{IdleTimeout: 50 * time.Millisecond})
	c := r.dial()
	c.expect("", "220 ")
	c.expect("", "421 4.4.2") // idle timeout
}

// TestShutdown: an idle client hears 421 at once; a client in DATA gets
// its message queued and then 421.
func TestShutdown(t *testing.T) {
	r := startRelay(t, Config{})
	idle := r.dial()
	idle.hello()
	busy := r.dial()
	busy.hello()
	busy.expect("MAIL FROM:<a@example.com>", "250 ")
	busy.expect("RCPT TO:<b@partner.test>", "250 ")
	busy.expect("DATA", "354 ")
	busy.send("Subject: half")

	done := make(chan error)
	go func() { done <- r.srv.Shutdown(context.Background()) }()
	idle.expect("", "421 4.3.2")
	busy.send("\r\n\r\nrest\r\n.\r\n")
	queuedID(t, busy.reply())
	busy.expect("", "421 4.3.2")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(r.queued()) != 1 {
		t.Errorf("queued %v", r.queued())
	}
}

// TestDSNParametersStored: DSN is offered (RFC 3461) and what the client
// asks with it — RET, ENVID, NOTIFY, ORCPT — and REQUIRETLS (RFC 8689,
// over TLS) are stored with the message for the DSN builder and the
// next hop. Before, DSN was not offered and its parameters got 504.
func TestDSNParametersStored(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	if ehlo := c.hello(); !strings.Contains(ehlo, "DSN") || strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO in clear:\n%s", ehlo)
	}
	c.startTLS(r.ca)
	if ehlo := c.expect("EHLO client.test", "250"); !strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO over TLS:\n%s", ehlo)
	}
	c.expect("MAIL FROM:<alice@example.com> RET=HDRS ENVID=QQ+2Bx REQUIRETLS", "250 ")
	c.expect("RCPT TO:<bob@partner.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@partner.test", "250 ")
	c.expect("RCPT TO:<carol@partner.test> NOTIFY=NEVER", "250 ")
	c.expect("RCPT TO:<dave@partner.test>", "250 ")
	c.expect("DATA", "354 ")
	c.send(simpleMsg + ".\r\n")
	env, _ := r.message(queuedID(t, c.reply()))
	if env.DSNRet != "HDRS" || env.DSNEnvID != "QQ+x" || !env.RequireTLS {
		t.Errorf("envelope: RET %q ENVID %q REQUIRETLS %v", env.DSNRet, env.DSNEnvID, env.RequireTLS)
	}
	want := []spool.Recipient{
		{Address: "bob@partner.test", State: spool.Pending, Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;bob+x@partner.test"},
		{Address: "carol@partner.test", State: spool.Pending, Notify: []string{"NEVER"}},
		{Address: "dave@partner.test", State: spool.Pending},
	}
	if fmt.Sprint(env.Recipients) != fmt.Sprint(want) {
		t.Errorf("recipients\n%+v\nwant\n%+v", env.Recipients, want)
	}
}

// TestBDATAcrossCRLF: a BDAT chunk that ends in CR and the next that
// starts with LF make one CRLF (RFC 3030: chunk boundaries fall
// anywhere); the old stream tap took them for a bare CR and a bare LF
// and refused this and every later MAIL on the connection.
func TestBDATAcrossCRLF(t *testing.T) {
	r := startRelay(t, Config{})
	c := r.dial()
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", "250 ")
	c.expect("RCPT TO:<b@partner.test>", "250 ")
	first := "Subject: split\r\n\r\nline one\r"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(first), first))
	c.expect("", "250 ")
	second := "\nline two\r\n"
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(second), second))
	id := queuedID(t, c.expect("", "250 "))
	if _, body := r.message(id); !strings.HasSuffix(body, "\r\n\r\nline one\r\nline two\r\n") {
		t.Errorf("body %q", body)
	}
	c.expect("MAIL FROM:<a@example.com>", "250 ")
}
