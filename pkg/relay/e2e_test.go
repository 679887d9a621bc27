package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
)

// These tests run the relay against real Postfix peers on loopback
// addresses and judge it by what the peers stored, not by its own word.

// world is the shared lab: partner MX hosts with each TLS variant, the
// company's internal Postfix that relays into smgctl and receives the
// NDRs for corp.test, and a DNS server for all of them.
type world struct {
	dns      *testpeer.DNS
	ca       *testpeer.CA
	modern   *testpeer.Postfix // TLS 1.2+ with a test-CA certificate
	none     *testpeer.Postfix // no STARTTLS
	null     *testpeer.Postfix // NULL ciphers only
	aes128   *testpeer.Postfix // TLS 1.2, AES-128 only
	tls10    *testpeer.Postfix // TLS 1.0 only
	self     *testpeer.Postfix // self-signed certificate
	internal *testpeer.Postfix // corp.test: relayhost = smgctl
}

var domainsOf = map[string][]string{
	"modern": {"modern.test", "selfok.test", "xn--bcher-kva.test", "backup.test", "down.test", "mitm-strip.test", "mitm-454.test", "mitm-inject.test"},
	"none":   {"none.test", "clear.test", "testing.test", "defer.test", "edit.test", "catchall.test", "exempt.test", "later.test", "later2.test"},
	"null":   {"null.test"},
	"aes128": {"aes128.test", "multi.test", "sub.multi.test"},
	"tls10":  {"tls10.test"},
	"self":   {"self.test"},
}

// startWorld starts the named peers (all when none are named).
func startWorld(t *testing.T, only ...string) *world {
	t.Helper()
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	w := &world{dns: testpeer.StartDNS(t), ca: testpeer.NewCA(t)}
	want := func(name string) bool { return len(only) == 0 || slices.Contains(only, name) }
	mk := func(name string, tls testpeer.TLSMode, main map[string]string) *testpeer.Postfix {
		if !want(name) {
			return nil
		}
		p := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: tls, CA: w.ca, Domains: domainsOf[name], Main: main})
		w.dns.AddA(p.Hostname, p.IP.String())
		for _, d := range domainsOf[name] {
			w.dns.AddMX(d, 10, p.Hostname)
		}
		return p
	}
	w.modern = mk("modern", testpeer.TLSModern, nil)
	w.none = mk("none", testpeer.TLSNone, nil)
	w.null = mk("null", testpeer.TLSNullOnly, nil)
	w.aes128 = mk("aes128", testpeer.TLSModern, map[string]string{
		"smtpd_tls_protocols":           ">=TLSv1.2 <=TLSv1.2",
		"smtpd_tls_mandatory_protocols": ">=TLSv1.2 <=TLSv1.2",
		"tls_medium_cipherlist":         "AES128",
		"tls_high_cipherlist":           "AES128",
	})
	w.tls10 = mk("tls10", testpeer.TLS10Only, nil)
	w.self = mk("self", testpeer.TLSSelfSigned, nil)

	if w.modern == nil || w.none == nil {
		return w
	}
	// backup.test: the preferred MX has no TLS, the backup has.
	w.dns.Remove("backup.test")
	w.dns.AddMX("backup.test", 10, w.none.Hostname)
	w.dns.AddMX("backup.test", 20, w.modern.Hostname)
	// down.test: the preferred MX does not answer at all.
	w.dns.Remove("down.test")
	dead := testpeer.FreeLoopbackIP(t)
	w.dns.AddA("dead.down.test", dead.String())
	w.dns.AddMX("down.test", 10, "dead.down.test")
	w.dns.AddMX("down.test", 20, w.modern.Hostname)
	// halfdown.test: the preferred MX has no TLS, the backup does not
	// answer (and might have had TLS).
	w.dns.AddA("dead.halfdown.test", dead.String())
	w.dns.AddMX("halfdown.test", 10, w.none.Hostname)
	w.dns.AddMX("halfdown.test", 20, "dead.halfdown.test")
	// firstfail.test (bits=256): both MX hosts refuse, each for its own
	// reason.
	if w.aes128 != nil {
		w.dns.AddMX("firstfail.test", 10, w.aes128.Hostname)
		w.dns.AddMX("firstfail.test", 20, w.none.Hostname)
	}
	return w
}

// startInternal starts the company's server once the relay's address is
// known, and points corp.test's MX at it for the NDRs.
func (w *world) startInternal(t *testing.T, relayAddr string) {
	t.Helper()
	w.internal = testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: []string{"corp.test"}, RelayHost: relayAddr})
	w.dns.AddA(w.internal.Hostname, w.internal.IP.String())
	w.dns.AddMX("corp.test", 10, w.internal.Hostname)
}

// lab is one running relay.
type lab struct {
	*world
	relay  *relay.Relay
	cfg    relay.Config
	stop   func()
	policy string
	logs   *lockedWriter
}

func startRelay(t *testing.T, w *world, policyText string, tweak func(*relay.Config)) *lab {
	t.Helper()
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "relay.corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Policy = filepath.Join(dir, "policy.conf")
	cfg.Resolver = w.dns.Addr()
	cfg.CAFile = w.ca.CertFile()
	cfg.Admin = "127.0.0.1:0"
	cfg.DelayWarning = 0
	if err := os.WriteFile(cfg.Policy, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return runRelay(t, w, cfg)
}

func runRelay(t *testing.T, w *world, cfg relay.Config) *lab {
	t.Helper()
	logs := &lockedWriter{w: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := relay.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	l := &lab{world: w, relay: r, cfg: cfg, policy: cfg.Policy, logs: logs}
	stopped := false
	l.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	}
	t.Cleanup(func() {
		l.stop()
		if t.Failed() {
			t.Logf("relay log:\n%s", logs.String())
		}
	})
	return l
}

// lockedWriter lets the relay's goroutines log into one buffer that the
// test reads.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// send submits a message straight to the relay with swaks.
func (l *lab) send(t *testing.T, from string, to ...string) {
	t.Helper()
	sendVia(t, l.relay.Addr().String(), from, to...)
}

func sendVia(t *testing.T, server, from string, to ...string) {
	t.Helper()
	out, code := testpeer.Swaks(t, "--server", server, "--from", from, "--to", strings.Join(to, ","),
		"--helo", "client.corp.test", "--header", "Subject: e2e to "+strings.Join(to, ","), "--body", "Hello from the e2e test.\n")
	if code != 0 {
		t.Fatalf("swaks to %s failed (%d):\n%s", server, code, out)
	}
}

// record waits for an audit record for rcpt with one of the events.
func (l *lab) record(t *testing.T, rcpt string, events ...audit.Event) audit.Record {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.Open(l.cfg.AuditLog)
		if err == nil {
			var found *audit.Record
			audit.Scan(f, func(r audit.Record) error {
				for _, e := range events {
					if r.Recipient == rcpt && r.Event == e {
						found = &r
					}
				}
				return nil
			})
			f.Close()
			if found != nil {
				return *found
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(l.cfg.AuditLog)
			t.Fatalf("no %v audit record for %s after 30s; audit log:\n%s", events, rcpt, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dsnFor waits for the NDR in the sender's mailbox that reports on rcpt
// and returns its per-recipient delivery-status fields.
func (w *world) dsnFor(t *testing.T, rcpt string) textproto.MIMEHeader {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range w.internal.Messages("corp.test") {
			if h := reportOn(t, m, rcpt); h != nil {
				return h
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no DSN for %s in corp.test's mailbox\n--- internal maillog:\n%s", rcpt, w.internal.Maillog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reportOn parses a stored message as an RFC 3464 report and returns the
// recipient block for rcpt, nil when it is not a report on rcpt.
func reportOn(t *testing.T, m testpeer.Message, rcpt string) textproto.MIMEHeader {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Raw))
	if err != nil {
		return nil
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return nil
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			return nil
		}
		// RFC 6533: SMTPUTF8 mail is reported in the global form.
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "message/delivery-status" && ct != "message/global-delivery-status" {
			continue
		}
		tr := textproto.NewReader(bufio.NewReader(p))
		if _, err := tr.ReadMIMEHeader(); err != nil {
			return nil
		}
		for {
			h, err := tr.ReadMIMEHeader()
			if strings.EqualFold(h.Get("Final-Recipient"), "rfc822; "+rcpt) {
				if msg.Header.Get("Auto-Submitted") != "auto-replied" || !strings.HasPrefix(msg.Header.Get("From"), "MAILER-DAEMON@relay.corp.test") {
					t.Errorf("DSN headers: From %q, Auto-Submitted %q", msg.Header.Get("From"), msg.Header.Get("Auto-Submitted"))
				}
				return h
			}
			if err != nil {
				return nil
			}
		}
	}
}

// waitPolicy waits until the relay's /healthz reports n policy entries.
func (l *lab) waitPolicy(t *testing.T, entries int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		h := l.healthz(t)
		if int(h["policy_entries"].(float64)) == entries {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy not in force within %v: %v", within, h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *lab) healthz(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + l.relay.AdminAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

func (l *lab) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + l.relay.AdminAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// replacePolicy writes the policy file the way `smgctl policy` does:
// a temp file renamed over the old one.
func replacePolicy(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const mainPolicy = `# e2e policy
modern.test
none.test
null.test
aes128.test      bits=256
tls10.test       min-tls=1.2
self.test        verify=cert
selfok.test      verify=cert
testing.test     mode=testing
defer.test       on-fail=defer
backup.test
down.test
halfdown.test
firstfail.test   bits=256
mitm-strip.test
mitm-454.test
mitm-inject.test
`

func TestRelayEndToEnd(t *testing.T) {
	w := startWorld(t)
	mitms := map[string]*mitm{
		"mitm-strip.test":  startMITM(t, w.modern.Addr(), stripSTARTTLS),
		"mitm-454.test":    startMITM(t, w.modern.Addr(), refuse454),
		"mitm-inject.test": startMITM(t, w.modern.Addr(), injectReply),
	}
	l := startRelay(t, w, mainPolicy, func(c *relay.Config) {
		for d, m := range mitms {
			c.Routes[d] = m.Addr
		}
	})
	w.startInternal(t, l.relay.Addr().String())

	t.Run("listed domain, good TLS: delivered over TLS", func(t *testing.T) {
		l.send(t, "alice@corp.test", "bob@modern.test")
		msgs := w.modern.WaitMessages(t, "modern.test", 1, 30*time.Second)
		recv := msgs[0].Received()
		if len(recv) == 0 || !strings.Contains(recv[0], "using TLSv1.") {
			t.Errorf("the MX's Received: header shows no TLS: %q", recv)
		}
		rec := l.record(t, "bob@modern.test", audit.Delivered)
		if !rec.TLS || !strings.HasPrefix(rec.TLSVersion, "TLSv1.") || rec.Cipher == "" || rec.Bits < 128 ||
			rec.MX != w.modern.Hostname || rec.IP != w.modern.IP.String() ||
			rec.PolicyTarget != "modern.test" || rec.PolicyLine != 2 || rec.Requirement == nil || rec.Requirement.Bits != 112 {
			t.Errorf("audit record: %+v", rec)
		}
		t.Logf("negotiated %s %s (%d bits), Received: %s", rec.TLSVersion, rec.Cipher, rec.Bits, recv[0])
	})

	// The NDR cases go the way a company's mail does: internal Postfix →
	// relayhost smgctl → (refused) → DSN back to the internal Postfix.
	for _, tc := range []struct{ rcpt, diag string }{
		{"bob@none.test", "503 5.7.0 encryption too weak 0 less than 112"},
		{"bob@null.test", "503 5.7.0 encryption too weak 0 less than 112"},
		{"bob@aes128.test", "503 5.7.0 encryption too weak 128 less than 256"},
		{"bob@tls10.test", "503 5.7.0 protocol too old TLSv1.0 less than TLSv1.2"},
		{"bob@self.test", "503 5.7.0 certificate not verified: "},
	} {
		t.Run("bounce "+tc.rcpt, func(t *testing.T) {
			sendVia(t, w.internal.Addr(), "alice@corp.test", tc.rcpt)
			h := w.dsnFor(t, tc.rcpt)
			if got := h.Get("Diagnostic-Code"); !strings.HasPrefix(got, "smtp; "+tc.diag) {
				t.Errorf("Diagnostic-Code = %q, want %q", got, "smtp; "+tc.diag)
			}
			// SPEC §4: no Remote-MTA: the MX sent no such reply, the
			// gateway's own policy refused.
			if h.Get("Action") != "failed" || h.Get("Status") != "5.7.0" || len(h["Remote-Mta"]) != 0 {
				t.Errorf("DSN fields: %v", h)
			}
			rec := l.record(t, tc.rcpt, audit.Bounced)
			if !strings.HasPrefix(rec.Diagnostic, tc.diag) {
				t.Errorf("audit diagnostic %q", rec.Diagnostic)
			}
			domain := strings.SplitN(tc.rcpt, "@", 2)[1]
			peer := map[string]*testpeer.Postfix{"none.test": w.none, "null.test": w.null, "aes128.test": w.aes128, "tls10.test": w.tls10, "self.test": w.self}[domain]
			if n := len(peer.Messages(domain)); n != 0 {
				t.Errorf("%d messages reached %s", n, domain)
			}
		})
	}

	t.Run("verify=cert with the operator CA: delivered", func(t *testing.T) {
		l.send(t, "alice@corp.test", "bob@selfok.test")
		w.modern.WaitMessages(t, "selfok.test", 1, 30*time.Second)
		if rec := l.record(t, "bob@selfok.test", audit.Delivered); !rec.CertVerified {
			t.Errorf("audit: %+v", rec)
		}
	})

	t.Run("unlisted domain without STARTTLS: delivered in clear", func(t *testing.T) {
		l.send(t, "alice@corp.test", "carol@clear.test")
		msgs := w.none.WaitMessages(t, "clear.test", 1, 30*time.Second)
		if recv := msgs[0].Received(); len(recv) == 0 || strings.Contains(recv[0], "using TLS") {
			t.Errorf("Received: %q", recv)
		}
		if rec := l.record(t, "carol@clear.test", audit.Delivered); rec.TLS || rec.Requirement != nil {
			t.Errorf("audit: %+v", rec)
		}
	})

	t.Run("mode=testing: delivered, would-bounce recorded", func(t *testing.T) {
		l.send(t, "alice@corp.test", "dave@testing.test")
		w.none.WaitMessages(t, "testing.test", 1, 30*time.Second)
		rec := l.record(t, "dave@testing.test", audit.WouldBounce)
		if rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" || rec.Requirement.Mode != "testing" {
			t.Errorf("audit: %+v", rec)
		}
	})

	t.Run("on-fail=defer: deferred, nothing sent, no NDR", func(t *testing.T) {
		l.send(t, "alice@corp.test", "erin@defer.test")
		rec := l.record(t, "erin@defer.test", audit.Deferred)
		if rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
			t.Errorf("audit: %+v", rec)
		}
		if n := len(w.none.Messages("defer.test")); n != 0 {
			t.Errorf("%d messages reached defer.test", n)
		}
		for _, m := range w.internal.Messages("corp.test") {
			if reportOn(t, m, "erin@defer.test") != nil {
				t.Error("an NDR for a deferred recipient")
			}
		}
	})

	for _, d := range []string{"backup.test", "down.test"} {
		t.Run("preferred MX unusable, backup good: "+d, func(t *testing.T) {
			l.send(t, "alice@corp.test", "frank@"+d)
			w.modern.WaitMessages(t, d, 1, 30*time.Second)
			if rec := l.record(t, "frank@"+d, audit.Delivered); rec.MX != w.modern.Hostname || !rec.TLS {
				t.Errorf("audit: %+v", rec)
			}
			if d == "backup.test" && len(w.none.Messages(d)) != 0 {
				t.Error("mail reached the preferred MX without TLS")
			}
		})
	}

	// The route rule (policy.Decide) with several MX hosts.
	t.Run("every MX reached and refused: bounce with the first one's diagnostic", func(t *testing.T) {
		sendVia(t, w.internal.Addr(), "alice@corp.test", "hank@firstfail.test")
		const diag = "503 5.7.0 encryption too weak 128 less than 256" // the preferred MX's, not the backup's "0 less than 256"
		if got := w.dsnFor(t, "hank@firstfail.test").Get("Diagnostic-Code"); got != "smtp; "+diag {
			t.Errorf("Diagnostic-Code = %q, want %q", got, "smtp; "+diag)
		}
		if rec := l.record(t, "hank@firstfail.test", audit.Bounced); rec.Diagnostic != diag || rec.MX != w.aes128.Hostname {
			t.Errorf("audit: %+v", rec)
		}
		if n := len(w.aes128.Messages("firstfail.test")) + len(w.none.Messages("firstfail.test")); n != 0 {
			t.Errorf("%d messages reached an MX", n)
		}
	})
	t.Run("an MX unreachable, the other refuses: deferred, no NDR", func(t *testing.T) {
		l.send(t, "alice@corp.test", "ivan@halfdown.test")
		rec := l.record(t, "ivan@halfdown.test", audit.Deferred)
		if rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" || rec.MX != w.none.Hostname {
			t.Errorf("audit: %+v", rec)
		}
		if n := len(w.none.Messages("halfdown.test")); n != 0 {
			t.Errorf("%d messages reached halfdown.test", n)
		}
	})

	for d, m := range mitms {
		t.Run("man in the middle "+d, func(t *testing.T) {
			l.send(t, "alice@corp.test", "gina@"+d)
			rec := l.record(t, "gina@"+d, audit.Bounced)
			if !strings.HasPrefix(rec.Diagnostic, "503 5.7.0 encryption too weak 0 less than 112") {
				t.Errorf("audit: %+v", rec)
			}
			if n := m.after.Load(); n != 0 || m.mails.Load() != 0 {
				t.Errorf("the proxy forwarded %d bytes after MAIL FROM (%d MAIL commands)", n, m.mails.Load())
			}
			if d != "mitm-strip.test" && m.starts.Load() == 0 {
				t.Errorf("the relay never tried STARTTLS")
			}
			if n := len(w.modern.Messages(d)); n != 0 {
				t.Errorf("%d messages reached the MX", n)
			}
		})
	}

	t.Run("policy edits apply within 1s; a broken file keeps the old policy", func(t *testing.T) {
		l.send(t, "alice@corp.test", "hank@edit.test")
		w.none.WaitMessages(t, "edit.test", 1, 30*time.Second)
		l.record(t, "hank@edit.test", audit.Delivered)

		entries := strings.Count(mainPolicy, ".test")
		replacePolicy(t, l.policy, mainPolicy+"edit.test\n")
		l.waitPolicy(t, entries+1, time.Second)
		l.send(t, "alice@corp.test", "ivan@edit.test")
		if rec := l.record(t, "ivan@edit.test", audit.Bounced); rec.PolicyTarget != "edit.test" {
			t.Errorf("audit: %+v", rec)
		}

		replacePolicy(t, l.policy, mainPolicy+"edit.test bits=9999\n")
		deadline := time.Now().Add(time.Second)
		for !strings.Contains(l.metrics(t), "smgctl_policy_reload_failures_total 1") {
			if time.Now().After(deadline) {
				t.Fatalf("broken file not reported within 1s:\n%s", l.metrics(t))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if h := l.healthz(t); int(h["policy_entries"].(float64)) != entries+1 || !strings.Contains(h["policy_last_error"].(string), fmt.Sprintf(":%d:", strings.Count(mainPolicy, "\n")+1)) {
			t.Errorf("healthz after a broken file: %v", h)
		}
		l.send(t, "alice@corp.test", "judy@edit.test")
		if rec := l.record(t, "judy@edit.test", audit.Bounced); rec.PolicyTarget != "edit.test" {
			t.Errorf("the old policy was not kept: %+v", rec)
		}
		if n := len(w.none.Messages("edit.test")); n != 1 {
			t.Errorf("%d messages at edit.test, want only the first", n)
		}
	})

	t.Run("audit log chain verifies", func(t *testing.T) {
		f, err := os.Open(l.cfg.AuditLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		n, err := audit.Verify(f)
		if err != nil || n < 10 {
			t.Errorf("audit.Verify = %d lines, %v", n, err)
		}
	})
}

// One message, five recipients, each decided on its own entry.
func TestRelayMultiRecipient(t *testing.T) {
	w := startWorld(t, "aes128", "none")
	// corp.test is exempt from the catch-all: its internal server has no
	// TLS, and the NDRs must reach it (they follow the policy like any mail).
	l := startRelay(t, w, "vip@multi.test bits=256\nmulti.test\nsub.multi.test min-tls=1.3\nexempt.test mode=off\ncorp.test mode=off\n*\n", nil)
	w.startInternal(t, l.relay.Addr().String())
	sendVia(t, w.internal.Addr(), "alice@corp.test",
		"vip@multi.test", "x@multi.test", "y@sub.multi.test", "z@catchall.test", "w@exempt.test")

	w.aes128.WaitMessages(t, "multi.test", 1, 30*time.Second)
	w.none.WaitMessages(t, "exempt.test", 1, 30*time.Second)
	want := map[string]struct {
		event  audit.Event
		target string
		diag   string
	}{
		"vip@multi.test":   {audit.Bounced, "vip@multi.test", "503 5.7.0 encryption too weak 128 less than 256"},
		"x@multi.test":     {audit.Delivered, "multi.test", ""},
		"y@sub.multi.test": {audit.Bounced, "sub.multi.test", "503 5.7.0 protocol too old TLSv1.2 less than TLSv1.3"},
		"z@catchall.test":  {audit.Bounced, "*", "503 5.7.0 encryption too weak 0 less than 112"},
		"w@exempt.test":    {audit.Delivered, "exempt.test", ""},
	}
	for rcpt, wt := range want {
		rec := l.record(t, rcpt, wt.event)
		if rec.PolicyTarget != wt.target || rec.Diagnostic != wt.diag {
			t.Errorf("%s: %+v", rcpt, rec)
		}
		if wt.diag != "" {
			if h := w.dsnFor(t, rcpt); h.Get("Diagnostic-Code") != "smtp; "+wt.diag {
				t.Errorf("%s: Diagnostic-Code %q", rcpt, h.Get("Diagnostic-Code"))
			}
		}
	}
	if msgs := w.aes128.Messages("multi.test"); len(msgs) != 1 || len(w.aes128.Messages("sub.multi.test")) != 0 {
		t.Errorf("multi.test got %d, sub.multi.test %d messages", len(msgs), len(w.aes128.Messages("sub.multi.test")))
	}
	if n := len(w.none.Messages("catchall.test")); n != 0 {
		t.Errorf("%d messages reached catchall.test", n)
	}
}

// closedPort is a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestRelayRestartDeliversSpool(t *testing.T) {
	w := startWorld(t, "none")

	t.Run("stopped normally", func(t *testing.T) {
		l := startRelay(t, w, "", func(c *relay.Config) { c.Routes["later.test"] = closedPort(t) })
		for i := range 3 {
			l.send(t, "alice@corp.test", fmt.Sprintf("u%d@later.test", i))
		}
		for i := range 3 {
			l.record(t, fmt.Sprintf("u%d@later.test", i), audit.Deferred)
		}
		l.stop()
		cfg := l.cfg
		cfg.Listen = "127.0.0.1:0"
		cfg.Admin = ""
		cfg.Routes = map[string]string{"later.test": w.none.Addr()}
		runRelay(t, w, cfg)
		w.none.WaitMessages(t, "later.test", 3, 30*time.Second)
	})

	t.Run("killed with -9", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "smgctl")
		if out, err := exec.Command("go", "build", "-o", bin, "github.com/smgctl/smgctl/cmd/smgctl").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		dir := t.TempDir()
		// A named policy path must exist; an empty file enforces nothing.
		if err := os.WriteFile(filepath.Join(dir, "policy.conf"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		listen := closedPort(t)
		args := []string{"relay", "--listen", listen, "--hostname", "relay.corp.test",
			"--spool", filepath.Join(dir, "spool"), "--audit-log", filepath.Join(dir, "audit.log"),
			"--policy", filepath.Join(dir, "policy.conf"), "--resolver", w.dns.Addr(),
			"--route", "later2.test=" + closedPort(t)}
		cmd := exec.Command(bin, args...)
		stderr := &lockedWriter{w: &bytes.Buffer{}}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		waitListening(t, listen, exited, stderr)
		for i := range 3 {
			sendVia(t, listen, "alice@corp.test", fmt.Sprintf("k%d@later2.test", i))
		}
		// Accepted (swaks saw 250), not delivered: kill it without warning.
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		<-exited

		cfg := relay.DefaultConfig()
		cfg.Listen = "127.0.0.1:0"
		cfg.Hostname = "relay.corp.test"
		cfg.Spool = filepath.Join(dir, "spool")
		cfg.AuditLog = filepath.Join(dir, "audit.log")
		cfg.Policy = filepath.Join(dir, "policy.conf")
		cfg.Resolver = w.dns.Addr()
		cfg.Routes = map[string]string{"later2.test": w.none.Addr()}
		l := runRelay(t, w, cfg)
		w.none.WaitMessages(t, "later2.test", 3, 30*time.Second)
		for i := range 3 {
			l.record(t, fmt.Sprintf("k%d@later2.test", i), audit.Delivered)
		}
		f, _ := os.Open(cfg.AuditLog)
		defer f.Close()
		if _, err := audit.Verify(f); err != nil {
			t.Errorf("audit chain after kill -9: %v", err)
		}
	})
}

func waitListening(t *testing.T, addr string, exited chan struct{}, stderr *lockedWriter) {
	t.Helper()
	// Recovery of a large journal on a loaded two-core CI machine.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp4", addr)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("smgctl relay exited:\n%s", stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("smgctl relay not listening on %s:\n%s", addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
