package hops

import (
	"bytes"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/policy"
)

// A real two-hop chain: swaks submits in clear text to an internal
// Postfix, which relays with opportunistic TLS to the partner's MX (a
// second Postfix with smtpd_tls_received_header). The headers Postfix
// really wrote must parse to exactly that: hop 1 clear (fails 112), hop 2
// TLS 1.3 with 256 bits.
func TestRealPostfixChain(t *testing.T) {
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, Domains: []string{"partner.test"}})
	// Every party on its own loopback address, as on separate hosts: a
	// client at 127.0.0.1 would count as a server re-injecting to itself.
	ip := testpeer.FreeLoopbackIP(t)
	internal := testpeer.StartPostfix(t, testpeer.PostfixOptions{IP: ip, TLS: testpeer.TLSNone, RelayHost: mx.Addr(),
		Main: map[string]string{"smtp_bind_address": ip.String()}})
	workstation := testpeer.FreeLoopbackIP(t)
	out, code := testpeer.Swaks(t, "--server", internal.Addr(), "--local-interface", workstation.String(),
		"--from", "alice@company.test", "--to", "bob@partner.test",
		"--helo", "workstation.company.test", "--header", "Subject: hops")
	if code != 0 {
		t.Fatalf("swaks exit %d:\n%s", code, out)
	}
	msgs := mx.WaitMessages(t, "partner.test", 1, 30*time.Second)
	tr, err := Analyze(bytes.NewReader(msgs[0].Raw), policy.DefaultRequirement())
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Hops) != 2 {
		t.Fatalf("%d hops:\n%s", len(tr.Hops), msgs[0].Raw)
	}
	h1, h2 := tr.Hops[0], tr.Hops[1]
	if h1.From != "workstation.company.test" || h1.FromIP != workstation.String() || h1.By != internal.Hostname || h1.With != "ESMTP" || h1.TLS || h1.MTA != "postfix" ||
		!h1.Graded || h1.Verdict.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("hop 1: %+v\n%s", h1, h1.Raw)
	}
	if h2.From != internal.Hostname || h2.FromIP != internal.IP.String() || h2.By != mx.Hostname || h2.With != "ESMTPS" || h2.MTA != "postfix" ||
		!h2.TLS || h2.TLSVersion != 0x0304 || h2.CipherID != 0x1302 || h2.HeaderBits != 256 || h2.Bits != 256 || !h2.Verdict.Met {
		t.Errorf("hop 2: %+v\n%s", h2, h2.Raw)
	}
	if tr.RecipientDomain != "partner.test" || len(tr.Failed()) != 1 {
		t.Errorf("recipient %q, %d failed", tr.RecipientDomain, len(tr.Failed()))
	}
}
