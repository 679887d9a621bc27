package inbound

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// refCheck is the obvious octet-by-octet version of lineCheck, the oracle
// for the fuzz target.
func refCheck(p []byte, maxLine int) Violation {
	lineLen := 0
	for i, c := range p {
		lineLen++
		switch c {
		case '\r':
			if i+1 >= len(p) || p[i+1] != '\n' {
				return BareCR
			}
		case '\n':
			if i == 0 || p[i-1] != '\r' {
				return BareLF
			}
			if maxLine > 0 && lineLen > maxLine {
				return LongLine
			}
			lineLen = 0
			continue
		}
		if maxLine > 0 && lineLen > maxLine {
			return LongLine
		}
	}
	return OK
}

func TestLineCheck(t *testing.T) {
	tests := []struct {
		in      string
		maxLine int
		want    Violation
	}{
		{"", 0, OK},
		{"a\r\nb\r\n", 0, OK},
		{"no line end at all", 0, OK},
		{"\r\n\r\n.\r\n", 0, OK},
		{"a\nb", 0, BareLF},
		{"\n", 0, BareLF},
		{"a\rb\r\n", 0, BareCR},
		{"a\r", 0, BareCR}, // dangling at the very end
		{"\r", 0, BareCR},
		{"a\r\r\n", 0, BareCR},
		{"a\r\n\n", 0, BareLF},
		{"\r\n.\n", 0, BareLF},
		{"\r\n.\r", 0, BareCR},
		{"\n.\r\n", 0, BareLF},
		{"12345678\r\n", 10, OK},        // 10 octets with CRLF
		{"123456789\r\n", 10, LongLine}, // 11
		{"123456789012", 10, LongLine},  // no line end yet
		{"1234567890\r\n", 10, LongLine},
		{"ok\r\n" + strings.Repeat("x", 998) + "\r\n", 1000, OK},
		{strings.Repeat("x", 999) + "\r\n", 1000, LongLine},
	}
	for _, tc := range tests {
		if ref := refCheck([]byte(tc.in), tc.maxLine); ref != tc.want {
			t.Fatalf("oracle disagrees on %q: %v, want %v", tc.in, ref, tc.want)
		}
		// Whole, and split at every point: a chunk boundary must not
		// hide (or invent) a fault.
		for split := 0; split <= len(tc.in); split++ {
			c := lineCheck{maxLine: tc.maxLine}
			c.Write([]byte(tc.in[:split]))
			c.Write([]byte(tc.in[split:]))
			if got := c.finish(); got != tc.want {
				t.Errorf("%q split at %d: %v, want %v", tc.in, split, got, tc.want)
			}
		}
	}
}

func TestHasHighBit(t *testing.T) {
	for _, s := range []string{"", "plain ascii text here", "\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f\x7f"} {
		if hasHighBit([]byte(s)) {
			t.Errorf("hasHighBit(%q) = true", s)
		}
	}
	for i := range 20 {
		b := bytes.Repeat([]byte("a"), 20)
		b[i] = 0x80
		if !hasHighBit(b) {
			t.Errorf("missed 0x80 at %d", i)
		}
	}
}

// FuzzLineCheck compares lineCheck, fed in two chunks split anywhere,
// with the octet-by-octet oracle.
func FuzzLineCheck(f *testing.F) {
	for _, s := range []string{"a\r\nb\r\n", "\n.\n", "\r.\r", "\r\n.\r\n", "x\r", "\r\n\n", strings.Repeat("y", 40) + "\r\n"} {
		f.Add([]byte(s), uint16(3), uint8(20))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16, maxLine uint8) {
		s := int(split)
		if s > len(data) {
			s = len(data)
		}
		c := lineCheck{maxLine: int(maxLine)}
		c.Write(data[:s])
		c.Write(data[s:])
		got := c.finish()
		// Where a line is both too long and badly ended, either fault
		// may be reported; whether there is one must agree.
		if want := refCheck(data, int(maxLine)); (got == OK) != (want == OK) {
			t.Fatalf("%q split %d max %d: %v, oracle %v", data, s, maxLine, got, want)
		}
		// Line ends alone: the same first fault, wherever the split.
		e := lineCheck{}
		e.Write(data[:s])
		e.Write(data[s:])
		if got, want := e.finish(), refCheck(data, 0); got != want {
			t.Fatalf("%q split %d: %v, oracle %v", data, s, got, want)
		}
		if c.eightBit != hasHighBitRef(data) {
			t.Fatalf("eightBit %v for %q", c.eightBit, data)
		}
	})
}

func hasHighBitRef(p []byte) bool {
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}

// TestTapDirections: input reaches the check, replies (which go-smtp
// writes through io.MultiWriter) do not.
func TestTapDirections(t *testing.T) {
	var tap streamTap
	w := io.MultiWriter(io.Discard, &tap)
	w.Write([]byte("250 ok\r\n")) // a reply: ignored even though ...
	tap.Write([]byte("x\r"))      // ... this input ends in CR,
	w.Write([]byte("250 ok\r\n")) // and a reply in between must not pair with it
	tap.Write([]byte("\n"))
	if tap.Tainted() {
		t.Errorf("replies were scanned as input: fault %v", tap.Fault())
	}
	tr := io.TeeReader(strings.NewReader("a\nb"), &tap)
	io.ReadAll(tr)
	if tap.Fault() != BareLF {
		t.Errorf("input through TeeReader: fault %v, want bare LF", tap.Fault())
	}
}

var benchBody = func() []byte {
	var b bytes.Buffer
	for b.Len() < 1<<20 {
		b.WriteString("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n")
	}
	return b.Bytes()
}()

// BenchmarkLineCheck is the DATA checker over 1 MiB of 80-column text in
// 4 KiB reads, as go-smtp delivers it.
func BenchmarkLineCheck(b *testing.B) {
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		c := lineCheck{maxLine: DefaultMaxLineLength}
		for p := benchBody; len(p) > 0; {
			n := min(len(p), 4096)
			c.scan(p[:n])
			p = p[n:]
		}
		if c.finish() != OK {
			b.Fatal("fault in clean text")
		}
	}
}

// BenchmarkTap adds the per-read cost of telling reads from writes.
func BenchmarkTap(b *testing.B) {
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		var tap streamTap
		io.Copy(io.Discard, io.TeeReader(bytes.NewReader(benchBody), &tap))
		if tap.Tainted() {
			b.Fatal("tainted")
		}
	}
}

func TestReceivedHeader(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tls13 := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384}
	tests := []struct {
		name string
		tr   trace
		want string
	}{
		{"clear, one recipient", trace{helo: "mx.example.com", addr: netip.MustParseAddr("192.0.2.1"), by: "relay.test", id: "ID1", rcpts: []string{"a@b.test"}, at: at},
			"Received: from mx.example.com ([192.0.2.1])\r\n\tby relay.test (smgctl) with ESMTP id ID1\r\n\tfor <a@b.test>; Fri, 2 Jan 2026 03:04:05 +0000 (UTC)\r\n"},
		{"TLS, auth, two recipients, IPv6", trace{helo: "mx", addr: netip.MustParseAddr("2001:db8::1"), tls: tls13, auth: true, by: "r", id: "ID2", rcpts: []string{"a@b", "c@d"}, at: at},
			"Received: from mx ([IPv6:2001:db8::1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby r (smgctl) with ESMTPSA id ID2; Fri, 2 Jan 2026 03:04:05 +0000 (UTC)\r\n"},
		{"hostile HELO", trace{helo: "x (y); z\x01", addr: netip.MustParseAddr("::ffff:127.0.0.1"), smtputf8: true, by: "r", id: "ID3", at: at},
			"Received: from x??y???z? ([127.0.0.1])\r\n\tby r (smgctl) with UTF8SMTP id ID3; Fri, 2 Jan 2026 03:04:05 +0000 (UTC)\r\n"},
	}
	for _, tc := range tests {
		if got := tc.tr.header(); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
	protos := map[[3]bool]string{
		{false, false, false}: "ESMTP", {true, false, false}: "ESMTPS", {false, true, false}: "ESMTPA",
		{true, true, false}: "ESMTPSA", {true, true, true}: "UTF8SMTPSA", {false, false, true}: "UTF8SMTP",
	}
	for k, want := range protos {
		tr := trace{auth: k[1], smtputf8: k[2]}
		if k[0] {
			tr.tls = tls13
		}
		if got := tr.protocol(); got != want {
			t.Errorf("protocol(tls=%v auth=%v utf8=%v) = %s, want %s", k[0], k[1], k[2], got, want)
		}
	}
}

func TestMessageID(t *testing.T) {
	tests := []struct{ hdr, want string }{
		{"Subject: x\r\nMessage-ID: <a@b>\r\n\r\n", "<a@b>"},
		{"message-id:<a@b>\r\n", "<a@b>"},
		{"Message-Id: \r\n <folded@example.com>\r\nX: y\r\n", "<folded@example.com>"},
		{"Message-ID: <first@x>\r\nMessage-ID: <second@x>\r\n", "<first@x>"},
		{"Message-ID: no brackets\r\n", "nobrackets"},
		{"X-Message-ID: <not@this>\r\n", ""},
		{"Subject: none\r\n\r\n", ""},
		{"Message-ID: <a@b> (comment)\r\n", "<a@b>"},
	}
	for _, tc := range tests {
		if got := messageID([]byte(tc.hdr)); got != tc.want {
			t.Errorf("messageID(%q) = %q, want %q", tc.hdr, got, tc.want)
		}
	}
}

func FuzzMessageID(f *testing.F) {
	f.Add([]byte("Message-ID: <a@b>\r\n"))
	f.Add([]byte("Message-Id:\r\n\t<x@y>\r\n\r\n"))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		id := messageID(hdr)
		if strings.ContainsAny(id, "\r\n\x00") || len(id) > 998 {
			t.Fatalf("unsafe Message-ID %q", id)
		}
	})
}
