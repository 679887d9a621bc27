package delivery

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/mtasts"
)

// An MTA-STS policy in enforce mode that does not list the hop: the hop
// gets no connection, the attempt is deferred with the MTA-STS text, the
// audit record names the policy (id, mode, mx, its text, TLS-RPT result
// type), and when the queue lifetime ends the DSN carries the same text
// and says in plain words that the domain's policy stopped it.
func TestMTASTSRefusalAuditedAndInExpiryDSN(t *testing.T) {
	h := newHarness(t, "", func(c *Config) {
		c.MTASTS = func(_ context.Context, d string) (mtasts.Result, error) {
			if d != "sts.test" {
				return mtasts.Result{Domain: d}, nil
			}
			return mtasts.Result{Domain: d, ID: "p1", Policy: &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeEnforce,
				MX: []string{"mx.sts.test"}, MaxAge: 86400}}, nil
		}
	})
	mx := startFake(t, "127.0.0.1:0", nil)
	route(h, "sts.test", mx)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "bob@sts.test")
	h.waitAttempts(id, "bob@sts.test", 1)
	const text = "451 4.7.5 MTA-STS: MX 127.0.0.1 does not match the mx patterns of policy p1"
	rec := h.recordFor("bob@sts.test")
	if rec.Event != audit.Deferred || rec.Diagnostic != text || rec.STSPolicyID != "p1" || rec.STSMode != "enforce" ||
		rec.PolicyType != audit.PolicySTS || rec.ResultType != audit.ResultValidationFailure ||
		strings.Join(rec.PolicyStrings, "|") != "version: STSv1|mode: enforce|mx: mx.sts.test|max_age: 86400" {
		t.Fatalf("audit record %+v", rec)
	}
	if len(rec.Sources) != 1 || rec.Sources[0].Kind != audit.SourceMTASTS || rec.Sources[0].Detail != "policy p1 mode enforce mx mx.sts.test" {
		t.Errorf("sources %+v", rec.Sources)
	}
	if n := mx.Conns(); n != 0 {
		t.Errorf("%d connections to a hop the policy rules out", n)
	}

	later := time.Now().Add(DefaultQueueLifetime + time.Minute)
	h.now.Store(&later)
	h.runner.Notify(id)
	h.waitGone(id)
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	rep := parseReport(t, got[0].Data)
	bob := rep.rcpt(t, "bob@sts.test")
	if bob.Get("Status") != "4.4.7" || bob.Get("Diagnostic-Code") != "smtp; "+text {
		t.Errorf("DSN fields %v", bob)
	}
	if !strings.Contains(rep.humanText(), "the recipient's domain publishes an MTA-STS policy") {
		t.Errorf("human part:\n%s", rep.human)
	}
}
