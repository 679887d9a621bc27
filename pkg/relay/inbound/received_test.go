package inbound

import (
	"bytes"
	"crypto/tls"
	"net/netip"
	"strings"
	"testing"
	"time"
)

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

func TestReceivedHeader(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tls13 := &tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384}
	tests := []struct {
		name string
		tr   trace
		want string
	}{
		{"clear, one recipient", trace{helo: "mx.example.com", esmtp: true, addr: netip.MustParseAddr("192.0.2.1"), by: "relay.test", id: "ID1", rcpts: []string{"a@b.test"}, at: at},
			"Received: from mx.example.com ([192.0.2.1])\r\n\tby relay.test (smgctl) with ESMTP id ID1\r\n\tfor <a@b.test>; Fri, 2 Jan 2026 03:04:05 +0000 (UTC)\r\n"},
		{"TLS, auth, two recipients, IPv6", trace{helo: "mx", esmtp: true, addr: netip.MustParseAddr("2001:db8::1"), tls: tls13, auth: true, by: "r", id: "ID2", rcpts: []string{"a@b", "c@d"}, at: at},
			"Received: from mx ([IPv6:2001:db8::1])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\tby r (smgctl) with ESMTPSA id ID2; Fri, 2 Jan 2026 03:04:05 +0000 (UTC)\r\n"},
		{"hostile HELO", trace{helo: "x (y); z\x01", esmtp: true, addr: netip.MustParseAddr("::ffff:127.0.0.1"), smtputf8: true, by: "r", id: "ID3", at: at},
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
	// RFC 3848: HELO is "SMTP".
	if got := (&trace{}).protocol(); got != "SMTP" {
		t.Errorf("protocol after HELO = %s, want SMTP", got)
	}
	for k, want := range protos {
		tr := trace{esmtp: true, auth: k[1], smtputf8: k[2]}
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
