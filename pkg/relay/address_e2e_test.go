package relay_test

import (
	"net/textproto"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
)

// rcptCase is one RCPT TO and the start of the reply the relay must give.
type rcptCase struct{ addr, reply string }

// rawSend submits one message to the relay with the addresses exactly as
// written (swaks would re-spell some of them), checks each RCPT reply and
// sends the message when a recipient was accepted.
func rawSend(t *testing.T, server, from string, rcpts ...rcptCase) {
	t.Helper()
	c, err := textproto.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	step := func(cmd string, code int) string {
		t.Helper()
		if cmd != "" {
			if err := c.PrintfLine("%s", cmd); err != nil {
				t.Fatal(err)
			}
		}
		_, msg, err := c.ReadResponse(code)
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return msg
	}
	step("", 220)
	step("EHLO client.corp.test", 250)
	step("MAIL FROM:<"+from+"> SMTPUTF8", 250)
	accepted := 0
	for _, r := range rcpts {
		if err := c.PrintfLine("RCPT TO:<%s>", r.addr); err != nil {
			t.Fatal(err)
		}
		line, err := c.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(line, r.reply) {
			t.Errorf("RCPT TO:<%s>: %q, want %q...", r.addr, line, r.reply)
		}
		if strings.HasPrefix(line, "250") {
			accepted++
		}
	}
	if accepted > 0 {
		step("DATA", 354)
		step("From: alice@corp.test\r\nTo: undisclosed-recipients:;\r\nSubject: address forms\r\n\r\nHello.\r\n.", 250)
	}
	step("QUIT", 221)
}

// Issue 10 points 3, 5 and 14 through the real relay to real Postfix MX
// hosts: every spelling of a listed domain is under that domain's entry
// (a no-TLS MX gets nothing), a domain that is not one is refused at
// RCPT, internationalised domains are looked up by their A-labels, quoted
// local parts arrive as one recipient each with nothing injected, and
// address literals are refused.
func TestRelayAddressForms(t *testing.T) {
	w := startWorld(t, "modern", "none")
	// Postfix takes an "@" in a quoted local part for source routing and
	// refuses it unless allowed (allow_untrusted_routing); this MX allows
	// it, so what the relay sent can be seen arriving.
	quotedMX := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca,
		Domains: []string{"quoted.test"}, Main: map[string]string{"allow_untrusted_routing": "yes"}})
	w.dns.AddA(quotedMX.Hostname, quotedMX.IP.String())
	w.dns.AddMX("quoted.test", 10, quotedMX.Hostname)
	l := startRelay(t, w, "none.test\nquoted.test\nselfok.test\nbücher.test\n", nil)
	w.startInternal(t, l.relay.Addr().String())

	t.Run("every spelling of a listed domain meets its entry", func(t *testing.T) {
		rawSend(t, l.relay.Addr().String(), "alice@corp.test",
			rcptCase{"u1@NONE.Test.", "250 "},
			rcptCase{"u2@ｎｏｎｅ.test", "250 "},
			rcptCase{"u3@ＮＯＮＥ．ｔｅｓｔ", "250 "},
			rcptCase{`"u 4"@None.test`, "250 "},
			rcptCase{"u5@none.test..", "501 5.1.3 Bad recipient address syntax"},
			rcptCase{"u6@.none.test", "501 5.1.3 "},
			rcptCase{"u7@none..test", "501 5.1.3 "},
			rcptCase{"u8@none_x.test", "501 5.1.3 "},
			rcptCase{"u9@-none.test", "501 5.1.3 "},
			rcptCase{"u10@" + strings.Repeat("n", 64) + ".test", "501 5.1.3 "},
		)
		const diag = "503 5.7.0 encryption too weak 0 less than 112"
		for _, rcpt := range []string{"u1@none.test", "u2@none.test", "u3@none.test", `"u 4"@none.test`} {
			rec := l.record(t, rcpt, audit.Bounced, audit.Delivered)
			if rec.Event != audit.Bounced || rec.PolicyTarget != "none.test" || rec.Diagnostic != diag {
				t.Errorf("%s: audit %+v", rcpt, rec)
			}
			if h := w.dsnFor(t, rcpt); h.Get("Diagnostic-Code") != "smtp; "+diag {
				t.Errorf("%s: DSN %v", rcpt, h)
			}
		}
		if n := len(w.none.Messages("none.test")); n != 0 {
			t.Errorf("%d messages reached the no-TLS MX", n)
		}
		// The relay met the MX (EHLO, no STARTTLS) and left: Postfix's
		// session summaries show no MAIL or RCPT at all.
		if log := w.none.Maillog(); strings.Contains(log, " mail=") || strings.Contains(log, " rcpt=") {
			t.Errorf("the no-TLS MX saw a transaction:\n%s", log)
		}
	})

	t.Run("internationalised domains by their A-labels, over TLS", func(t *testing.T) {
		rawSend(t, l.relay.Addr().String(), "alice@corp.test",
			rcptCase{"i1@bücher.test", "250 "},
			rcptCase{"i2@XN--BCHER-KVA.Test.", "250 "},
			rcptCase{"i3@ｓｅｌｆｏｋ.test", "250 "},
		)
		for rcpt, target := range map[string]string{
			"i1@xn--bcher-kva.test": "xn--bcher-kva.test", "i2@xn--bcher-kva.test": "xn--bcher-kva.test", "i3@selfok.test": "selfok.test",
		} {
			rec := l.record(t, rcpt, audit.Delivered, audit.Bounced, audit.Deferred)
			if rec.Event != audit.Delivered || rec.PolicyTarget != target || !rec.TLS || rec.MX != w.modern.Hostname {
				t.Errorf("%s: audit %+v", rcpt, rec)
			}
		}
		got := deliveredTo(w.modern.WaitMessages(t, "xn--bcher-kva.test", 2, 30*time.Second))
		if want := []string{"i1@xn--bcher-kva.test", "i2@xn--bcher-kva.test"}; !slices.Equal(got, want) {
			t.Errorf("Delivered-To at the MX: %q, want %q", got, want)
		}
	})

	t.Run("quoted local parts arrive as one recipient each", func(t *testing.T) {
		quoted := []string{
			`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@quoted.test`,
			`"a b"@quoted.test`,
			`"back\\slash"@quoted.test`,
			`"at@sign"@quoted.test`,
		}
		var cases []rcptCase
		for _, q := range quoted {
			cases = append(cases, rcptCase{q, "250 "})
		}
		cases = append(cases, rcptCase{`"plain"@Quoted.Test`, "250 "}, rcptCase{"nul\x01@quoted.test", "501 5.1.3 "})
		rawSend(t, l.relay.Addr().String(), "alice@corp.test", cases...)
		want := append(slices.Clone(quoted), "plain@quoted.test")
		for _, rcpt := range want {
			if rec := l.record(t, rcpt, audit.Delivered, audit.Bounced, audit.Deferred); rec.Event != audit.Delivered || rec.PolicyTarget != "quoted.test" {
				t.Errorf("%s: audit %+v", rcpt, rec)
			}
		}
		got := deliveredTo(quotedMX.WaitMessages(t, "quoted.test", len(want), 30*time.Second))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Delivered-To at the MX:\n%q\nwant\n%q", got, want)
		}
		// With the injection the MX would have seen RCPT TO:<inj1@good.test>
		// and a NOTIFY parameter; Postfix logs ORCPT and NOTIFY it takes.
		if log := quotedMX.Maillog(); strings.Contains(log, "<inj1@good.test>") || strings.Contains(log, "orig_to=<x") {
			t.Errorf("the MX saw an injected recipient:\n%s", log)
		}
	})

	t.Run("address literals are refused at RCPT", func(t *testing.T) {
		rawSend(t, l.relay.Addr().String(), "alice@corp.test",
			rcptCase{"u@[127.0.0.12]", "550 5.1.2 "},
			rcptCase{"u@[IPv6:::1]", "550 5.1.2 "},
			rcptCase{"u@[300.0.0.1]", "501 5.1.3 "},
		)
	})
}

// deliveredTo lists the Delivered-To headers Postfix's virtual delivery
// wrote, one per recipient, sorted.
func deliveredTo(msgs []testpeer.Message) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.Header.Get("Delivered-To"))
	}
	slices.Sort(s)
	return s
}
