package relay_test

import (
	"context"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// requireTLSBody is the body of the REQUIRETLS test messages: a DSN must
// never quote it (RFC 8689 §5).
const requireTLSBody = "The REQUIRETLS secret body line.\r\n"

// submitRequireTLS sends one message over STARTTLS with MAIL FROM …
// REQUIRETLS RET=FULL into the relay, as an MUA or an internal MTA would.
func submitRequireTLS(t *testing.T, l *lab, rcpt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := smtpclient.Dial(ctx, l.relay.Addr().String(), smtpclient.Options{
		HeloName: "client.corp.test", ServerName: "relay.corp.test", RootCAs: l.ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := s.StartTLS(ctx); err != nil || !out.TLS || !out.Verified {
		t.Fatalf("STARTTLS into the relay: %+v %v", out, err)
	}
	if !s.OffersRequireTLS() {
		t.Fatal("the relay does not offer REQUIRETLS over TLS")
	}
	msg := "From: alice@corp.test\r\nTo: " + rcpt + "\r\nSubject: requiretls to " + rcpt + "\r\n\r\n" + requireTLSBody
	_, replies, err := s.EnvelopeTo(ctx, "alice@corp.test", smtpclient.MailOptions{RequireTLS: true, Ret: "FULL"}, []smtpclient.Recipient{{Addr: rcpt}})
	if err != nil || len(replies) != 1 || replies[0].Code != 250 {
		t.Fatalf("MAIL/RCPT REQUIRETLS for %s: %v %v", rcpt, replies, err)
	}
	if _, err := s.Data(ctx, strings.NewReader(msg)); err != nil {
		t.Fatalf("DATA for %s: %v", rcpt, err)
	}
	s.Quit(ctx)
}

// TestRelayRequireTLS: a message received with REQUIRETLS (RFC 8689)
// leaves only over TLS whose server was authenticated (here PKIX of the
// MX name against the relay's CA file) to a next hop that offers
// REQUIRETLS, and the flag goes on with it; otherwise the sender gets a
// 5.7.30 DSN without the message body, at once, and the MX gets nothing.
func TestRelayRequireTLS(t *testing.T) {
	w := startWorld(t, "modern")
	// A next hop that offers REQUIRETLS with a certificate from the CA
	// the relay trusts, and one whose certificate the relay cannot
	// verify (another CA).
	good := testpeer.StartRequireTLSServer(t, testpeer.RequireTLSOptions{
		Addr: testpeer.FreeLoopbackIP(t).String() + ":25", Hostname: "mx.rtls.test", CA: w.ca})
	bad := testpeer.StartRequireTLSServer(t, testpeer.RequireTLSOptions{
		Addr: testpeer.FreeLoopbackIP(t).String() + ":25", Hostname: "mx.rtlsbad.test"})
	for host, addr := range map[string]string{"mx.rtls.test": good.Addr(), "mx.rtlsbad.test": bad.Addr()} {
		ip, _, _ := net.SplitHostPort(addr)
		w.dns.AddA(host, ip)
		w.dns.AddMX(strings.TrimPrefix(host, "mx."), 10, host)
	}
	leaf := w.ca.Issue(t, "relay.corp.test", "127.0.0.1")
	// No list entry: REQUIRETLS alone decides.
	l := startRelay(t, w, "", func(c *relay.Config) { c.TLSCert, c.TLSKey = leaf.CertFile, leaf.KeyFile })
	w.startInternal(t, l.relay.Addr().String())

	// Inbound: REQUIRETLS is neither offered nor accepted in clear
	// (RFC 8689 §4.1); smtpserver's TestReplies proves it at the
	// engine, this at the relay.
	c, err := textproto.Dial("tcp", l.relay.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.ReadResponse(220)
	c.PrintfLine("EHLO client.corp.test")
	if _, ehlo, err := c.ReadResponse(250); err != nil || strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("EHLO in clear: %q %v", ehlo, err)
	}
	c.PrintfLine("MAIL FROM:<alice@corp.test> REQUIRETLS")
	if code, msg, _ := c.ReadResponse(250); code/100 != 5 {
		t.Errorf("MAIL FROM REQUIRETLS in clear: %d %s, want a 5xx refusal", code, msg)
	}

	for _, rcpt := range []string{"bob@modern.test", "bob@rtls.test", "bob@rtlsbad.test"} {
		submitRequireTLS(t, l, rcpt)
	}

	// Delivered to the hop that offers REQUIRETLS, with the flag on
	// MAIL FROM.
	rec := l.record(t, "bob@rtls.test", audit.Delivered, audit.Bounced, audit.Deferred)
	if rec.Event != audit.Delivered || !rec.TLS || !rec.CertVerified {
		t.Errorf("bob@rtls.test: %s tls %v verified %v (%s)", rec.Event, rec.TLS, rec.CertVerified, rec.Reply)
	}
	msgs := good.WaitMessages(t, 1, 30*time.Second)
	if !msgs[0].TLS || !msgs[0].RequireTLS() || !strings.HasSuffix(msgs[0].MailLine, " REQUIRETLS") && !strings.Contains(msgs[0].MailLine, " REQUIRETLS ") {
		t.Errorf("next hop got MAIL line %q (TLS %v)", msgs[0].MailLine, msgs[0].TLS)
	}

	// Refused at once, permanently, with 5.7.30 and without the body.
	for _, c := range []struct{ rcpt, why string }{
		{"bob@modern.test", w.modern.Hostname + " does not offer REQUIRETLS"},
		{"bob@rtlsbad.test", "server mx.rtlsbad.test not authenticated"},
	} {
		rec := l.record(t, c.rcpt, audit.Delivered, audit.Bounced, audit.Deferred)
		if rec.Event != audit.Bounced || rec.Attempt != 1 || !strings.Contains(rec.Diagnostic, "5.7.30") || !strings.Contains(rec.Diagnostic, c.why) {
			t.Errorf("%s: audit %s attempt %d diagnostic %q, want bounced on the first attempt with 5.7.30 (%s)", c.rcpt, rec.Event, rec.Attempt, rec.Diagnostic, c.why)
		}
		h := w.dsnFor(t, c.rcpt)
		if h.Get("Status") != "5.7.30" || !strings.Contains(h.Get("Diagnostic-Code"), c.why) {
			t.Errorf("%s: DSN Status %q Diagnostic-Code %q", c.rcpt, h.Get("Status"), h.Get("Diagnostic-Code"))
		}
	}
	for _, m := range w.internal.Messages("corp.test") {
		if strings.Contains(string(m.Raw), "REQUIRETLS secret body") {
			t.Errorf("a DSN quotes the REQUIRETLS message's body (RET=FULL must act as HDRS):\n%s", m.Raw)
		}
	}
	if n := len(w.modern.Messages("modern.test")); n != 0 {
		t.Errorf("Postfix without REQUIRETLS stored %d message(s)", n)
	}
	if n := len(bad.Messages()); n != 0 {
		t.Errorf("the unverified REQUIRETLS server got %d message(s)", n)
	}
}
