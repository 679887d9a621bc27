package delivery

import (
	"context"
	"crypto/tls"
	"io"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// The courier returns the hops that did not carry the mail with the
// result of the one that did: a primary refused by the list after its
// EHLO (no STARTTLS), and a primary an enforced MTA-STS policy does not
// list, ruled out without a connection (RFC 8461 §4.1).
func TestDeliverReturnsFailedHops(t *testing.T) {
	stsOnlyMX2 := policy.Combine(policy.Requirement{}, policy.Published{STS: &policy.STS{
		ID: "p1", Mode: policy.STSEnforce, MX: []string{"mx2.partner.test"}}})
	for _, tc := range []struct {
		name       string
		req        func(h *harness) policy.Requirement
		notDialled bool
		failedBy   policy.SourceKind
		reply      string
	}{
		{"list, primary without STARTTLS", func(h *harness) policy.Requirement {
			return h.pol.Load().Lookup("bob@partner.test").Requirement()
		}, false, policy.SourceList, "503 5.7.0 encryption too weak 0 less than 112"},
		{"MTA-STS enforce, primary not listed", func(*harness) policy.Requirement { return stsOnlyMX2 },
			true, policy.SourceMTASTS, "mx1.partner.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, "partner.test\n", nil)
			leaf := h.ca.Issue(t, "mx2.partner.test", "127.0.0.2")
			f1, f2, port := loopbackPair(t, nil, func(f *fakeMX) { f.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}} })
			h.runner.cfg.MXPort = port
			h.res.res["partner.test"] = mxResult("partner.test", "mx1.partner.test=127.0.0.1", "mx2.partner.test=127.0.0.2")
			c := smtpCourier(h.runner.cfg)
			t.Cleanup(func() { c.Shutdown(context.Background()) })
			m := &courier.Message{ID: "q1", From: "alice@corp.test",
				Body: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
			g := courier.Group{Domain: "partner.test", Req: tc.req(h), Rcpts: []courier.Recipient{
				{Stored: "bob@partner.test", RCPT: smtpclient.Recipient{Addr: "bob@partner.test"}},
				{Stored: "carol@partner.test", RCPT: smtpclient.Recipient{Addr: "carol@partner.test"}},
			}}
			res := c.Deliver(context.Background(), m, g)
			if len(res) != 2 || len(f2.Messages()) != 1 || f1.Mails() != 0 {
				t.Fatalf("results %+v, backup messages %d, primary MAILs %d", res, len(f2.Messages()), f1.Mails())
			}
			for _, x := range res {
				if x.Kind != courier.Delivered || x.Hop.MX != "mx2.partner.test" || len(x.FailedHops) != 1 {
					t.Fatalf("%s: %v via %s, failed hops %+v; want delivered via mx2 after one failed hop", x.Rcpt, x.Kind, x.Hop.MX, x.FailedHops)
				}
				fh := x.FailedHops[0]
				if fh.MX != "mx1.partner.test" || fh.IP != "127.0.0.1" || !fh.Policy || fh.NotDialled != tc.notDialled ||
					fh.Verdict.FailedBy != tc.failedBy || !strings.Contains(fh.Reply.String(), tc.reply) {
					t.Errorf("%s: failed hop %+v (reply %q)", x.Rcpt, fh, fh.Reply.String())
				}
				if tc.notDialled != (fh.LocalIP == "") {
					t.Errorf("%s: failed hop's local address %q; want one only when dialled", x.Rcpt, fh.LocalIP)
				}
			}
			if tc.notDialled && f1.Conns() != 0 {
				t.Errorf("a primary ruled out by MTA-STS was connected to %d times", f1.Conns())
			}
		})
	}
}

// A REQUIRETLS message handed to the courier in a group whose
// requirement lacks the flag keeps it: the hop (TLS, verified, but no
// REQUIRETLS offered) gets no MAIL FROM and the recipient is refused with
// 5.7.30 (RFC 8689 §4.2.1).
func TestDeliverKeepsMessageRequireTLS(t *testing.T) {
	h := newHarness(t, "", nil)
	leaf := h.ca.Issue(t, "mx1.partner.test", "127.0.0.1")
	f1, _, port := loopbackPair(t, func(f *fakeMX) { f.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}} }, nil)
	h.runner.cfg.MXPort = port
	h.res.res["partner.test"] = mxResult("partner.test", "mx1.partner.test=127.0.0.1")
	c := smtpCourier(h.runner.cfg)
	t.Cleanup(func() { c.Shutdown(context.Background()) })
	m := &courier.Message{ID: "q1", From: "alice@corp.test", RequireTLS: true,
		Body: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	g := courier.Group{Domain: "partner.test", Rcpts: []courier.Recipient{
		{Stored: "bob@partner.test", RCPT: smtpclient.Recipient{Addr: "bob@partner.test"}}}}
	res := c.Deliver(context.Background(), m, g)
	if len(res) != 1 || res[0].Kind != courier.Bounced || res[0].Reply.Enhanced != "5.7.30" || f1.Mails() != 0 {
		t.Fatalf("results %+v, MAILs at the hop %d; want refused with 5.7.30 before MAIL FROM", res, f1.Mails())
	}
}
