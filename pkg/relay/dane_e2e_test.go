package relay_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
)

// daneWorld is a real Postfix MX under several names of a DNSSEC-signed
// zone (served by nsd, validated by unbound, the relay's resolver), each
// name with its own TLSA records, plus an unsigned zone. None of the
// recipient domains is on the relay's list: what they publish is what
// protects them.
type daneWorld struct {
	dns   *testpeer.SignedDNS
	ca    *testpeer.CA
	mx    *testpeer.Postfix
	strip *mitm // port 25 of mx-strip.dane.test: removes STARTTLS
}

func startDANEWorld(t *testing.T) *daneWorld {
	t.Helper()
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	testpeer.RequireSignedDNS(t)
	w := &daneWorld{ca: testpeer.NewCA(t)}
	doms := []string{"ee.dane.test", "ta.dane.test", "bad.dane.test", "bogus.dane.test", "strip.dane.test", "plain.test"}
	w.mx = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca, SendCA: true,
		Hostname: "mx.dane.test", CertNames: []string{"mx-ta.dane.test", "mx.plain.test"}, Domains: doms})
	stripIP := testpeer.FreeLoopbackIP(t)
	w.strip = startMITMOn(t, net.JoinHostPort(stripIP.String(), "25"), w.mx.Addr(), stripSTARTTLS)
	other := w.ca.Issue(t, "other.dane.test")
	ip := w.mx.IP.String()
	var recs []string
	host := func(dom, mx, addr string, tlsa ...string) {
		recs = append(recs, dom+". IN MX 10 "+mx+".", mx+". IN A "+addr)
		for _, r := range tlsa {
			recs = append(recs, testpeer.TLSARecord(mx, 25, r))
		}
	}
	ee := []string{w.mx.Certs[0].TLSA(), w.mx.Certs[1].TLSA()}
	host("ee.dane.test", "mx-ee.dane.test", ip, ee...)
	host("ta.dane.test", "mx-ta.dane.test", ip, w.ca.TLSA())
	host("bad.dane.test", "mx-bad.dane.test", ip, other.TLSA())
	host("bogus.dane.test", "mx-bogus.dane.test", ip, ee...)
	host("strip.dane.test", "mx-strip.dane.test", stripIP.String(), ee...)
	w.dns = testpeer.StartSignedDNS(t,
		testpeer.Zone{Name: "dane.test", Records: recs, Bogus: []string{"_25._tcp.mx-bogus"}},
		testpeer.Zone{Name: "plain.test", Unsigned: true, Records: []string{
			"@ IN MX 10 mx", "mx IN A " + ip, testpeer.TLSARecord("mx.plain.test", 25, other.TLSA())}},
	)
	return w
}

// relayFor runs a relay with an empty list whose resolver is the
// validating unbound.
func (w *daneWorld) relayFor(t *testing.T, tweak func(*relay.Config)) *lab {
	t.Helper()
	return publishedRelay(t, w.ca, w.dns.Addr(), "", tweak)
}

// publishedRelay runs a relay with policyText as its list, the resolver
// at resolver and ca trusted beside the system roots.
func publishedRelay(t *testing.T, ca *testpeer.CA, resolver, policyText string, tweak func(*relay.Config)) *lab {
	t.Helper()
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "relay.corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Policy = filepath.Join(dir, "policy.conf")
	cfg.Resolver = resolver
	cfg.CAFile = ca.CertFile()
	cfg.DelayWarning = 0
	cfg.TLSRPT = false
	if err := os.WriteFile(cfg.Policy, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return runRelay(t, &world{ca: ca}, cfg)
}

func sourceKinds(r audit.Record) []string {
	var out []string
	for _, s := range r.Sources {
		out = append(out, string(s.Kind)+": "+s.Detail)
	}
	return out
}

// TestRelayDANE: the relay honours the TLSA records of domains that are
// not on its list, against a real Postfix MX and real DNSSEC.
func TestRelayDANE(t *testing.T) {
	w := startDANEWorld(t)
	l := w.relayFor(t, nil)
	delivered := func(t *testing.T, dom string) audit.Record {
		t.Helper()
		rcpt := "user@" + dom
		l.send(t, "alice@corp.test", rcpt)
		rec := l.record(t, rcpt, audit.Delivered, audit.Deferred, audit.Bounced)
		if rec.Event != audit.Delivered {
			t.Fatalf("%s: %s, want delivered: %+v", rcpt, rec.Event, rec)
		}
		w.mx.WaitMessages(t, dom, 1, 10*time.Second)
		return rec
	}
	deferred := func(t *testing.T, dom string) audit.Record {
		t.Helper()
		rcpt := "user@" + dom
		l.send(t, "alice@corp.test", rcpt)
		rec := l.record(t, rcpt, audit.Delivered, audit.Deferred, audit.Bounced)
		if rec.Event != audit.Deferred {
			t.Fatalf("%s: %s, want deferred: %+v", rcpt, rec.Event, rec)
		}
		if n := len(w.mx.Messages(dom)); n != 0 {
			t.Fatalf("%s: %d messages at the MX, want none", dom, n)
		}
		return rec
	}

	t.Run("DANE-EE 3 1 1 matches", func(t *testing.T) {
		rec := delivered(t, "ee.dane.test")
		if rec.Auth != "dane" || !strings.HasPrefix(rec.TLSA, "3 1 1 ") || rec.PolicyType != audit.PolicyTLSA || len(rec.PolicyStrings) != 2 {
			t.Errorf("auth %q tlsa %q policy %q %q, want dane, the matched 3 1 1, tlsa with both records", rec.Auth, rec.TLSA, rec.PolicyType, rec.PolicyStrings)
		}
		if k := sourceKinds(rec); !slices.ContainsFunc(k, func(s string) bool {
			return strings.HasPrefix(s, "dane: mx-ee.dane.test TLSA usable, matched 3 1 1 ")
		}) {
			t.Errorf("sources %q do not name DANE with the matched record", k)
		}
		if rec.SendingIP == "" || rec.ResultType != "" {
			t.Errorf("sending_ip %q result_type %q", rec.SendingIP, rec.ResultType)
		}
	})
	t.Run("DANE-TA 2 1 1 on the CA", func(t *testing.T) {
		rec := delivered(t, "ta.dane.test")
		if rec.Auth != "dane" || !strings.HasPrefix(rec.TLSA, "2 1 1 ") {
			t.Errorf("auth %q tlsa %q, want dane 2 1 1", rec.Auth, rec.TLSA)
		}
	})
	t.Run("TLSA does not match", func(t *testing.T) {
		rec := deferred(t, "bad.dane.test")
		if !strings.Contains(rec.Diagnostic, "DANE: certificate of mx-bad.dane.test matches no usable TLSA record") || rec.ResultType != audit.ResultTLSAInvalid {
			t.Errorf("diagnostic %q result %q", rec.Diagnostic, rec.ResultType)
		}
	})
	t.Run("bogus TLSA signature", func(t *testing.T) {
		rec := deferred(t, "bogus.dane.test")
		if !strings.Contains(rec.Diagnostic, "DANE: TLSA lookup for mx-bogus.dane.test failed: ") || rec.ResultType != audit.ResultDNSSECInvalid || rec.TLS {
			t.Errorf("diagnostic %q result %q tls %v", rec.Diagnostic, rec.ResultType, rec.TLS)
		}
		if strings.Contains(w.mx.Maillog(), "mx-bogus") {
			t.Errorf("the MX was contacted")
		}
	})
	t.Run("STARTTLS stripped in front of a DANE MX", func(t *testing.T) {
		rec := deferred(t, "strip.dane.test")
		if !strings.Contains(rec.Diagnostic, "DANE: mx-strip.dane.test has usable TLSA records but TLS failed") {
			t.Errorf("diagnostic %q", rec.Diagnostic)
		}
		// Let a retry in clear happen if it were going to.
		time.Sleep(300 * time.Millisecond)
		if n, b := w.strip.mails.Load(), w.strip.after.Load(); n != 0 || b != 0 {
			t.Errorf("%d MAIL FROM and %d bytes sent in clear", n, b)
		}
	})
	t.Run("unsigned zone: opportunistic", func(t *testing.T) {
		rec := delivered(t, "plain.test")
		if rec.Auth != "pkix" || rec.PolicyType != audit.PolicyNotFound || slices.ContainsFunc(rec.Sources, func(s audit.Source) bool { return s.Kind == audit.SourceDANE }) {
			t.Errorf("auth %q policy %q sources %q: an unsigned zone's TLSA must be ignored", rec.Auth, rec.PolicyType, sourceKinds(rec))
		}
	})

	t.Run("published policies off", func(t *testing.T) {
		off := w.relayFor(t, func(c *relay.Config) { c.PublishedPolicies = false })
		off.send(t, "alice@corp.test", "off@bad.dane.test")
		rec := off.record(t, "off@bad.dane.test", audit.Delivered, audit.Deferred, audit.Bounced)
		if rec.Event != audit.Delivered || !rec.PublishedIgnored || rec.Auth == "dane" {
			t.Errorf("%s published_ignored %v auth %q, want delivered opportunistically, ignored", rec.Event, rec.PublishedIgnored, rec.Auth)
		}
	})
}
