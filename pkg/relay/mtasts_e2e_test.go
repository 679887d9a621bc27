package relay_test

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
)

// countingMX listens on port 25 of its own loopback address and counts
// the connections made to it, closing each at once: an MX the relay must
// not even connect to.
type countingMX struct {
	IP    net.IP
	conns atomic.Int64
}

func startCountingMX(t *testing.T) *countingMX {
	t.Helper()
	c := &countingMX{IP: testpeer.FreeLoopbackIP(t)}
	ln, err := net.Listen("tcp4", net.JoinHostPort(c.IP.String(), "25"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			conn.Close()
		}
	}()
	return c
}

// stsWorld: a real Postfix MX (mx.sts.test, certificate from the test
// CA), MTA-STS policy hosts over real HTTPS with certificates from the
// same CA (the relay's ca-file), an MX outside every policy's patterns
// that counts connections, and a man in the middle stripping STARTTLS,
// all named in a zone the relay's validating resolver serves. No
// recipient domain is on the relay's list.
type stsWorld struct {
	dns   *testpeer.SignedDNS
	ca    *testpeer.CA
	mx    *testpeer.Postfix
	out   *countingMX
	strip *mitm
	down  *testpeer.HTTPSServer // the policy host of down.sts.test
	ok    *testpeer.HTTPSServer // the policy host of ok.sts.test
}

func startSTSWorld(t *testing.T) *stsWorld {
	t.Helper()
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	testpeer.RequireSignedDNS(t)
	w := &stsWorld{ca: testpeer.NewCA(t)}
	doms := []string{"ok.sts.test", "two.sts.test", "outside.sts.test", "strip.sts.test", "testing.sts.test", "down.sts.test", "listed.sts.test", "nofetch.sts.test"}
	w.mx = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca,
		Hostname: "mx.sts.test", CertNames: []string{"strip.sts.test"}, Domains: doms})
	w.out = startCountingMX(t)
	stripIP := testpeer.FreeLoopbackIP(t)
	w.strip = startMITMOn(t, net.JoinHostPort(stripIP.String(), "25"), w.mx.Addr(), stripSTARTTLS)
	recs := []string{
		"mx IN A " + w.mx.IP.String(),
		"out IN A " + w.out.IP.String(),
		"strip IN A " + stripIP.String(),
		"ok IN MX 10 mx",
		"two IN MX 10 out", "two IN MX 20 mx",
		"outside IN MX 10 out",
		"strip IN MX 10 strip",
		"testing IN MX 10 mx",
		"down IN MX 10 out", "down IN MX 20 mx",
		"listed IN MX 10 strip",
		"nofetch IN MX 10 out", "nofetch IN MX 20 mx",
	}
	policy := func(dom, mode string, mx ...string) *testpeer.HTTPSServer {
		h := testpeer.StartMTASTSHost(t, w.ca, dom, testpeer.MTASTSPolicy(mode, 86400, mx...))
		recs = append(recs, h.MTASTSRecords(dom, "id"+strings.ReplaceAll(mode, "-", "")+strings.Split(dom, ".")[0])...)
		return h
	}
	w.ok = policy("ok.sts.test", "enforce", "mx.sts.test")
	policy("two.sts.test", "enforce", "*.other.test", "mx.sts.test")
	policy("outside.sts.test", "enforce", "mx.sts.test")
	policy("strip.sts.test", "enforce", "strip.sts.test")
	policy("testing.sts.test", "testing", "elsewhere.sts.test")
	w.down = policy("down.sts.test", "enforce", "mx.sts.test")
	// A record, but the policy host answers 404: no policy.
	nofetch := testpeer.StartHTTPS(t, w.ca, "mta-sts.nofetch.sts.test", http.NotFoundHandler())
	recs = append(recs, nofetch.MTASTSRecords("nofetch.sts.test", "idnofetch")...)
	w.dns = testpeer.StartSignedDNS(t, testpeer.Zone{Name: "sts.test", Records: recs})
	return w
}

// sendHeader submits a message with an extra header line.
func sendHeader(t *testing.T, l *lab, header, to string) {
	t.Helper()
	out, code := testpeer.Swaks(t, "--server", l.relay.Addr().String(), "--from", "alice@corp.test", "--to", to,
		"--helo", "client.corp.test", "--header", header, "--body", "Hello.\n")
	if code != 0 {
		t.Fatalf("swaks: %d\n%s", code, out)
	}
}

// TestRelayMTASTS: the relay fetches MTA-STS policies over real HTTPS and
// holds domains not on its list to them, against a real Postfix MX.
func TestRelayMTASTS(t *testing.T) {
	w := startSTSWorld(t)
	spool := filepath.Join(t.TempDir(), "spool")
	l := publishedRelay(t, w.ca, w.dns.Addr(), "listed.sts.test\n", func(c *relay.Config) { c.Spool = spool })
	attempt := func(t *testing.T, l *lab, rcpt string) audit.Record {
		t.Helper()
		l.send(t, "alice@corp.test", rcpt)
		return l.record(t, rcpt, audit.Delivered, audit.WouldBounce, audit.Deferred, audit.Bounced)
	}
	atMX := func(dom string) int { return len(w.mx.Messages(dom)) }

	t.Run("enforce, MX matches", func(t *testing.T) {
		rec := attempt(t, l, "a@ok.sts.test")
		if rec.Event != audit.Delivered || rec.Auth != "pkix" || rec.STSMode != "enforce" || rec.STSPolicyID != "idenforceok" ||
			rec.PolicyType != audit.PolicySTS || !strings.Contains(strings.Join(rec.PolicyStrings, "\n"), "mx: mx.sts.test") {
			t.Fatalf("%+v", rec)
		}
		w.mx.WaitMessages(t, "ok.sts.test", 1, 10*time.Second)
	})
	t.Run("enforce, the preferred MX outside the patterns is skipped", func(t *testing.T) {
		rec := attempt(t, l, "a@two.sts.test")
		if rec.Event != audit.Delivered || rec.MX != "mx.sts.test" {
			t.Fatalf("%s via %s, want delivered via mx.sts.test", rec.Event, rec.MX)
		}
		if n := w.out.conns.Load(); n != 0 {
			t.Errorf("%d connections to the MX outside the policy", n)
		}
		// The MX passed over is audited once, as a failed TLS-RPT
		// session (validation-failure) that no connection was made for.
		h := hopFailedRecords(t, l.cfg.AuditLog)["a@two.sts.test"]
		if len(h) != 1 || h[0].MX != "out.sts.test" || h[0].IP != w.out.IP.String() || h[0].SendingIP != "" || h[0].TLS ||
			h[0].ResultType != audit.ResultValidationFailure || h[0].PolicyType != audit.PolicySTS ||
			h[0].Diagnostic != "451 4.7.5 MTA-STS: MX out.sts.test does not match the mx patterns of policy idenforcetwo" {
			t.Errorf("hop-failed records %+v, want one for out.sts.test, validation-failure, not dialled", h)
		}
	})
	t.Run("enforce, only an MX outside the patterns", func(t *testing.T) {
		rec := attempt(t, l, "a@outside.sts.test")
		if rec.Event != audit.Deferred || rec.Diagnostic != "451 4.7.5 MTA-STS: MX out.sts.test does not match the mx patterns of policy idenforceoutside" {
			t.Fatalf("%s %q", rec.Event, rec.Diagnostic)
		}
		if n := w.out.conns.Load(); n != 0 {
			t.Errorf("%d connections to the MX outside the policy", n)
		}
	})
	t.Run("enforce, STARTTLS stripped", func(t *testing.T) {
		rec := attempt(t, l, "a@strip.sts.test")
		if rec.Event != audit.Deferred || !strings.HasPrefix(rec.Diagnostic, "451 4.7.10 MTA-STS: strip.sts.test offers no usable TLS: ") ||
			rec.ResultType != audit.ResultSTARTTLSNotSupported {
			t.Fatalf("%s %q %q", rec.Event, rec.Diagnostic, rec.ResultType)
		}
		time.Sleep(300 * time.Millisecond)
		if n, b := w.strip.mails.Load(), w.strip.after.Load(); n != 0 || b != 0 || atMX("strip.sts.test") != 0 {
			t.Errorf("%d MAIL FROM, %d bytes in clear", n, b)
		}
	})
	t.Run("record but no policy: as without MTA-STS, recorded for TLS-RPT", func(t *testing.T) {
		before := w.out.conns.Load()
		rec := attempt(t, l, "a@nofetch.sts.test")
		if rec.Event != audit.Delivered || rec.STSPolicyID != "" || rec.ResultType != audit.ResultSTSPolicyFetchError {
			t.Fatalf("%s policy %q result %q", rec.Event, rec.STSPolicyID, rec.ResultType)
		}
		// RFC 8461 §5: no policy, so the preferred MX is tried.
		if w.out.conns.Load() == before {
			t.Errorf("the preferred MX was not tried")
		}
		w.out.conns.Store(before)
	})
	t.Run("testing mode delivers and records the would-be failure", func(t *testing.T) {
		rec := attempt(t, l, "a@testing.sts.test")
		if rec.Event != audit.Delivered && rec.Event != audit.WouldBounce {
			t.Fatalf("%s, want delivered", rec.Event)
		}
		if !rec.PublishedIgnored || rec.ResultType != audit.ResultValidationFailure ||
			rec.Diagnostic != "451 4.7.5 MTA-STS: MX mx.sts.test does not match the mx patterns of policy idtestingtesting" {
			t.Errorf("published_ignored %v result %q diagnostic %q", rec.PublishedIgnored, rec.ResultType, rec.Diagnostic)
		}
		w.mx.WaitMessages(t, "testing.sts.test", 1, 10*time.Second)
	})
	t.Run("TLS-Required: No passes MTA-STS, never the list", func(t *testing.T) {
		sendHeader(t, l, "TLS-Required: No", "b@strip.sts.test")
		rec := l.record(t, "b@strip.sts.test", audit.Delivered, audit.Deferred, audit.Bounced)
		if rec.Event != audit.Delivered || rec.TLS || !rec.PublishedIgnored {
			t.Errorf("%s tls %v ignored %v, want delivered in clear, ignored", rec.Event, rec.TLS, rec.PublishedIgnored)
		}
		sendHeader(t, l, "TLS-Required: No", "b@listed.sts.test")
		rec = l.record(t, "b@listed.sts.test", audit.Delivered, audit.Deferred, audit.Bounced)
		if rec.Event != audit.Bounced || rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
			t.Errorf("%s %q, want the list's bounce", rec.Event, rec.Diagnostic)
		}
		if atMX("listed.sts.test") != 0 {
			t.Errorf("a listed domain's mail went out")
		}
	})
	t.Run("policy host down after a first fetch, and after a restart", func(t *testing.T) {
		rec := attempt(t, l, "a@down.sts.test")
		if rec.Event != audit.Delivered || rec.MX != "mx.sts.test" || rec.STSPolicyID != "idenforcedown" {
			t.Fatalf("first: %s via %s policy %q", rec.Event, rec.MX, rec.STSPolicyID)
		}
		w.down.Stop()
		served := w.down.Requests()
		rec = attempt(t, l, "b@down.sts.test")
		if rec.Event != audit.Delivered || rec.MX != "mx.sts.test" || rec.STSMode != "enforce" {
			t.Fatalf("cached: %s via %s mode %q", rec.Event, rec.MX, rec.STSMode)
		}
		l.stop()
		if _, err := os.Stat(filepath.Join(spool, relay.STSCacheDir, "down.sts.test.json")); err != nil {
			t.Fatalf("no cached policy on disk: %v", err)
		}
		l2 := runRelay(t, l.world, l.cfg)
		rec = attempt(t, l2, "c@down.sts.test")
		if rec.Event != audit.Delivered || rec.MX != "mx.sts.test" || rec.STSMode != "enforce" || rec.STSPolicyID != "idenforcedown" {
			t.Fatalf("after restart: %s via %s mode %q id %q", rec.Event, rec.MX, rec.STSMode, rec.STSPolicyID)
		}
		if n := w.out.conns.Load(); n != 0 {
			t.Errorf("%d connections to the MX outside the cached policy", n)
		}
		if w.down.Requests() != served {
			t.Errorf("the stopped policy host was asked")
		}
		l2.stop()
	})
	t.Run("published policies off: nothing fetched, a held policy named", func(t *testing.T) {
		// A new spool: ok.sts.test is cold, and must stay so.
		cold := publishedRelay(t, w.ca, w.dns.Addr(), "", func(c *relay.Config) { c.PublishedPolicies = false })
		asked := w.ok.Requests()
		rec := attempt(t, cold, "a@ok.sts.test")
		if rec.Event != audit.Delivered || rec.STSPolicyID != "" || !rec.PublishedIgnored {
			t.Errorf("cold: %s policy %q ignored %v", rec.Event, rec.STSPolicyID, rec.PublishedIgnored)
		}
		// The first relay's spool holds ok.sts.test's policy: it is
		// named as ignored, still without asking the policy host.
		cfg := l.cfg
		cfg.PublishedPolicies = false
		held := runRelay(t, l.world, cfg)
		rec = attempt(t, held, "b@ok.sts.test")
		if rec.Event != audit.Delivered || rec.STSPolicyID != "idenforceok" || !rec.PublishedIgnored {
			t.Errorf("held: %s policy %q ignored %v", rec.Event, rec.STSPolicyID, rec.PublishedIgnored)
		}
		if n := w.ok.Requests() - asked; n != 0 {
			t.Errorf("the policy host was asked %d times with published policies off", n)
		}
	})
}
