package delivery

import (
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// A hand-off is no final delivery (RFC 3461 §5.2.2): NOTIFY=SUCCESS
// goes on to a gateway that offers DSN, and past one that does not it
// gets our "relayed" report, never "delivered"; a recipient that asked
// nothing gets no report at all. The partner's MX (no STARTTLS) gets
// no MAIL FROM.
func TestHandOffNotifySuccess(t *testing.T) {
	for _, gwDSN := range []bool{false, true} {
		h := newHarness(t, "", nil)
		partner := startFake(t, "127.0.0.1:0", nil)
		route(h, "partner.test", partner)
		gw := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS, f.DSN = h.tlsConfig(nil), gwDSN })
		_, port, _ := net.SplitHostPort(gw.Addr)
		h.setPolicy("partner.test on-fail=route:[127.0.0.1]:" + port + "\n")
		sink := startFake(t, "127.0.0.1:0", nil)
		route(h, "corp.test", sink)
		h.start()
		id := h.queueEnv(&spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{
			{Address: "bob@partner.test", Notify: []string{"SUCCESS", "FAILURE"}},
			{Address: "carol@partner.test"},
		}}, longBody)
		h.waitGone(id)
		if partner.Mails() != 0 {
			t.Errorf("gateway DSN %v: %d MAIL FROM to the partner's MX without STARTTLS", gwDSN, partner.Mails())
		}
		msgs := gw.Messages()
		if len(msgs) != 1 || msgs[0].TLS == nil || !slices.Equal(msgs[0].Rcpts, []string{"bob@partner.test", "carol@partner.test"}) {
			t.Fatalf("gateway DSN %v: gateway got %+v", gwDSN, msgs)
		}
		if rcpts := gw.RcptLines(); strings.Contains(rcpts[0], "NOTIFY=") != gwDSN {
			t.Errorf("gateway DSN %v: RCPT %q", gwDSN, rcpts[0])
		}
		for _, rc := range []string{"bob@partner.test", "carol@partner.test"} {
			rec := h.recordFor(rc)
			if rec.Event != audit.HandedOff || rec.Route != "[127.0.0.1]:"+port || !strings.Contains(rec.Diagnostic, "encryption too weak") {
				t.Errorf("gateway DSN %v: %s audit %s route %q diagnostic %q", gwDSN, rc, rec.Event, rec.Route, rec.Diagnostic)
			}
		}
		if gwDSN {
			h.stop()
			// Spooled before the message is removed, so either still
			// queued or delivered by now.
			if n, q := len(sink.Messages()), len(h.dsns()); n+q != 0 {
				t.Errorf("a report although the gateway took NOTIFY on: %d sent, %d queued", n, q)
			}
			continue
		}
		var got []fakeMessage
		h.waitFor("the relayed DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
		rep := parseReport(t, got[0].Data)
		if r := rep.recipients(); !slices.Equal(r, []string{"bob@partner.test"}) {
			t.Fatalf("report on %v, want bob only", r)
		}
		if a := rep.rcpt(t, "bob@partner.test").Get("Action"); a != "relayed" {
			t.Errorf("Action %q, want relayed", a)
		}
		h.stop()
	}
}
