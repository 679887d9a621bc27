package relay_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/verify"
	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/queuectl"
	"github.com/smgctl/smgctl/pkg/relay/sendtest"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// These tests prove the operations side (docs/operations.md) against a
// live relay and real Postfix peers: the queue commands, sendtest, the
// delay/expiry timer and the metrics.

// opsPeer starts a TLS-capable Postfix for the given domains and points
// each domain's MX at a loopback address where nothing listens, so
// messages to them are deferred until bringUp points the MX at the peer.
func opsPeer(t *testing.T, w *world, domains ...string) *testpeer.Postfix {
	t.Helper()
	p := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca, Domains: domains})
	w.dns.AddA(p.Hostname, p.IP.String())
	dead := testpeer.FreeLoopbackIP(t)
	w.dns.AddA("dead.ops.test", dead.String())
	for _, d := range domains {
		w.dns.AddMX(d, 10, "dead.ops.test")
	}
	return p
}

func bringUp(w *world, p *testpeer.Postfix, domain string) {
	w.dns.Remove(domain)
	w.dns.AddMX(domain, 10, p.Hostname)
}

func openQueue(t *testing.T, l *lab) *queuectl.Queue {
	t.Helper()
	q, err := queuectl.Open(l.cfg.Spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	q.Hostname = "relay.corp.test"
	t.Cleanup(func() { q.Close() })
	return q
}

func queued(t *testing.T, q *queuectl.Queue) map[string]queuectl.Message {
	t.Helper()
	msgs, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	byRcpt := map[string]queuectl.Message{}
	for _, m := range msgs {
		for _, r := range m.Recipients {
			byRcpt[r.Address] = m
		}
	}
	return byRcpt
}

func TestQueueCommandsOnLiveRelay(t *testing.T) {
	w := startWorld(t, "modern")
	ops := opsPeer(t, w, "retry.test", "delete.test", "bounce.test")
	l := startRelay(t, w, "corp.test mode=off\n", nil)
	w.startInternal(t, l.relay.Addr().String())
	for _, to := range []string{"a@retry.test", "a@delete.test", "a@bounce.test"} {
		l.send(t, "alice@corp.test", to)
		l.record(t, to, audit.Deferred)
	}
	q := openQueue(t, l)

	// list/show on the live relay: three deferred messages, each with its
	// attempt, the reason and a next attempt a backoff step away. The
	// audit record is written before the envelope is updated (no
	// delivery without its record), so wait for the envelopes.
	byRcpt := queued(t, q)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); byRcpt = queued(t, q) {
		done := 0
		for _, to := range []string{"a@retry.test", "a@delete.test", "a@bounce.test"} {
			if m, ok := byRcpt[to]; ok && m.Recipients[0].Attempts > 0 {
				done++
			}
		}
		if done == 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, to := range []string{"a@retry.test", "a@delete.test", "a@bounce.test"} {
		m, ok := byRcpt[to]
		if !ok {
			t.Fatalf("%s not listed: %+v", to, byRcpt)
		}
		r := m.Recipients[0]
		if m.From != "alice@corp.test" || r.State != "pending" || r.Attempts != 1 || r.LastReply == "" ||
			r.NextAttempt == nil || time.Until(*r.NextAttempt) < 30*time.Second {
			t.Errorf("%s: %+v %+v", to, m, r)
		}
	}
	var body strings.Builder
	if m, err := q.Show(byRcpt["a@retry.test"].ID, &body); err != nil || m.ID != byRcpt["a@retry.test"].ID ||
		!strings.Contains(body.String(), "Subject: e2e to a@retry.test") || !strings.Contains(body.String(), "Received: ") {
		t.Errorf("show: %+v %v\n%s", m, err, body.String())
	}

	// retry: the MX is up now; the next attempt by the backoff would be a
	// minute away and the relay's own rescan 30s, so delivery within 15s
	// is the retry's doing.
	bringUp(w, ops, "retry.test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res := q.Retry(ctx, []string{byRcpt["a@retry.test"].ID}); !res[0].Done {
		t.Fatalf("retry: %+v", res)
	}
	ops.WaitMessages(t, "retry.test", 1, 15*time.Second)
	if rec := l.record(t, "a@retry.test", audit.Delivered); !rec.TLS || rec.MX != ops.Hostname {
		t.Errorf("retried delivery: %+v", rec)
	}

	// delete: gone from disk, and never delivered, even with its MX up and
	// the relay asked to run the whole queue.
	del := byRcpt["a@delete.test"].ID
	q.Actor = "carol"
	if res := q.Delete(ctx, []string{del}); !res[0].Done || len(res[0].Recipients) != 1 {
		t.Fatalf("delete: %+v", res)
	}
	// ... and audited by the relay, naming who did it (SPEC §4).
	if rec := l.record(t, "a@delete.test", audit.Deleted); rec.QueueID != del || rec.Actor != "carol" ||
		rec.Sender != "alice@corp.test" || rec.MessageID == "" {
		t.Errorf("deleted record: %+v", rec)
	}
	for _, ext := range []string{".json", ".eml"} {
		if _, err := os.Stat(filepath.Join(l.cfg.Spool, "queue", del+ext)); !os.IsNotExist(err) {
			t.Errorf("%s%s still on disk: %v", del, ext, err)
		}
	}
	bringUp(w, ops, "delete.test")
	if res := q.Retry(ctx, []string{del}); res[0].Done || res[0].Error != queuectl.ErrNotQueued.Error() {
		t.Errorf("retry of a deleted message: %+v", res)
	}
	queuectl.Wake(l.cfg.Spool)
	time.Sleep(1500 * time.Millisecond)
	if n := len(ops.Messages("delete.test")); n != 0 {
		t.Errorf("deleted message delivered %d times", n)
	}

	// bounce: the sender gets a DSN naming the administrator, and the
	// message leaves the queue.
	b := byRcpt["a@bounce.test"].ID
	q.Actor = "dave"
	res := q.Bounce(ctx, []string{b})
	if !res[0].Done || res[0].DSN == "" {
		t.Fatalf("bounce: %+v", res)
	}
	h := w.dsnFor(t, "a@bounce.test")
	if h.Get("Action") != "failed" || h.Get("Status") != "5.0.0" ||
		h.Get("Diagnostic-Code") != "smtp; "+smtpreply.AdminReturn.String() {
		t.Errorf("admin bounce DSN: %v", h)
	}
	if _, err := q.Show(b, nil); err == nil {
		t.Errorf("bounced message still queued")
	}
	if rec := l.record(t, "a@bounce.test", audit.Returned); rec.QueueID != b || rec.Actor != "dave" ||
		rec.Diagnostic != smtpreply.AdminReturn.String() {
		t.Errorf("returned record: %+v", rec)
	}
	// The relay consumed the admin-action records and the chain holds.
	if acts, err := queuectl.ReadAdminActions(l.cfg.Spool, nil); err != nil || len(acts) != 0 {
		t.Errorf("admin records left: %+v %v", acts, err)
	}
	if rep, err := verify.Log(context.Background(), l.cfg.AuditLog); err != nil || !rep.OK() {
		t.Errorf("audit chain: %+v %v", rep, err)
	}
	// The deleted message has exactly its first deferral and the
	// administrator's deletion in the audit log.
	f, err := os.Open(l.cfg.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var events []audit.Event
	audit.Scan(f, func(r audit.Record) error {
		if r.QueueID == del {
			events = append(events, r.Event)
		}
		return nil
	})
	if len(events) != 2 || events[0] != audit.Deferred || events[1] != audit.Deleted {
		t.Errorf("audit records for the deleted message: %v, want its deferral and its deletion", events)
	}
}

// With the relay stopped, `queue delete` still leaves its trace: the
// relay audits it at its next start.
func TestQueueDeleteWhileRelayStopped(t *testing.T) {
	w := startWorld(t, "modern")
	opsPeer(t, w, "gone.test")
	l := startRelay(t, w, "corp.test mode=off\n", nil)
	w.startInternal(t, l.relay.Addr().String())
	l.send(t, "alice@corp.test", "a@gone.test")
	l.record(t, "a@gone.test", audit.Deferred)
	l.stop()

	q := openQueue(t, l)
	q.Actor = "erin"
	id := queued(t, q)["a@gone.test"].ID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res := q.Delete(ctx, []string{id}); !res[0].Done {
		t.Fatalf("delete: %+v", res)
	}
	if acts, err := queuectl.ReadAdminActions(l.cfg.Spool, nil); err != nil || len(acts) != 1 {
		t.Fatalf("admin record while stopped: %+v %v", acts, err)
	}

	l2 := runRelay(t, w, l.cfg)
	if rec := l2.record(t, "a@gone.test", audit.Deleted); rec.QueueID != id || rec.Actor != "erin" {
		t.Errorf("deleted record after restart: %+v", rec)
	}
	l2.stop()
	if acts, err := queuectl.ReadAdminActions(l.cfg.Spool, nil); err != nil || len(acts) != 0 {
		t.Errorf("admin records left: %+v %v", acts, err)
	}
	if rep, err := verify.Log(context.Background(), l.cfg.AuditLog); err != nil || !rep.OK() {
		t.Errorf("audit chain: %+v %v", rep, err)
	}
}

func TestDelayedDSNAndExpiryOnTimer(t *testing.T) {
	w := startWorld(t, "modern")
	opsPeer(t, w, "slow.test")
	// The backoff's first step is a minute: both the delay warning (2s)
	// and the expiry (5s) must come from the relay's timer, not from an
	// attempt.
	l := startRelay(t, w, "corp.test mode=off\n", func(c *relay.Config) {
		c.DelayWarning = 2 * time.Second
		c.QueueLifetime = 5 * time.Second
	})
	w.startInternal(t, l.relay.Addr().String())
	start := time.Now()
	l.send(t, "alice@corp.test", "a@slow.test")
	l.record(t, "a@slow.test", audit.Deferred)

	h := w.dsnFor(t, "a@slow.test") // the first report is the warning
	if h.Get("Action") != "delayed" || h.Get("Will-Retry-Until") == "" || !strings.HasPrefix(h.Get("Status"), "4.") {
		t.Errorf("delay DSN: %v", h)
	}
	if el := time.Since(start); el < 2*time.Second || el > 20*time.Second {
		t.Errorf("delay DSN after %v, want after 2s and long before the 1m retry", el)
	}
	rec := l.record(t, "a@slow.test", audit.Bounced)
	if el := time.Since(start); el < 5*time.Second || el > 30*time.Second {
		t.Errorf("expired after %v, want after the 5s lifetime and before the 1m retry", el)
	}
	// The timer forced a last attempt at the end of the lifetime.
	if rec.Attempt != 2 {
		t.Errorf("expiry record: %+v", rec)
	}
	// The second report is the failure, 4.4.7.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []string
		for _, m := range w.internal.Messages("corp.test") {
			if h := reportOn(t, m, "a@slow.test"); h != nil {
				got = append(got, h.Get("Action")+" "+h.Get("Status"))
			}
		}
		if len(got) == 2 {
			if !strings.HasPrefix(got[0], "delayed 4.") || got[1] != "failed 4.4.7" {
				t.Errorf("reports: %v", got)
			}
			break
		}
		if time.Now().After(deadline) || len(got) > 2 {
			t.Fatalf("reports on a@slow.test: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSendtestAgainstLiveRelay(t *testing.T) {
	w := startWorld(t, "modern", "none")
	l := startRelay(t, w, "modern.test\nnone.test\ncorp.test mode=off\n", nil)
	w.startInternal(t, l.relay.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	await := func(to string) audit.Record {
		t.Helper()
		sub, err := sendtest.Submit(ctx, sendtest.Message{Via: l.relay.Addr().String(), From: "admin@corp.test", To: to, Helo: "admin.corp.test"})
		if err != nil || sub.QueueID == "" {
			t.Fatalf("submit to %s: %+v %v", to, sub, err)
		}
		rec, err := sendtest.Await(ctx, l.cfg.AuditLog, sub, 10*time.Millisecond)
		if err != nil {
			t.Fatalf("await %s: %v", to, err)
		}
		if rec.QueueID != sub.QueueID || rec.MessageID != sub.MessageID {
			t.Errorf("record of another message: %+v vs %+v", rec, sub)
		}
		return rec
	}
	if rec := await("p@modern.test"); !sendtest.Went(rec) || !rec.TLS || rec.TLSVersion != "TLSv1.3" ||
		rec.Bits < 128 || rec.MX != w.modern.Hostname || rec.PolicyTarget != "modern.test" {
		t.Errorf("good MX: %+v", rec)
	}
	w.modern.WaitMessages(t, "modern.test", 1, 10*time.Second)
	if rec := await("p@none.test"); sendtest.Went(rec) || rec.Event != audit.Bounced ||
		rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("plain MX: %+v", rec)
	}
}

// scrape reads the value of one sample line ("name{labels}") from /metrics.
func scrape(t *testing.T, text, sample string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return f
		}
	}
	return -1
}

func TestMetricsAfterKnownDeliveries(t *testing.T) {
	w := startWorld(t, "modern", "none")
	opsPeer(t, w, "stuck.test") // deferred: stays in the spool
	l := startRelay(t, w, "none.test\ncorp.test mode=off\n", nil)
	w.startInternal(t, l.relay.Addr().String())
	l.send(t, "alice@corp.test", "a@modern.test")
	l.send(t, "alice@corp.test", "b@modern.test")
	l.send(t, "alice@corp.test", "c@clear.test")
	l.send(t, "alice@corp.test", "d@none.test")
	l.send(t, "alice@corp.test", "e@stuck.test")
	l.record(t, "a@modern.test", audit.Delivered)
	l.record(t, "b@modern.test", audit.Delivered)
	l.record(t, "c@clear.test", audit.Delivered)
	l.record(t, "d@none.test", audit.Bounced)
	l.record(t, "e@stuck.test", audit.Deferred)
	w.dsnFor(t, "d@none.test")
	l.record(t, "alice@corp.test", audit.Delivered) // the DSN, in clear to corp.test

	// The audit record comes before the message leaves the spool (no
	// delivery without its record); wait for the removal that follows.
	m := l.metrics(t)
	for deadline := time.Now().Add(5 * time.Second); scrape(t, m, "smgctl_spool_messages") != 1 && time.Now().Before(deadline); m = l.metrics(t) {
		time.Sleep(20 * time.Millisecond)
	}
	want := map[string]float64{
		`smgctl_relay_recipient_outcomes_total{outcome="delivered"}`:    4,
		`smgctl_relay_recipient_outcomes_total{outcome="bounced"}`:      1,
		`smgctl_relay_recipient_outcomes_total{outcome="deferred"}`:     1,
		`smgctl_relay_recipient_outcomes_total{outcome="would-bounce"}`: 0,
		`smgctl_relay_delivered_tls_total{version="TLSv1.3"}`:           2,
		`smgctl_relay_delivered_tls_total{version="none"}`:              2,
		`smgctl_relay_delivered_cipher_bits_bucket{le="0"}`:             2,
		`smgctl_relay_delivered_cipher_bits_bucket{le="111"}`:           2,
		`smgctl_relay_delivered_cipher_bits_bucket{le="256"}`:           4,
		`smgctl_relay_delivered_cipher_bits_count`:                      4,
		`smgctl_relay_delivered_total`:                                  4,
		`smgctl_relay_bounced_total`:                                    1,
		`smgctl_relay_dsn_total`:                                        1,
		`smgctl_relay_inbound_sessions_total`:                           5,
		`smgctl_spool_messages`:                                         1,
		`smgctl_policy_reloads_total`:                                   1,
		`smgctl_policy_reload_failures_total`:                           0,
	}
	for sample, v := range want {
		if got := scrape(t, m, sample); got != v {
			t.Errorf("%s = %v, want %v", sample, got, v)
		}
	}
	if age := scrape(t, m, "smgctl_spool_oldest_message_age_seconds"); age <= 0 || age > 60 {
		t.Errorf("oldest age %v", age)
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", m)
	}

	// An operator's deletion is an outcome too, counted once the relay
	// has audited it.
	q, err := queuectl.Open(l.cfg.Spool, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res := q.Delete(ctx, []string{l.record(t, "e@stuck.test", audit.Deferred).QueueID}); !res[0].Done {
		t.Fatalf("delete: %+v", res)
	}
	l.record(t, "e@stuck.test", audit.Deleted)
	// The counter moves just after the audit write the record came from.
	deleted := `smgctl_relay_recipient_outcomes_total{outcome="deleted"}`
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		m = l.metrics(t)
		if scrape(t, m, deleted) == 1 || time.Now().After(deadline) {
			break
		}
	}
	for sample, v := range map[string]float64{deleted: 1, `smgctl_spool_messages`: 0} {
		if got := scrape(t, m, sample); got != v {
			t.Errorf("after queue delete: %s = %v, want %v", sample, got, v)
		}
	}
}
