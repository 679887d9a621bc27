package hops

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
)

// want is the expected reading of one hop: every parsed field.
type want struct {
	from, rdns, ip, helo, by, via, with, id, rcpt string
	date                                          string // RFC 3339; "" = no date
	mta                                           string
	tls                                           bool
	version                                       uint16
	cipher                                        string
	cipherID                                      uint16 // 0 = name unknown
	headerBits, bits                              int
	verify                                        string
	internal                                      string // reason; "" = graded
	trusted                                       bool
	diag                                          string // "" = met (or internal)
}

func checkHop(t *testing.T, h Hop, w want) {
	t.Helper()
	str := func(name, got, want string) {
		if got != want {
			t.Errorf("hop %d %s = %q, want %q", h.Index, name, got, want)
		}
	}
	str("from", h.From, w.from)
	str("rdns", h.FromRDNS, w.rdns)
	str("ip", h.FromIP, w.ip)
	str("helo", h.Helo, w.helo)
	str("by", h.By, w.by)
	str("via", h.Via, w.via)
	str("with", h.With, w.with)
	str("id", h.ID, w.id)
	str("for", h.For, w.rcpt)
	str("mta", h.MTA, w.mta)
	str("cipher", h.Cipher, w.cipher)
	str("verify", h.Verify, w.verify)
	str("internal", h.InternalReason, w.internal)
	gotDate := ""
	if !h.Date.IsZero() {
		gotDate = h.Date.Format(time.RFC3339)
	}
	str("date", gotDate, w.date)
	if h.TLS != w.tls || h.TLSVersion != w.version {
		t.Errorf("hop %d tls=%v version=%#x, want %v %#x", h.Index, h.TLS, h.TLSVersion, w.tls, w.version)
	}
	if h.CipherKnown != (w.cipherID != 0) || h.CipherID != w.cipherID {
		t.Errorf("hop %d cipher id %#04x known=%v, want %#04x", h.Index, h.CipherID, h.CipherKnown, w.cipherID)
	}
	if h.HeaderBits != w.headerBits || h.Bits != w.bits {
		t.Errorf("hop %d header bits %d bits %d, want %d %d", h.Index, h.HeaderBits, h.Bits, w.headerBits, w.bits)
	}
	if h.Internal != (w.internal != "") || h.Graded == h.Internal {
		t.Errorf("hop %d internal=%v graded=%v", h.Index, h.Internal, h.Graded)
	}
	if h.Trusted != w.trusted {
		t.Errorf("hop %d trusted=%v, want %v", h.Index, h.Trusted, w.trusted)
	}
	if h.Graded && (h.Verdict.Met != (w.diag == "") || h.Verdict.Diagnostic != w.diag) {
		t.Errorf("hop %d verdict met=%v %q, want %q", h.Index, h.Verdict.Met, h.Verdict.Diagnostic, w.diag)
	}
}

const tooWeak0 = "503 5.7.0 encryption too weak 0 less than 112"

func TestFixtures(t *testing.T) {
	tests := []struct {
		file         string
		rcptDomain   string
		firstTrusted int
		hops         []want
	}{
		{"postfix.eml", "example.org", 2, []want{
			{from: "[198.51.100.7]", rdns: "dsl-198-51-100-7.isp.example", ip: "198.51.100.7", by: "smtp.example.com", with: "ESMTPSA", id: "4VdKxK6QGbz1xqM",
				date: "2024-05-14T09:59:59+02:00", mta: "postfix", tls: true, version: 0x0303, cipher: "ECDHE-RSA-AES128-GCM-SHA256", cipherID: 0xc02f, headerBits: 128, bits: 128},
			{from: "smtp.example.com", rdns: "smtp.example.com", ip: "192.0.2.25", by: "mx1.example.org", with: "ESMTPS", id: "4VdKxL2Z0Tz9sT1", rcpt: "bob@example.org",
				date: "2024-05-14T10:00:01+02:00", mta: "postfix", tls: true, version: 0x0304, cipher: "TLS_AES_256_GCM_SHA384", cipherID: 0x1302, headerBits: 256, bits: 256, trusted: true},
			{from: "mx1.example.org", ip: "10.0.0.5", by: "imap.example.org", with: "LMTP", id: "kJ3dAbIbQ2bIdwAA0J78UA", rcpt: "bob@example.org",
				date: "2024-05-14T10:00:02+02:00", headerBits: -1, internal: "protocol LMTP", trusted: true},
		}},
		{"exim.eml", "example.net", 4, []want{
			{from: "dave", by: "workstation.example.com", with: "local", id: "1s6qG2-0000Zz-9c", date: "2024-05-14T08:12:30Z", mta: "exim", headerBits: -1, internal: "protocol local"},
			{from: "[192.0.2.77]", ip: "192.0.2.77", helo: "workstation.example.com", by: "relay.example.com", with: "esmtpsa", id: "1s6qG3-0001xy-Aa",
				date: "2024-05-14T08:12:32Z", mta: "exim", tls: true, version: 0x0303, cipher: "ECDHE-RSA-AES128-SHA", cipherID: 0xc013, headerBits: 128, bits: 128},
			// GnuTLS names are not in the maps: judged by the stated bits.
			{from: "relay.example.com", ip: "198.51.100.20", by: "mail.example.com", with: "esmtps", id: "1s6qG4-0003Ab-Qx", rcpt: "carol@example.net",
				date: "2024-05-14T08:12:33Z", mta: "exim", tls: true, version: 0x0303, cipher: "ECDHE_RSA_AES_256_GCM_SHA384", headerBits: 256, bits: 256},
			{from: "mail.example.com", ip: "203.0.113.10", helo: "mail.example.com", by: "mx.example.net", with: "esmtps", id: "1s6qG5-00Ab3K-2B", rcpt: "carol@example.net",
				date: "2024-05-14T09:12:34+01:00", mta: "exim", tls: true, version: 0x0304, cipher: "TLS_AES_256_GCM_SHA384", cipherID: 0x1302, headerBits: -1, bits: 256, trusted: true},
		}},
		{"sendmail.eml", "example.edu", 3, []want{
			{by: "legacy.partner.example", id: "44E8CWbb001100", date: "2024-05-14T04:12:32-04:00", mta: "sendmail", headerBits: -1, internal: "no sending host (local submission)"},
			// "TLSv1/SSLv3" counts as SSLv3; 3DES is 112 bits whatever
			// the old header says (168).
			{from: "legacy.partner.example", rdns: "legacy.partner.example", ip: "192.0.2.56", by: "mail.partner.example", with: "ESMTP", id: "44E8CXaa001122", rcpt: "erin@example.edu",
				date: "2024-05-14T04:12:33-04:00", mta: "sendmail", tls: true, version: 0x0300, cipher: "DES-CBC3-SHA", cipherID: 0x000a, headerBits: 168, bits: 112, verify: "FAIL",
				diag: "503 5.7.0 protocol too old SSLv3 less than TLSv1.0"},
			{from: "mail.partner.example", rdns: "mail.partner.example", ip: "192.0.2.55", by: "mx.example.edu", with: "ESMTPS", id: "44E8CYxX012345", rcpt: "erin@example.edu",
				date: "2024-05-14T04:12:34-04:00", mta: "sendmail", tls: true, version: 0x0303, cipher: "ECDHE-RSA-AES256-GCM-SHA384", cipherID: 0xc030, headerBits: 256, bits: 256, verify: "NOT", trusted: true},
		}},
		{"exchange.eml", "example.org", 3, []want{
			{from: "EXCH01.corp.partner.example", ip: "fe80::8d4c:1f2e:3b4a:5c6d", by: "EXCH01.corp.partner.example", with: "mapi", id: "15.01.2507.039",
				date: "2024-05-14T10:12:33+02:00", mta: "exchange", headerBits: -1, internal: "protocol mapi"},
			// "(TLS)" without details: strength unknown, fail closed.
			{from: "EXCH01.corp.partner.example", ip: "10.20.0.11", by: "mail.partner.example", with: "Microsoft SMTP Server", id: "15.1.2507.39",
				date: "2024-05-14T10:12:33+02:00", mta: "exchange", tls: true, headerBits: -1, bits: -1, diag: tooWeak0},
			// Entry into Exchange Online: "via Frontend Transport" from
			// another host is graded; the _P384 curve suffix is ignored.
			{from: "mail.partner.example", ip: "192.0.2.90", by: "AM4PEPF00027A5F.mail.protection.outlook.com", via: "Frontend Transport", with: "Microsoft SMTP Server", id: "15.20.7587.21",
				date: "2024-05-14T08:12:34Z", mta: "exchange", tls: true, version: 0x0303, cipher: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384_P384", cipherID: 0xc030, headerBits: -1, bits: 256, trusted: true},
			{from: "AM4PEPF00027A5F.eurprd04.prod.outlook.com", ip: "2603:10a6:208:ac:cafe::51", by: "AM0PR02CA0123.outlook.office365.com", via: "Frontend Transport", with: "Microsoft SMTP Server", id: "15.20.7587.28",
				date: "2024-05-14T08:12:35Z", mta: "exchange", tls: true, version: 0x0304, cipher: "TLS_AES_256_GCM_SHA384", cipherID: 0x1302, headerBits: -1, bits: 256, trusted: true},
			{from: "AM0PR02CA0123.eurprd02.prod.outlook.com", ip: "2603:10a6:20b:28c::20", by: "DB9PR05MB8765.eurprd05.prod.outlook.com", with: "Microsoft SMTP Server", id: "15.20.7544.41",
				date: "2024-05-14T08:12:35Z", mta: "exchange", tls: true, version: 0x0303, cipher: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", cipherID: 0xc030, headerBits: -1, bits: 256, trusted: true},
			{from: "DB9PR05MB8765.eurprd05.prod.outlook.com", ip: "2603:10a6:10:2a4::9", by: "AM6PR05MB1234.eurprd05.prod.outlook.com", with: "HTTPS",
				date: "2024-05-14T08:12:36Z", headerBits: -1, internal: "protocol HTTPS", trusted: true},
		}},
		{"gmail.eml", "gmail.com", 1, []want{
			{by: "2002:a17:907:7b92:b0:a59:9f8e:1234", with: "SMTP", id: "kx18-20020a1709077b9200b00a599f8e1234mr1234567ejc.26.1715674355",
				date: "2024-05-14T01:12:35-07:00", headerBits: -1, internal: "no sending host (local submission)", trusted: true},
			// Google Transport Security: encrypted, strength not written.
			{from: "mail-sor-f41.google.com", rdns: "mail-sor-f41.google.com", ip: "209.85.220.41", by: "mx.google.com", with: "SMTPS",
				id: "d9443c01a7336-1f0b1c2d3e4sor1234565ad.7.2024.05.14.01.12.36", rcpt: "heidi@gmail.com",
				date: "2024-05-14T01:12:36-07:00", mta: "gmail", tls: true, headerBits: -1, bits: -1, trusted: true, diag: tooWeak0},
			{by: "2002:a05:7208:3188:b0:7e:4a9c:1b2f", with: "SMTP", id: "v8csp1234567rbb",
				date: "2024-05-14T01:12:37-07:00", headerBits: -1, internal: "no sending host (local submission)", trusted: true},
		}},
		{"mixed.eml", "gmail.com", 4, []want{
			{from: "workstation.lan.partner.example", rdns: "unknown", ip: "10.9.8.7", by: "relay.partner.example", with: "ESMTP", id: "4VdMn14Lp9z1yTr", rcpt: "judy@gmail.com",
				date: "2024-05-14T11:20:08+02:00", mta: "postfix", headerBits: -1, bits: 0, diag: tooWeak0},
			{from: "relay.partner.example", rdns: "relay.partner.example", ip: "192.0.2.130", by: "mail.partner.example", with: "ESMTPS", id: "4VdMn21xQyz3Wq7", rcpt: "judy@gmail.com",
				date: "2024-05-14T11:20:09+02:00", mta: "postfix", tls: true, version: 0x0303, cipher: "ECDHE-RSA-AES256-GCM-SHA384", cipherID: 0xc030, headerBits: 256, bits: 256},
			{from: "mail.partner.example", ip: "192.0.2.131", by: "smarthost.isp.example", with: "esmtps", id: "1s6rH9-000Q2w-0k", rcpt: "judy@gmail.com",
				date: "2024-05-14T09:20:10Z", mta: "exim", tls: true, version: 0x0303, cipher: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", cipherID: 0xc013, headerBits: -1, bits: 128},
			{from: "smarthost.isp.example", rdns: "smarthost.isp.example", ip: "198.51.100.44", by: "mx.google.com", with: "ESMTPS",
				id: "5b1f17b1804b1-41f9a1b2c3dsi1234567f9.88.2024.05.14.02.20.11", rcpt: "judy@gmail.com",
				date: "2024-05-14T02:20:11-07:00", mta: "gmail", tls: true, version: 0x0303, cipher: "ECDHE-ECDSA-AES128-GCM-SHA256", cipherID: 0xc02b, headerBits: 128, bits: 128, trusted: true},
			{by: "2002:a05:6a10:9f0c:b0:5a1:2b3c:4d5e", with: "SMTP", id: "hx12csp2345678pxb",
				date: "2024-05-14T02:20:12-07:00", headerBits: -1, internal: "no sending host (local submission)", trusted: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tr, err := Analyze(f, policy.DefaultRequirement())
			if err != nil {
				t.Fatal(err)
			}
			if tr.RecipientDomain != tt.rcptDomain || tr.FirstTrusted != tt.firstTrusted || tr.Skipped != 0 {
				t.Errorf("recipient %q first trusted %d skipped %d, want %q %d 0", tr.RecipientDomain, tr.FirstTrusted, tr.Skipped, tt.rcptDomain, tt.firstTrusted)
			}
			if len(tr.Hops) != len(tt.hops) {
				t.Fatalf("%d hops, want %d", len(tr.Hops), len(tt.hops))
			}
			for i, h := range tr.Hops {
				if h.Index != i+1 {
					t.Errorf("hop %d has index %d", i+1, h.Index)
				}
				checkHop(t, h, tt.hops[i])
			}
			nFailed := 0
			for _, w := range tt.hops {
				if w.internal == "" && w.diag != "" {
					nFailed++
				}
			}
			if len(tr.Failed()) != nFailed {
				t.Errorf("%d failed hops, want %d", len(tr.Failed()), nFailed)
			}
		})
	}
}

// --require-bits raises the bar: a 128-bit hop still passes 128 and fails
// 256; the 3DES hop fails on strength first (Sendmail's order).
func TestRequireBits(t *testing.T) {
	tests := []struct {
		file  string
		bits  int
		diags []string // per graded hop, oldest first; "" = met
	}{
		{"mixed.eml", 128, []string{"503 5.7.0 encryption too weak 0 less than 128", "", "", ""}},
		{"mixed.eml", 256, []string{"503 5.7.0 encryption too weak 0 less than 256", "", "503 5.7.0 encryption too weak 128 less than 256", "503 5.7.0 encryption too weak 128 less than 256"}},
		{"sendmail.eml", 128, []string{"503 5.7.0 encryption too weak 112 less than 128", ""}},
		{"exim.eml", 200, []string{"503 5.7.0 encryption too weak 128 less than 200", "", ""}},
	}
	for _, tt := range tests {
		f, err := os.Open(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		req := policy.DefaultRequirement()
		req.Bits = tt.bits
		tr, err := Analyze(f, req)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range tr.Hops {
			if h.Graded {
				got = append(got, h.Verdict.Diagnostic)
			}
		}
		if strings.Join(got, "|") != strings.Join(tt.diags, "|") {
			t.Errorf("%s bits=%d:\n got  %q\n want %q", tt.file, tt.bits, got, tt.diags)
		}
	}
}

// Single headers in forms the fixtures do not cover.
func TestParseReceived(t *testing.T) {
	tests := []struct {
		name  string
		value string
		w     want
	}{
		{"postfix clear text", "from a.example (a.example [192.0.2.1]) by mx.example (Postfix) with ESMTP id ABC for <x@mx.example>; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a.example", rdns: "a.example", ip: "192.0.2.1", by: "mx.example", with: "ESMTP", id: "ABC", rcpt: "x@mx.example", date: "2024-05-13T10:00:00Z", mta: "postfix", headerBits: -1}},
		{"esmtps without details", "from a.example ([192.0.2.1]) by mx.example with ESMTPS id Z; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a.example", ip: "192.0.2.1", by: "mx.example", with: "ESMTPS", id: "Z", date: "2024-05-13T10:00:00Z", tls: true, headerBits: -1, bits: -1}},
		{"utf8smtps keyword", "from a.example ([192.0.2.1]) by mx.example with UTF8SMTPS; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a.example", ip: "192.0.2.1", by: "mx.example", with: "UTF8SMTPS", date: "2024-05-13T10:00:00Z", tls: true, headerBits: -1, bits: -1}},
		{"exim gnutls tls1.3 description", "from a.example ([192.0.2.1]) by mx.example with esmtps (TLS1.3:ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM:256) (Exim 4.94.2) id 1x; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a.example", ip: "192.0.2.1", by: "mx.example", with: "esmtps", id: "1x", date: "2024-05-13T10:00:00Z", mta: "exim", tls: true, version: 0x0304,
				cipher: "ECDHE_X25519__RSA_PSS_RSAE_SHA256__AES_256_GCM", headerBits: 256, bits: 256}},
		{"qmail", "from unknown (HELO mail.a.example) (192.0.2.9) by mx.example with SMTP; 13 May 2024 10:00:00 -0000",
			want{from: "unknown", ip: "192.0.2.9", helo: "mail.a.example", by: "mx.example", with: "SMTP", date: "2024-05-13T10:00:00Z", headerBits: -1}},
		{"qmail comment only", "(qmail 1234 invoked by uid 89); 13 May 2024 10:00:00 -0000",
			want{date: "2024-05-13T10:00:00Z", mta: "qmail", headerBits: -1, internal: "no sending host (local submission)"}},
		{"no date", "from a.example ([192.0.2.1]) by mx.example with ESMTP id Q",
			want{from: "a.example", ip: "192.0.2.1", by: "mx.example", with: "ESMTP", id: "Q", headerBits: -1}},
		{"bad date", "from a.example ([192.0.2.1]) by mx.example with ESMTP; yesterday-ish",
			want{from: "a.example", ip: "192.0.2.1", by: "mx.example", with: "ESMTP", headerBits: -1}},
		{"unclosed comment", "from a.example (a.example [192.0.2.1] by mx.example with ESMTPS",
			want{from: "a.example", rdns: "a.example", ip: "192.0.2.1", headerBits: -1}},
		{"ipv6 literal", "from a.example (a.example [IPv6:2001:db8::25]) by mx.example (Postfix) with ESMTPS (using TLSv1.2 with cipher AES256-GCM-SHA384 (256/256 bits)) id 1; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a.example", rdns: "a.example", ip: "2001:db8::25", by: "mx.example", with: "ESMTPS", id: "1", date: "2024-05-13T10:00:00Z", mta: "postfix",
				tls: true, version: 0x0303, cipher: "AES256-GCM-SHA384", cipherID: 0x009d, headerBits: 256, bits: 256}},
		{"old postfix 3des 168 bits, unknown name", "from a ([192.0.2.1]) by mx.example (Postfix) with ESMTP (using TLSv1 with cipher SOME-3DES-THING (168/168 bits)) id 1; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "a", ip: "192.0.2.1", by: "mx.example", with: "ESMTP", id: "1", date: "2024-05-13T10:00:00Z", mta: "postfix",
				tls: true, version: 0x0301, cipher: "SOME-3DES-THING", headerBits: 168, bits: 168}},
		{"same host handing to itself", "from mx.example (mx.example [10.0.0.1]) by mx.example (Postfix) with ESMTP id 2; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "mx.example", rdns: "mx.example", ip: "10.0.0.1", by: "mx.example", with: "ESMTP", id: "2", date: "2024-05-13T10:00:00Z", mta: "postfix", headerBits: -1, internal: "same host"}},
		{"loopback client", "from filter (localhost [127.0.0.1]) by mx.example (Postfix) with ESMTP id 3; Mon, 13 May 2024 10:00:00 +0000",
			want{from: "filter", rdns: "", ip: "127.0.0.1", by: "mx.example", with: "ESMTP", id: "3", date: "2024-05-13T10:00:00Z", mta: "postfix", headerBits: -1, internal: "loopback client"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := parseReceived(tt.value)
			markInternal(&h)
			h.Graded = !h.Internal
			if h.Graded {
				h.Verdict = policy.Evaluate(policy.DefaultRequirement(), h.Outcome())
				if !h.Verdict.Met {
					tt.w.diag = h.Verdict.Diagnostic // verdicts are TestFixtures' job
				}
			}
			h.Trusted = tt.w.trusted
			checkHop(t, h, tt.w)
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := map[string]uint16{
		"TLSv1.3": 0x0304, "TLS1.3": 0x0304, "TLS1_3": 0x0304, "tlsv1.2": 0x0303, "TLS1_2": 0x0303,
		"TLSv1.1": 0x0302, "TLSv1": 0x0301, "TLS1.0": 0x0301, "SSLv3": 0x0300, "TLSv1/SSLv3": 0x0300,
		"": 0, "TLS": 0, "TLSv2": 0, "SSLv2": 0, "v1.2": 0, "TLSv1.2/bogus": 0,
	}
	for in, wantV := range tests {
		v, ok := ParseVersion(in)
		if v != wantV || ok != (wantV != 0) {
			t.Errorf("ParseVersion(%q) = %#x %v, want %#x", in, v, ok, wantV)
		}
	}
}

func TestSuiteByName(t *testing.T) {
	tests := map[string]uint16{
		"ECDHE-RSA-AES256-GCM-SHA384":                  0xc030,
		"ecdhe-rsa-aes256-gcm-sha384":                  0xc030,
		"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384":        0xc030,
		"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384_P384":   0xc028,
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256_P256": 0xc02b,
		"SSL_RSA_WITH_3DES_EDE_CBC_SHA":                0x000a,
		"DES-CBC3-SHA":                                 0x000a,
		"EDH-RSA-DES-CBC3-SHA":                         0x0016,
		"RC4-SHA":                                      0x0005,
		"EXP-RC4-MD5":                                  0x0003,
		"TLS_AES_128_GCM_SHA256":                       0x1301,
		"ECDHE_RSA_AES_256_GCM_SHA384":                 0, // GnuTLS: unknown
		"":                                             0,
	}
	for name, wantID := range tests {
		id, ok := SuiteByName(name)
		if id != wantID || ok != (wantID != 0) {
			t.Errorf("SuiteByName(%q) = %#04x %v, want %#04x", name, id, ok, wantID)
		}
	}
	// Every OpenSSL name maps into pkg/policy's table.
	for name, id := range openSSLNames {
		if _, ok := policy.LookupSuite(id); !ok {
			t.Errorf("%s -> %#04x, which pkg/policy does not rate", name, id)
		}
	}
}

// The OpenSSL names must mean what the local OpenSSL says they mean.
func TestOpenSSLNamesMatchLocal(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	out, err := exec.Command(bin, "ciphers", "-V", "ALL:eNULL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(f[0], "0x") {
			continue
		}
		id, ok := openSSLNames[f[2]]
		if !ok {
			continue
		}
		var hi, lo uint16
		if _, err := fmtSscanf(f[0], &hi, &lo); err != nil {
			t.Fatal(err)
		}
		if id != hi<<8|lo {
			t.Errorf("%s: map says %#04x, openssl says %#04x", f[2], id, hi<<8|lo)
		}
		checked++
	}
	if checked < 60 {
		t.Errorf("only %d names checked against openssl", checked)
	}
}

func TestSuiteWithBits(t *testing.T) {
	for b := 0; b <= 300; b++ {
		best := 0
		for _, s := range policy.Suites() {
			if s.Bits <= b && s.Bits > best {
				best = s.Bits
			}
		}
		if got := policy.CipherBits(suiteWithBits(b)); got != best {
			t.Fatalf("suiteWithBits(%d) rates %d, want %d", b, got, best)
		}
	}
}

func TestAnalyzeInput(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		hops    int
		skipped int
		err     error
	}{
		{"lf, folded with tabs", "Received: from a ([192.0.2.1])\n\tby b.example with ESMTP;\n\tMon, 13 May 2024 10:00:00 +0000\n\nbody\nReceived: not a header\n", 1, 0, nil},
		{"crlf", "Received: from a ([192.0.2.1])\r\n by b.example with ESMTP; Mon, 13 May 2024 10:00:00 +0000\r\n\r\n", 1, 0, nil},
		{"mbox From line and garbage", "From someone@example Mon May 13 10:00:00 2024\nReceived: by b.example; Mon, 13 May 2024 10:00:00 +0000\nthis is not a header\n", 1, 2, nil},
		{"headers only, no body, no final newline", "Received: by b.example", 1, 0, nil},
		{"no received", "From: a@example\nTo: b@example\n\n", 0, 0, ErrNoReceived},
		{"empty", "", 0, 0, ErrNoReceived},
		{"received in body does not count", "Subject: x\n\nReceived: from a by b\n", 0, 0, ErrNoReceived},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := Analyze(strings.NewReader(tt.in), policy.DefaultRequirement())
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if len(tr.Hops) != tt.hops || tr.Skipped != tt.skipped {
				t.Errorf("%d hops %d skipped, want %d %d", len(tr.Hops), tr.Skipped, tt.hops, tt.skipped)
			}
		})
	}
}

func TestHugeInput(t *testing.T) {
	long := "Received: from a (" + strings.Repeat("x", 3<<20) + ") by b; Mon, 13 May 2024 10:00:00 +0000\n"
	tr, err := Analyze(strings.NewReader(long), policy.DefaultRequirement())
	if err != nil || len(tr.Hops) != 1 {
		t.Fatalf("long line: %v", err)
	}
	huge := strings.Repeat("X-Filler: "+strings.Repeat("y", 1000)+"\n", 10000)
	if _, err := Analyze(strings.NewReader(huge), policy.DefaultRequirement()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("huge header: err %v", err)
	}
}

func FuzzParseReceived(f *testing.F) {
	for _, name := range []string{"postfix.eml", "exim.eml", "sendmail.eml", "exchange.eml", "gmail.eml", "mixed.eml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		fields, _, _ := readHeader(bytes.NewReader(b))
		for _, fl := range fields {
			if fl.name == "Received" {
				f.Add(fl.value)
			}
		}
	}
	f.Add("((((\\")
	f.Add("from ( by ) with ;;; (")
	f.Fuzz(func(t *testing.T, v string) {
		h := parseReceived(v)
		markInternal(&h)
		if !h.TLS && h.Bits != 0 {
			t.Fatalf("no TLS but bits %d", h.Bits)
		}
		if h.TLS && (h.Bits < -1) {
			t.Fatalf("bits %d", h.Bits)
		}
		v2 := policy.Evaluate(policy.DefaultRequirement(), h.Outcome())
		// Fail closed: unknown strength never meets a requirement.
		if h.Bits < 0 && v2.Met {
			t.Fatalf("unknown strength met the requirement: %q", v)
		}
	})
}

func FuzzAnalyze(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("testdata", "mixed.eml"))
	f.Add(b)
	f.Add([]byte("Received: from a\r\n (b\r\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := Analyze(bytes.NewReader(data), policy.DefaultRequirement())
		if err != nil {
			return
		}
		if tr.FirstTrusted < 1 || tr.FirstTrusted > len(tr.Hops) {
			t.Fatalf("first trusted %d of %d", tr.FirstTrusted, len(tr.Hops))
		}
	})
}

func BenchmarkAnalyze(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "mixed.eml"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Analyze(bytes.NewReader(data), policy.DefaultRequirement()); err != nil {
			b.Fatal(err)
		}
	}
}
