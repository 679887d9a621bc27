package relay_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Issue 15: CHUNKING through the whole relay. A BDAT chunk that ends in
// CR followed by one that starts with LF is one CRLF, not a bare CR and a
// bare LF (the old inbound's stream tap refused it with 550 5.5.2, and
// every later MAIL on the connection too); and a 1 MiB base64 message
// sent in 32 KiB chunks, as Exchange sends, reaches a real Postfix MX
// byte for byte.
func TestRelayBDAT(t *testing.T) {
	w := startWorld(t, "modern")
	l := startRelay(t, w, "modern.test\n", nil)
	c := dialSMTP(t, l.relay.Addr().String())
	if ehlo := c.cmd(t, 250, "EHLO mta.corp.test"); !strings.Contains(ehlo, "CHUNKING") {
		t.Fatalf("EHLO: %q", ehlo)
	}
	bdat := func(chunk string, last bool) string {
		t.Helper()
		cmd := fmt.Sprintf("BDAT %d", len(chunk))
		if last {
			cmd += " LAST"
		}
		c.W.WriteString(cmd + "\r\n" + chunk)
		if err := c.W.Flush(); err != nil {
			t.Fatal(err)
		}
		_, msg, err := c.ReadResponse(250)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		return msg
	}

	c.cmd(t, 250, "MAIL FROM:<alice@corp.test>")
	c.cmd(t, 250, "RCPT TO:<bob@modern.test>")
	bdat("Subject: split\r\nMessage-ID: <split@corp.test>\r\n\r\nline one\r", false)
	if msg := bdat("\nline two\r\n", true); !strings.Contains(msg, "queued as") {
		t.Fatalf("CR|LF across chunks: %q", msg)
	}

	// The connection goes on: the next transaction is a big one.
	raw := make([]byte, 768<<10)
	rand.Read(raw)
	var body bytes.Buffer
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		n := min(76, len(enc))
		body.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	msg := "Subject: big\r\nMessage-ID: <big@corp.test>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body.String()
	if len(msg) < 1<<20 {
		t.Fatalf("test message is %d octets", len(msg))
	}
	c.cmd(t, 250, "MAIL FROM:<alice@corp.test>")
	c.cmd(t, 250, "RCPT TO:<bob@modern.test>")
	for off := 0; off < len(msg); off += 32 << 10 {
		end := min(off+32<<10, len(msg))
		if reply := bdat(msg[off:end], end == len(msg)); end == len(msg) && !strings.Contains(reply, "queued as") {
			t.Fatalf("last chunk: %q", reply)
		}
	}
	c.cmd(t, 221, "QUIT")

	got := map[string][]byte{}
	for _, m := range w.modern.WaitMessages(t, "modern.test", 2, 60*time.Second) {
		got[m.Header.Get("Subject")] = m.Body
	}
	// Postfix stores its maildir with LF line ends.
	if want := "line one\nline two\n"; string(got["split"]) != want {
		t.Errorf("split message body %q, want %q", got["split"], want)
	}
	if want := strings.ReplaceAll(body.String(), "\r\n", "\n"); string(got["big"]) != want {
		t.Errorf("big message: %d octets delivered, want %d identical ones", len(got["big"]), len(want))
	}
}
