package smtpserver

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestDialogue(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	ehlo := c.ehlo()
	for _, ext := range []string{"mx.test", "PIPELINING", "SIZE 52428800", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"} {
		if !strings.Contains(strings.Join(ehlo.Lines, "|")+"|", ext+"|") {
			t.Errorf("EHLO lacks %q: %q", ext, ehlo.Lines)
		}
	}
	for _, ext := range []string{"AUTH", "REQUIRETLS"} {
		if strings.Contains(strings.Join(ehlo.Lines, "|"), ext) {
			t.Errorf("EHLO offers %s in clear: %q", ext, ehlo.Lines)
		}
	}
	// Pipelined (RFC 2920): the envelope in one write, DATA last.
	c.send("MAIL FROM:<a@example.com> BODY=8BITMIME RET=HDRS ENVID=QQ+2B1\r\n" +
		"RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+2Bx@example.org\r\n" +
		"RCPT TO:<\"c d\"@[192.0.2.1]> NOTIFY=NEVER\r\nDATA\r\n")
	c.expect("250 2.1.0 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("250 2.1.5 Ok")
	c.expect("354 End data")
	// The next transaction's MAIL is pipelined after the final ".".
	c.send("Subject: hi\r\n\r\n..dot\r\n.\r\nMAIL FROM:<>\r\n")
	c.expect("250 2.0.0 Ok: queued as 1")
	c.expect("250 2.1.0")
	c.send("QUIT\r\n")
	c.expect("221 2.0.0")
	c.closed()

	m := ts.backend.messages()[0]
	if string(m.body) != "Subject: hi\r\n\r\n.dot\r\n" {
		t.Errorf("body %q", m.body)
	}
	want := message{
		hello: Hello{Name: "client.test", ESMTP: true},
		from:  mbox("a", "example.com"),
		mail:  MailParams{Body: Body8BitMIME, Ret: "HDRS", EnvID: "QQ+1"},
		rcpts: []Path{mbox("b", "example.org"), mbox("c d", "[192.0.2.1]")},
		rps:   []RcptParams{{Notify: NotifySuccess | NotifyFailure, ORcpt: ORcpt{"rfc822", "b+x@example.org"}}, {Notify: NotifyNever}},
	}
	if fmt.Sprint(m.hello, m.from, m.mail, m.rcpts, m.rps) != fmt.Sprint(want.hello, want.from, want.mail, want.rcpts, want.rps) {
		t.Errorf("got %+v", m)
	}
}

func TestReplies(t *testing.T) {
	ts := startServer(t, Config{MaxRecipients: 2, MaxMessageBytes: 1000, MaxBadCommands: 100}, nil)
	steps := []struct{ send, want string }{
		{"HELP", "214 2.0.0"},
		{"MAIL FROM:<a@example.com>", "503 5.5.1 Error: send HELO/EHLO first"},
		{"EHLO", "501 5.5.4 Syntax: EHLO hostname"},
		{"HELO client.test", "250 mx.test"},
		{"MAIL FROM:<a@example.com> SIZE=10", "555 5.5.4 Unsupported option: SIZE"}, // no parameters after HELO
		{"EHLO refuse.example", "550 5.7.1 go away"},
		{"EHLO client.test", "250 mx.test"},
		{"RCPT TO:<b@example.org>", "503 5.5.1 Error: need MAIL command"},
		{"DATA", "503 5.5.1 Error: need MAIL command"},
		{"MAIL TO:<a@example.com>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{"MAIL FROM:a@example.com", "501 5.1.7 Bad sender address syntax"},
		{"MAIL FROM:<Postmaster>", "501 5.1.7"},
		{"MAIL FROM:<a@example.com> SIZE=1001", "552 5.3.4"},
		{"MAIL FROM:<a@example.com> X-FOO=1", "555 5.5.4 Unsupported option: X-FOO"},
		{"MAIL FROM:<a@example.com> REQUIRETLS", "555 5.5.4"},
		{"MAIL FROM:<a@example.com> AUTH=<>", "555 5.5.4"},
		{"MAIL FROM:<é@example.com>", "553 5.6.7"},
		{"MAIL FROM:<a@example.com> SIZE=1000", "250 2.1.0 Ok"},
		{"MAIL FROM:<a@example.com>", "503 5.5.1 Error: nested MAIL command"},
		{"DATA", "503 5.5.1 Error: need RCPT command"},
		{"BDAT 4\r\nab", "503 5.5.1 Error: need RCPT command"}, // the chunk is read away
		{"RCPT TO:<>", "501 5.1.3"},
		{"RCPT TO:<b@example.org> NOTIFY=NEVER,DELAY", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"RCPT TO:<denied@example.org>", "554 5.7.1 Relay access denied"},
		{"RCPT TO:<broken@example.org>", "451 4.3.0 Error: internal server error"},
		{"RCPT TO:<inject@example.org>", "550 5.1.1 no  250 2.1.5 Ok"}, // one line, not two replies
		{"RCPT TO:<Postmaster>", "250 2.1.5 Ok"},
		{"RCPT TO:<b@example.org>", "250 2.1.5 Ok"},
		{"RCPT TO:<c@example.org>", "452 4.5.3 Error: too many recipients"},
		{"VRFY", "501 5.5.4"},
		{"VRFY a", "252 2.0.0"},
		{"EXPN a", "502 5.5.1 Error: command not implemented"},
		{"FOO", "500 5.5.2 Error: command not recognized"},
		{"NOOP x", "250 2.0.0 Ok"},
		{"AUTH PLAIN", "530 5.7.0 Must issue a STARTTLS command first"},
		{"RSET x", "501 5.5.4"},
		{"RSET", "250 2.0.0 Ok"},
		{"DATA", "503 5.5.1 Error: need MAIL command"},
		{"MAIL FROM:<" + strings.Repeat("a", 2100) + "@example.com>", "500 5.5.2 Error: line too long"},
		{"NO\x00OP", "500 5.5.2 Error: NUL"},
		{"QUIT", "221 2.0.0 Bye"},
	}
	c := ts.dial(t)
	for _, s := range steps {
		c.send(s.send + "\r\n")
		if r := c.reply(); !strings.HasPrefix(r.String(), s.want) {
			t.Fatalf("%q: got %q, want %q...", trunc(s.send), r.String(), s.want)
		}
	}
	c.closed()
}

// TestBareNewlineCommand: a bare LF or CR in a command gets 5.5.2 at
// once, and nothing after it is executed.
func TestBareNewlineCommand(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	for _, in := range []string{"NOOP\nRSET\r\n", "NOOP\rRSET\r\n", "MAIL FROM:<a@b>\n"} {
		c := ts.dial(t)
		c.ehlo()
		c.send(in)
		c.expect("500 5.5.2 Error: bare <CR> or <LF>")
		c.closed()
	}
}

// TestBareNewlineData: a bare LF or CR in DATA is answered at once,
// without waiting for an end of data that a lenient client would never
// send, and nothing is stored.
func TestBareNewlineData(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	for _, body := range []string{"a\nb", "a\r\n.\n", "a\rb", "ok\r\n\r\nsmuggled\n.\nMAIL FROM:<x@y>\n"} {
		c := ts.dial(t)
		c.ehlo()
		c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		c.send(body) // no <CRLF>.<CRLF> follows
		c.expect("550 5.5.2 Error: bare <CR> or <LF>")
		c.closed()
	}
	if n := len(ts.backend.messages()); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
	ts.backend.mu.Lock()
	defer ts.backend.mu.Unlock()
	for _, err := range ts.backend.dataErrs {
		if !errors.Is(err, ErrBareNewline) {
			t.Errorf("Data saw %v", err)
		}
	}
}

func TestSizeLimit(t *testing.T) {
	ts := startServer(t, Config{MaxMessageBytes: 100}, nil)
	c := ts.dial(t)
	c.ehlo()
	atLimit := strings.Repeat("x", 98) + "\r\n" // 100 octets (RFC 1870 §4)
	for _, tc := range []struct{ body, want string }{
		{atLimit, "250 2.0.0 Ok: queued"},
		{"x" + atLimit, "552 5.3.4"},
		{strings.Repeat(atLimit, 50), "552 5.3.4"},
	} {
		c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		c.send(tc.body + ".\r\n")
		c.expect(tc.want)
		// BDAT: the same limit across chunks.
		c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
		c.expect("250")
		c.expect("250")
		half := len(tc.body) / 2
		c.send(fmt.Sprintf("BDAT %d\r\n%s", half, tc.body[:half]))
		if !strings.HasPrefix(tc.want, "552") || half <= 100 {
			c.expect("250 2.0.0 Ok: ")
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(tc.body)-half, tc.body[half:]))
		}
		c.expect(tc.want)
	}
	c.send("NOOP\r\n")
	c.expect("250 2.0.0 Ok")
	if n := len(ts.backend.messages()); n != 2 {
		t.Fatalf("%d messages stored, want 2", n)
	}
}

func TestLineLimit(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	c.ehlo()
	for _, tc := range []struct{ body, want string }{
		{strings.Repeat("x", 998) + "\r\n", "250 2.0.0"},
		{strings.Repeat("x", 999) + "\r\n", "500 5.5.2 Error: line too long"},
		{".." + strings.Repeat("x", 997) + "\r\n", "250 2.0.0"}, // the stuffed dot does not count
	} {
		c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
		c.expect("250")
		c.expect("250")
		c.expect("354")
		c.send(tc.body + ".\r\n")
		c.expect(tc.want)
	}
}

// bdatSend sends msg in BDAT chunks of the given sizes (the last gets
// LAST) and returns the reply to the last chunk.
func bdatSend(c *rawClient, msg []byte, sizes []int) {
	c.t.Helper()
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
	c.expect("250 2.1.0")
	c.expect("250 2.1.5")
	var out bytes.Buffer
	off := 0
	for i, n := range sizes {
		last := ""
		if i == len(sizes)-1 {
			last = " LAST"
		}
		fmt.Fprintf(&out, "BDAT %d%s\r\n", n, last)
		out.Write(msg[off : off+n])
		off += n
	}
	c.send(out.String()) // all chunks pipelined, as RFC 3030 allows
	for range len(sizes) - 1 {
		c.expect("250 2.0.0 Ok: ")
	}
}

// TestBDATEveryOffset cuts a message into two chunks at every offset,
// between CR and LF included, in clear and over TLS: every cut is
// delivered byte-identical.
func TestBDATEveryOffset(t *testing.T) {
	msg := []byte("From: a@example.com\r\nSubject: chunks\r\n\r\n.\r\nline two \xc3\xa9\r\n..\r\nlast line without CRLF")
	for _, overTLS := range []bool{false, true} {
		ts := startServer(t, Config{}, nil)
		c := ts.dial(t)
		if overTLS {
			c.ehlo()
			c.startTLS(ts.client)
		}
		c.ehlo()
		for i := 0; i <= len(msg); i++ {
			bdatSend(c, msg, []int{i, len(msg) - i})
			c.expect("250 2.0.0 Ok: queued")
		}
		// BDAT 0 LAST ends a body sent in earlier chunks.
		bdatSend(c, msg, []int{len(msg), 0})
		c.expect("250 2.0.0 Ok: queued")
		want := string(msg) + "\r\n"
		for i, m := range ts.backend.messages() {
			if string(m.body) != want || m.tls != overTLS {
				t.Fatalf("TLS %v cut %d: body %q tls %v", overTLS, i, m.body, m.tls)
			}
		}
	}
}

// TestBDATBareCRAcrossChunks: a chunk that ends in CR followed by one
// that does not start with LF is a bare CR; the transaction is refused,
// and the connection goes on (the old server refused every later MAIL).
func TestBDATBareCRAcrossChunks(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	c.ehlo()
	bdatSend(c, []byte("a\r\nb\rc\r\n"), []int{5, 3})
	c.expect("550 5.5.2 Error: bare <CR> or <LF>")
	bdatSend(c, []byte("a\r\nb\nc\r\n"), []int{4, 4})
	c.expect("550 5.5.2")
	bdatSend(c, []byte("a\r\nb\r"), []int{5, 0}) // a CR ends the message
	c.expect("550 5.5.2")
	// A body with a bare LF in the middle of a big chunk: the rest of the
	// chunk is read away, a pipelined BDAT finds no transaction.
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 7\r\nab\ncd\r\nBDAT 2 LAST\r\nxy")
	c.expect("250")
	c.expect("250")
	c.expect("550 5.5.2")
	c.expect("503 5.5.1 Error: need MAIL command")
	c.send("RSET\r\n")
	c.expect("250 2.0.0")
	bdatSend(c, []byte("fine\r\n"), []int{3, 3})
	c.expect("250 2.0.0 Ok: queued")
	if n := len(ts.backend.messages()); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
}

// TestBDATLarge sends a 1 MiB base64 message in 32 KiB chunks, the way
// Exchange does, and checks it arrives byte-identical.
func TestBDATLarge(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	raw := make([]byte, 768<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	var msg bytes.Buffer
	msg.WriteString("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b64 := base64.StdEncoding.EncodeToString(raw)
	for len(b64) > 0 {
		n := min(76, len(b64))
		msg.WriteString(b64[:n] + "\r\n")
		b64 = b64[n:]
	}
	body := msg.Bytes()[:1<<20]
	var sizes []int
	for off := 0; off < len(body); off += 32 << 10 {
		sizes = append(sizes, min(32<<10, len(body)-off))
	}
	c := ts.dial(t)
	c.ehlo()
	c.startTLS(ts.client)
	c.ehlo()
	done := make(chan struct{})
	go func() { // the client writes while the server's replies queue up
		defer close(done)
		bdatSend(c, body, sizes)
	}()
	<-done
	c.expect("250 2.0.0 Ok: queued")
	m := ts.backend.messages()
	want := append(append([]byte(nil), body...), "\r\n"[:crlfNeeded(body)]...)
	if len(m) != 1 || !bytes.Equal(m[0].body, want) {
		t.Fatalf("body differs (%d messages)", len(m))
	}
}

func crlfNeeded(b []byte) int {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return 0
	}
	return 2
}

// TestSTARTTLSInjection: a command sent in the same packet as STARTTLS
// (RFC 3207 §5, CVE-2011-0411) is discarded, never answered; after TLS
// the client must say EHLO again.
func TestSTARTTLSInjection(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	c.ehlo()
	c.send("STARTTLS\r\nRSET\r\n")
	c.expect("220 2.0.0 Ready to start TLS")
	if n := c.br.Buffered(); n > 0 {
		t.Fatalf("server answered the injected command (%d octets)", n)
	}
	c.handshake(ts.client)
	c.send("MAIL FROM:<a@example.com>\r\n")
	c.expect("503 5.5.1 Error: send HELO/EHLO first") // not RSET's 250
	ehlo := c.ehlo()
	lines := strings.Join(ehlo.Lines, "|")
	if strings.Contains(lines, "STARTTLS") || !strings.Contains(lines, "REQUIRETLS") {
		t.Errorf("EHLO after TLS: %q", ehlo.Lines)
	}
	c.send("STARTTLS\r\n")
	c.expect("554 5.5.1 Error: TLS already active")
	c.send("MAIL FROM:<a@example.com> REQUIRETLS\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("354")
	c.send("x\r\n.\r\n")
	c.expect("250 2.0.0 Ok: queued")
	m := ts.backend.messages()[0]
	if !m.tls || !m.mail.RequireTLS {
		t.Errorf("message %+v", m)
	}
	ts.backend.mu.Lock()
	defer ts.backend.mu.Unlock()
	if ts.backend.sessions != 2 || ts.backend.logouts < 1 {
		t.Errorf("sessions %d logouts %d: STARTTLS must start a new session", ts.backend.sessions, ts.backend.logouts)
	}
}

func TestAuth(t *testing.T) {
	ts := startServer(t, Config{}, &testBackend{auth: true})
	c := ts.dial(t)
	c.ehlo()
	c.send("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n")
	c.expect("530 5.7.0")
	c.startTLS(ts.client)
	c.send("AUTH PLAIN AHVzZXIAc2VjcmV0\r\n")
	c.expect("503 5.5.1 Error: send EHLO first")
	if ehlo := c.ehlo(); !strings.Contains(strings.Join(ehlo.Lines, "|"), "AUTH PLAIN LOGIN") {
		t.Fatalf("no AUTH after TLS: %q", ehlo.Lines)
	}
	plain := func(id, user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte(id + "\x00" + user + "\x00" + pass))
	}
	c.send("AUTH PLAIN " + plain("", "user", "wrong") + "\r\n")
	c.expect("535 5.7.8")
	c.send("AUTH CRAM-MD5\r\n")
	c.expect("504 5.5.4")
	c.send("AUTH PLAIN\r\n")
	c.expect("334 ")
	c.send("*\r\n")
	c.expect("501 5.0.0")
	c.send("AUTH PLAIN\r\n")
	c.expect("334 ")
	c.send("!!!\r\n")
	c.expect("501 5.5.2")
	c.send("AUTH LOGIN\r\n")
	if r := c.expect("334 "); r.Text() != "VXNlcm5hbWU6" {
		t.Errorf("LOGIN prompt %q", r.Text())
	}
	c.send(base64.StdEncoding.EncodeToString([]byte("user")) + "\r\n")
	c.expect("334 UGFzc3dvcmQ6")
	c.send(base64.StdEncoding.EncodeToString([]byte("secret")) + "\r\n")
	c.expect("235 2.7.0")
	c.send("AUTH PLAIN " + plain("", "user", "secret") + "\r\n")
	c.expect("503 5.5.1 Error: already authenticated")
	c.send("MAIL FROM:<a@example.com> AUTH=<>\r\n")
	c.expect("250 2.1.0")

	c2 := ts.dial(t)
	c2.ehlo()
	c2.startTLS(ts.client)
	c2.ehlo()
	c2.send("AUTH\r\n")
	c2.expect("501 5.5.4 Syntax: AUTH")
	c2.send("AUTH PLAIN " + plain("other", "user", "secret") + "\r\n")
	c2.expect("535 5.7.8")
	c2.send("AUTH PLAIN " + plain("user", "user", "secret") + "\r\n")
	c2.expect("235 2.7.0")

	// LOGIN with the user name as initial response (RFC 4954 §4).
	c3 := ts.dial(t)
	c3.ehlo()
	c3.startTLS(ts.client)
	c3.ehlo()
	c3.send("AUTH LOGIN " + base64.StdEncoding.EncodeToString([]byte("user")) + "\r\n")
	c3.expect("334 UGFzc3dvcmQ6")
	c3.send(base64.StdEncoding.EncodeToString([]byte("secret")) + "\r\n")
	c3.expect("235 2.7.0")
}

func TestTooManyErrors(t *testing.T) {
	ts := startServer(t, Config{MaxBadCommands: 3}, nil)
	c := ts.dial(t)
	c.send("FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
	c.expect("500")
	c.expect("500")
	c.expect("500")
	c.expect("421 4.7.0 mx.test Error: too many errors")
	c.closed()
}

func TestTooManyCommands(t *testing.T) {
	ts := startServer(t, Config{MaxCommands: 3}, nil)
	c := ts.dial(t)
	c.send("NOOP\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250")
	c.expect("421 4.7.0 mx.test Error: too many commands")
	c.closed()
}

// TestCommandDeadline: a client that trickles a command one octet at a
// time does not keep the connection: the deadline runs from the first
// octet and is not reset by each one.
func TestCommandDeadline(t *testing.T) {
	ts := startServer(t, Config{CommandTimeout: 300 * time.Millisecond}, nil)
	c := ts.dial(t)
	start := time.Now()
	go func() {
		for _, b := range "NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP NOOP" {
			if _, err := c.nc.Write([]byte{byte(b)}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	c.expect("421 4.4.2 mx.test Error: timeout exceeded")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v; trickling extended the deadline", d)
	}
}

func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, Config{MaxPerIP: 1}, nil)
	ts.dial(t)
	nc := dialRaw(t, ts)
	r := readReply(t, nc)
	if r.String() != "421 4.7.0 mx.test Error: too many connections from your address, try again later" {
		t.Fatalf("second connection: %q", r.String())
	}
	if ts.Active() != 1 {
		t.Fatalf("Active() = %d", ts.Active())
	}
}

// TestShutdown: an idle client gets 421 at once; one in a transaction
// finishes it, gets its reply, then 421.
func TestShutdown(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	idle := ts.dial(t)
	idle.ehlo()
	busy := ts.dial(t)
	busy.ehlo()
	busy.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n")
	busy.expect("250")
	busy.expect("250")
	done := make(chan error)
	go func() { done <- ts.Shutdown(t.Context()) }()
	idle.expect("421 4.3.2 mx.test Service shutting down")
	idle.closed()
	busy.send("DATA\r\n")
	busy.expect("354")
	busy.send("x\r\n.\r\n")
	busy.expect("250 2.0.0 Ok: queued")
	busy.expect("421 4.3.2")
	busy.closed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHandshakeFailure: when the TLS handshake fails nothing more is
// written in clear; the connection is just closed.
func TestHandshakeFailure(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	c.ehlo()
	c.send("STARTTLS\r\n")
	c.expect("220 2.0.0")
	c.send("EHLO not-a-tls-record\r\nMAIL FROM:<a@b>\r\n")
	c.closed()
}

// BenchmarkSession runs one whole session with one 100 KB message
// through the state machine, to show the per-message cost beside the
// reader's.
func BenchmarkSession(b *testing.B) {
	var msg strings.Builder
	msg.WriteString("EHLO bench.test\r\nMAIL FROM:<a@example.com> SIZE=102400\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	for msg.Len() < 100_000 {
		msg.WriteString(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n")
	}
	msg.WriteString(".\r\nQUIT\r\n")
	script := msg.String()
	srv, err := New(Config{Hostname: "mx.test"}, discardBackend{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(script)))
	b.ReportAllocs()
	for b.Loop() {
		sc := &scriptConn{in: strings.NewReader(script)}
		c := newConn(srv, sc, addrPort(sc.RemoteAddr()))
		c.serve(b.Context())
		if !strings.HasSuffix(sc.out.String(), "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n") {
			b.Fatal(sc.out.String())
		}
	}
}

// TestBDATBetweenChunks: NOOP is answered between chunks, DATA is not
// allowed, RSET abandons the transaction (RFC 3030 §3, §4).
func TestBDATBetweenChunks(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	c := ts.dial(t)
	c.ehlo()
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 3\r\nab\r")
	c.expect("250")
	c.expect("250")
	c.send("NOOP\r\nDATA\r\nBDAT 1\r\n\n")
	c.expect("250 2.0.0 Ok: 3 octets received")
	c.expect("250 2.0.0 Ok")
	c.expect("503 5.5.1 Error: only BDAT")
	c.send("RSET\r\n")
	c.expect("250 2.0.0 Ok: 1 octets received")
	c.expect("250 2.0.0 Ok")
	c.send("BDAT 0 LAST\r\n")
	c.expect("503 5.5.1 Error: need MAIL command")
	c.send("MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nBDAT 0 LAST\r\n")
	c.expect("250")
	c.expect("250")
	c.expect("250 2.0.0 Ok: queued as 1")
	m := ts.backend.messages()
	if len(m) != 1 || len(m[0].body) != 0 {
		t.Fatalf("messages %+v", m)
	}
	ts.backend.mu.Lock()
	defer ts.backend.mu.Unlock()
	if len(ts.backend.dataErrs) != 1 || !errors.Is(ts.backend.dataErrs[0], ErrAborted) {
		t.Fatalf("Data saw %v, want ErrAborted", ts.backend.dataErrs)
	}
}

// TestBuffersDoNotOutliveConnection: connections reuse the buffers of
// ended ones (reader.go), and what one client left unread in them never
// reaches the next: here commands pipelined after QUIT.
func TestBuffersDoNotOutliveConnection(t *testing.T) {
	ts := startServer(t, Config{}, nil)
	for range 10 {
		a := ts.dial(t)
		a.ehlo()
		a.send("QUIT\r\nEHLO leak.example\r\nMAIL FROM:<leak@example.com>\r\n")
		a.expect("221 2.0.0")
		a.nc.Close()

		b := ts.dial(t)
		b.send("NOOP\r\n")
		b.expect("250 2.0.0 Ok")
		b.send("MAIL FROM:<a@example.com>\r\n")
		b.expect("503 5.5.1 Error: send HELO/EHLO first") // A's EHLO did not carry over
		if n := b.br.Buffered(); n > 0 {
			t.Fatalf("a reply to another connection's commands (%d octets)", n)
		}
		b.nc.Close()
	}
}
