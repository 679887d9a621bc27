package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Issue 15: the client's DSN parameters (RFC 3461), kept with the message,
// honoured in the relay's own reports and passed on to a next hop that
// offers DSN. Judged by what real Postfix peers logged and stored.

// dsnReport is a report read back with net/mail and mime/multipart.
type dsnReport struct {
	header   mail.Header
	human    string // line breaks folded to spaces
	perMsg   textproto.MIMEHeader
	perRcpt  []textproto.MIMEHeader
	parts    []string
	original []byte
}

func readReport(t *testing.T, raw []byte) (dsnReport, bool) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return dsnReport{}, false
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		return dsnReport{}, false
	}
	r := dsnReport{header: msg.Header}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return r, true
		}
		if err != nil {
			t.Fatalf("report: %v\n%s", err, raw)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		r.parts = append(r.parts, ct)
		body, _ := io.ReadAll(p)
		switch ct {
		case "text/plain":
			if p.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
				body, _ = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
			}
			r.human = strings.Join(strings.Fields(string(body)), " ")
		case "message/delivery-status", "message/global-delivery-status":
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			r.perMsg, _ = tr.ReadMIMEHeader()
			for {
				h, err := tr.ReadMIMEHeader()
				if len(h) > 0 {
					r.perRcpt = append(r.perRcpt, h)
				}
				if err != nil {
					break
				}
			}
		default:
			r.original = body
		}
	}
}

func (r dsnReport) finalRecipients() []string {
	var out []string
	for _, h := range r.perRcpt {
		out = append(out, strings.TrimPrefix(h.Get("Final-Recipient"), "rfc822; "))
	}
	return out
}

// reportsIn are the DSNs stored in domain's maildir at p.
func reportsIn(t *testing.T, p *testpeer.Postfix, domain string) []dsnReport {
	t.Helper()
	var out []dsnReport
	for _, m := range p.Messages(domain) {
		if r, ok := readReport(t, m.Raw); ok {
			out = append(out, r)
		}
	}
	return out
}

// spoolBefore puts env into the spool at dir before a relay opens it:
// the envelope as the inbound will store it once it reads DSN parameters.
func spoolBefore(t *testing.T, dir string, env *spool.Envelope, content string) {
	t.Helper()
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if err := sp.Put(env, strings.NewReader(content)); err != nil {
		t.Fatal(err)
	}
}

func relayConfig(t *testing.T, w *world, policyText string) relay.Config {
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
	cfg.DelayWarning = 0
	if err := os.WriteFile(cfg.Policy, []byte(policyText), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

const dsnE2EBody = "From: alice@corp.test\r\nTo: bob@none.test\r\nSubject: dsn e2e\r\nMessage-ID: <dsn-e2e@corp.test>\r\n\r\nThe body the sender wants back.\r\n"

// A message queued with DSN parameters goes to a real Postfix MX (it
// offers DSN) with them: its smtpd logs MAIL with RET and ENVID and RCPT
// with NOTIFY and ORCPT; for NOTIFY=SUCCESS Postfix itself reports
// "delivered" to the sender with our ENVID and ORCPT, for NOTIFY=NEVER
// nothing; the relay sends no report of its own.
func TestRelayPassesDSNParametersToPostfix(t *testing.T) {
	w := startWorld(t, "none")
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca,
		Domains: []string{"dsn.test", "sender.test"}, Main: map[string]string{"debug_peer_list": "127.0.0.1"}})
	w.dns.AddA(mx.Hostname, mx.IP.String())
	w.dns.AddMX("dsn.test", 10, mx.Hostname)
	w.dns.AddMX("sender.test", 10, mx.Hostname)

	cfg := relayConfig(t, w, "# partners\ndsn.test verify=cert\n")
	spoolBefore(t, cfg.Spool, &spool.Envelope{
		From: "alice@sender.test", Arrival: time.Now(), DSNRet: "FULL", DSNEnvID: "E2E 1",
		Recipients: []spool.Recipient{
			{Address: "bob@dsn.test", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;Bob.Orig@corp.test"},
			{Address: "carol@dsn.test", Notify: []string{"NEVER"}, ORcpt: "rfc822;carol+x@corp.test"},
		},
	}, dsnE2EBody)
	l := runRelay(t, w, cfg)

	mx.WaitMessages(t, "dsn.test", 2, 30*time.Second)
	l.record(t, "bob@dsn.test", audit.Delivered)
	var got []dsnReport
	deadline := time.Now().Add(30 * time.Second)
	for got = reportsIn(t, mx, "sender.test"); len(got) == 0 && time.Now().Before(deadline); got = reportsIn(t, mx, "sender.test") {
		time.Sleep(50 * time.Millisecond)
	}
	log := mx.Maillog()
	for _, want := range []string{
		": MAIL FROM:<alice@sender.test> SIZE=",
		" RET=FULL ENVID=E2E+201",
		": RCPT TO:<bob@dsn.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob.Orig@corp.test",
		": RCPT TO:<carol@dsn.test> NOTIFY=NEVER ORCPT=rfc822;carol+2Bx@corp.test",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the MX's log lacks %q", want)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d reports at the sender, want Postfix's one\n--- maillog:\n%s", len(got), log)
	}
	r := got[0]
	if !strings.Contains(r.header.Get("From"), mx.Hostname) {
		t.Errorf("the report is not Postfix's: From %q", r.header.Get("From"))
	}
	if got := r.perMsg.Get("Original-Envelope-Id"); got != "E2E 1" {
		t.Errorf("Original-Envelope-Id = %q", got)
	}
	if rc := r.finalRecipients(); len(rc) != 1 || !strings.HasSuffix(rc[0], "bob@dsn.test") {
		t.Fatalf("Postfix reported on %v, want bob only", rc)
	}
	if h := r.perRcpt[0]; h.Get("Action") != "delivered" || !strings.EqualFold(strings.ReplaceAll(h.Get("Original-Recipient"), " ", ""), "rfc822;Bob.Orig@corp.test") {
		t.Errorf("Postfix's recipient fields %v", h)
	}
	if strings.Contains(l.logs.String(), "DSN queued") {
		t.Errorf("the relay sent a report of its own although the MX offers DSN:\n%s", l.logs.String())
	}
}

// The relay's own NDR for a message queued with DSN parameters reaches the
// sender's real Postfix. For the policy refusal it names the policy entry
// and line, has no Remote-MTA and keeps the B5 text; for the real MX's own
// 5xx it names that MX as Remote-MTA. It carries ENVID and ORCPT and
// (RET=FULL) the whole message; the NOTIFY=NEVER recipient is left out,
// and a message whose every recipient said NEVER gets no report.
func TestRelayPolicyNDRWithDSNParameters(t *testing.T) {
	w := startWorld(t, "none")
	internal := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: []string{"corp.test"}})
	w.dns.AddA(internal.Hostname, internal.IP.String())
	w.dns.AddMX("corp.test", 10, internal.Hostname)
	// unserved.test's MX is a real Postfix that does not take its mail:
	// it refuses the recipient itself (554 5.7.1 relay access denied).
	refuser := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone,
		Main: map[string]string{"smtpd_relay_restrictions": "reject_unauth_destination"}})
	w.dns.AddA(refuser.Hostname, refuser.IP.String())
	w.dns.AddMX("unserved.test", 10, refuser.Hostname)

	cfg := relayConfig(t, w, "# partners\n\nnone.test\n")
	spoolBefore(t, cfg.Spool, &spool.Envelope{
		From: "alice@corp.test", Arrival: time.Now(), DSNRet: "FULL", DSNEnvID: "NDR-1",
		Recipients: []spool.Recipient{
			{Address: "bob@none.test", Notify: []string{"FAILURE"}, ORcpt: "rfc822;Bob.Orig@corp.test"},
			{Address: "carol@none.test", Notify: []string{"NEVER"}},
			{Address: "erin@unserved.test", ORcpt: "rfc822;erin@corp.test"},
		},
	}, dsnE2EBody)
	spoolBefore(t, cfg.Spool, &spool.Envelope{
		From: "alice@corp.test", Arrival: time.Now(), DSNEnvID: "NEVER-ONLY",
		Recipients: []spool.Recipient{{Address: "dave@none.test", Notify: []string{"NEVER"}}},
	}, dsnE2EBody)
	l := runRelay(t, w, cfg)

	for _, rc := range []string{"bob@none.test", "carol@none.test", "dave@none.test", "erin@unserved.test"} {
		l.record(t, rc, audit.Bounced)
	}
	internal.WaitMessages(t, "corp.test", 1, 30*time.Second)
	time.Sleep(time.Second) // a second report would be here by now
	got := reportsIn(t, internal, "corp.test")
	if len(got) != 1 {
		t.Fatalf("%d reports at the sender, want 1 (none for the NEVER-only message)", len(got))
	}
	r := got[0]
	if rc := r.finalRecipients(); !slices.Equal(slices.Sorted(slices.Values(rc)), []string{"bob@none.test", "erin@unserved.test"}) {
		t.Fatalf("report on %v, want bob and erin (carol said NEVER)", rc)
	}
	if got := r.perMsg.Get("Original-Envelope-Id"); got != "NDR-1" {
		t.Errorf("Original-Envelope-Id = %q", got)
	}
	h, erin := r.perRcpt[0], r.perRcpt[1]
	if r.finalRecipients()[0] != "bob@none.test" {
		h, erin = erin, h
	}
	if erin.Get("Remote-MTA") != "dns; "+refuser.Hostname || !strings.HasPrefix(erin.Get("Diagnostic-Code"), "smtp; 554 5.7.1 <erin@unserved.test>: Relay access denied") ||
		erin.Get("Status") != "5.7.1" || erin.Get("Original-Recipient") != "rfc822; erin@corp.test" {
		t.Errorf("the MX's own refusal: %v", erin)
	}
	if !strings.Contains(r.human, "The recipient's mail server "+refuser.Hostname+" refused the message. It said: 554 5.7.1") {
		t.Errorf("human part does not attribute the MX's refusal to it:\n%s", r.human)
	}
	for k, want := range map[string]string{
		"Original-Recipient": "rfc822; Bob.Orig@corp.test", "Action": "failed", "Status": "5.7.0",
		"Diagnostic-Code": "smtp; 503 5.7.0 encryption too weak 0 less than 112", "Remote-MTA": "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	for _, want := range []string{
		"the gateway's TLS policy entry 'none.test' (policy.conf line 3) requires an encrypted connection",
		"This is the gateway's own policy decision, not a reply from the recipient's mail server",
		"What you can do:",
	} {
		if !strings.Contains(r.human, want) {
			t.Errorf("human part lacks %q:\n%s", want, r.human)
		}
	}
	if !slices.Equal(r.parts, []string{"text/plain", "message/delivery-status", "message/rfc822"}) ||
		!strings.Contains(string(r.original), "The body the sender wants back.") {
		t.Errorf("RET=FULL: parts %v, returned %q", r.parts, r.original)
	}
	if n := len(w.none.Messages("none.test")); n != 0 {
		t.Errorf("%d messages reached none.test", n)
	}
}

// offersDSN reports whether the SMTP server at addr lists DSN in EHLO.
func offersDSN(t *testing.T, addr string) bool {
	t.Helper()
	ctx := context.Background()
	s, err := smtpclient.Dial(ctx, addr, smtpclient.Options{HeloName: "probe.corp.test", Timeouts: smtpclient.UniformTimeouts(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Quit(ctx)
	return s.Supports("DSN")
}

// A real Postfix upstream (relayhost = smgctl) sends DSN parameters.
// NOTIFY=NEVER produces no bounce; ENVID and ORCPT appear in our DSN;
// RET=FULL returns the body.
func TestRelayDSNFromPostfixUpstream(t *testing.T) {
	w := startWorld(t, "none")
	l := startRelay(t, w, "corp.test mode=off\nnone.test\n", nil)
	if !offersDSN(t, l.relay.Addr().String()) {
		t.Fatal("the relay's inbound does not offer DSN (RFC 3461)")
	}
	w.startInternal(t, l.relay.Addr().String())

	// The company's client submits to its own Postfix with DSN parameters;
	// that Postfix relays to smgctl and passes them on.
	ctx := context.Background()
	s, err := smtpclient.Dial(ctx, w.internal.Addr(), smtpclient.Options{HeloName: "client.corp.test", Timeouts: smtpclient.UniformTimeouts(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello(ctx); err != nil || !s.Supports("DSN") {
		t.Fatalf("internal Postfix: %v %v", err, s.Extensions())
	}
	send := func(o smtpclient.MailOptions, rcpts ...smtpclient.Recipient) {
		t.Helper()
		_, reps, err := s.EnvelopeTo(ctx, "alice@corp.test", o, rcpts)
		if err != nil {
			t.Fatal(err)
		}
		for _, rep := range reps {
			if rep.Code != 250 {
				t.Fatalf("RCPT: %v", rep)
			}
		}
		if _, err := s.Data(ctx, strings.NewReader(dsnE2EBody)); err != nil {
			t.Fatal(err)
		}
	}
	send(smtpclient.MailOptions{Ret: "FULL", EnvID: "UP-1"},
		smtpclient.Recipient{Addr: "bob@none.test", Notify: []string{"FAILURE"}, ORcpt: "rfc822;Bob.Orig@corp.test"},
		smtpclient.Recipient{Addr: "carol@none.test", Notify: []string{"NEVER"}})
	send(smtpclient.MailOptions{EnvID: "UP-NEVER"}, smtpclient.Recipient{Addr: "dave@none.test", Notify: []string{"NEVER"}})
	s.Quit(ctx)

	for _, rc := range []string{"bob@none.test", "carol@none.test", "dave@none.test"} {
		l.record(t, rc, audit.Bounced)
	}
	w.internal.WaitMessages(t, "corp.test", 1, 30*time.Second)
	time.Sleep(2 * time.Second) // a second report would be here by now
	got := reportsIn(t, w.internal, "corp.test")
	if len(got) != 1 {
		t.Fatalf("%d reports at the sender, want 1 (NOTIFY=NEVER gets none)\n--- internal maillog:\n%s", len(got), w.internal.Maillog())
	}
	r := got[0]
	if rc := r.finalRecipients(); !slices.Equal(rc, []string{"bob@none.test"}) {
		t.Fatalf("report on %v, want bob only", rc)
	}
	if got := r.perMsg.Get("Original-Envelope-Id"); got != "UP-1" {
		t.Errorf("Original-Envelope-Id = %q", got)
	}
	if got := r.perRcpt[0].Get("Original-Recipient"); got != "rfc822; Bob.Orig@corp.test" {
		t.Errorf("Original-Recipient = %q", got)
	}
	if !strings.Contains(r.header.Get("From"), "relay.corp.test") || !strings.Contains(string(r.original), "The body the sender wants back.") {
		t.Errorf("report From %q, returned %q", r.header.Get("From"), r.original)
	}
}
