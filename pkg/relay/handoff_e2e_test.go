package relay_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
)

// TestRelayHandOffRoute: a listed partner whose MX offers no STARTTLS,
// with on-fail=route:HOST, has its mail handed to the encryption gateway
// (a real Postfix with a test-CA certificate) instead of bounced; a
// gateway whose certificate does not verify (self-signed, or not naming
// the route's host) or a man in the middle stripping STARTTLS on the way
// to it gets nothing and the entry's bounce applies, with the route's
// diagnostic in the DSN.
func TestRelayHandOffRoute(t *testing.T) {
	w := startWorld(t, "none")
	partners := []string{"ho-ok.test", "ho-lit.test", "ho-self.test", "ho-name.test", "ho-mitm.test"}
	// The partner's MX: no STARTTLS, accepts every partner domain, so
	// an empty maildir proves nothing was sent there.
	partner := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: partners})
	w.dns.AddA(partner.Hostname, partner.IP.String())
	for _, d := range partners {
		w.dns.AddMX(d, 10, partner.Hostname)
	}
	// The gateways accept the partner domains too: what they do not
	// store was refused by the relay, not by them.
	gw := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca, Hostname: "gw.test", Domains: partners})
	w.dns.AddA("gw.test", gw.IP.String())
	w.dns.AddA("gw-alias.test", gw.IP.String()) // the certificate does not name it
	self := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSSelfSigned, Hostname: "gw-self.test", Domains: partners})
	w.dns.AddA("gw-self.test", self.IP.String())
	m := startMITM(t, gw.Addr(), stripSTARTTLS)
	mitmHost, mitmPort, _ := net.SplitHostPort(m.Addr)
	w.dns.AddA("gw-mitm.test", mitmHost)

	policy := "ho-ok.test    on-fail=route:gw.test\n" +
		"ho-lit.test   on-fail=route:[" + gw.IP.String() + "]:25\n" +
		"ho-self.test  on-fail=route:gw-self.test\n" +
		"ho-name.test  on-fail=route:gw-alias.test\n" +
		"ho-mitm.test  on-fail=route:gw-mitm.test:" + mitmPort + "\n"
	l := startRelay(t, w, policy, nil)
	w.startInternal(t, l.relay.Addr().String())

	for _, d := range partners {
		l.send(t, "alice@corp.test", "bob@"+d)
	}

	// Handed off: stored by the gateway, audited, never bounced.
	for _, c := range []struct{ domain, route string }{
		{"ho-ok.test", "gw.test"},
		{"ho-lit.test", "[" + gw.IP.String() + "]"},
	} {
		rcpt := "bob@" + c.domain
		rec := l.record(t, rcpt, audit.HandedOff, audit.Bounced, audit.Deferred)
		if rec.Event != audit.HandedOff || rec.Route != c.route || !rec.TLS || !rec.CertVerified || rec.IP != gw.IP.String() {
			t.Errorf("%s: audit %s route %q tls %v verified %v ip %s, want handed-off over verified TLS to %s", rcpt, rec.Event, rec.Route, rec.TLS, rec.CertVerified, rec.IP, c.route)
		}
		if !strings.Contains(rec.Diagnostic, "encryption too weak") || strings.Contains(rec.Diagnostic, "hand-off route") {
			t.Errorf("%s: diagnostic %q does not say why the partner's MX failed", rcpt, rec.Diagnostic)
		}
		msgs := gw.WaitMessages(t, c.domain, 1, 30*time.Second)
		if !strings.Contains(string(msgs[0].Raw), "Hello from the e2e test.") {
			t.Errorf("%s: gateway stored %q", rcpt, msgs[0].Raw)
		}
	}

	// Refused routes: bounced with the route's diagnostic, nothing at
	// any gateway.
	for _, c := range []struct{ domain, route, why string }{
		{"ho-self.test", "gw-self.test", "hand-off route gw-self.test: certificate not verified: x509: certificate signed by unknown authority"},
		{"ho-name.test", "gw-alias.test", "hand-off route gw-alias.test: certificate not verified: certificate does not name gw-alias.test"},
		{"ho-mitm.test", "gw-mitm.test:" + mitmPort, "hand-off route gw-mitm.test:" + mitmPort + ": encryption too weak 0 less than 112"},
	} {
		rcpt := "bob@" + c.domain
		rec := l.record(t, rcpt, audit.HandedOff, audit.Bounced)
		if rec.Event != audit.Bounced || rec.Route != c.route {
			t.Errorf("%s: audit %s route %q, want bounced by route %s", rcpt, rec.Event, rec.Route, c.route)
		}
		h := w.dsnFor(t, rcpt)
		if diag := h.Get("Diagnostic-Code"); !strings.Contains(diag, c.why) {
			t.Errorf("%s: DSN Diagnostic-Code %q, want the route's refusal (%s)", rcpt, diag, c.why)
		}
		if h.Get("Action") != "failed" {
			t.Errorf("%s: DSN Action %q", rcpt, h.Get("Action"))
		}
	}
	if n, a := m.mails.Load(), m.after.Load(); n != 0 || a != 0 {
		t.Errorf("through the STARTTLS-stripping MITM: %d MAIL FROM, %d bytes after it in clear", n, a)
	}
	for _, d := range partners {
		if n := len(partner.Messages(d)); n != 0 {
			t.Errorf("the partner's MX without STARTTLS stored %d message(s) for %s", n, d)
		}
		if n := len(self.Messages(d)); n != 0 {
			t.Errorf("the self-signed gateway stored %d message(s) for %s", n, d)
		}
	}
	for _, d := range []string{"ho-self.test", "ho-name.test", "ho-mitm.test"} {
		if n := len(gw.Messages(d)); n != 0 {
			t.Errorf("gateway stored %d message(s) for %s, whose route did not verify", n, d)
		}
	}
	if n := scrape(t, l.metrics(t), `smgctl_relay_recipient_outcomes_total{outcome="handed-off"}`); n != 2 {
		t.Errorf("handed-off outcomes in /metrics: %v, want 2", n)
	}
	// No DSN for a handed-off recipient: the three bounces' DSNs are in,
	// and none reports on them.
	for _, msg := range w.internal.Messages("corp.test") {
		for _, d := range []string{"ho-ok.test", "ho-lit.test"} {
			if reportOn(t, msg, "bob@"+d) != nil {
				t.Errorf("a DSN reports on handed-off bob@%s", d)
			}
		}
	}
}
