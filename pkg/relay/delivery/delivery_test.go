package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// fakeResolver answers LookupMX from a table.
type fakeResolver struct {
	mu  sync.Mutex
	res map[string]mx.Result
	err map[string]error
}

func (f *fakeResolver) LookupMX(_ context.Context, domain string) (mx.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.err[domain]; err != nil {
		return mx.Result{Domain: domain, NullMX: errors.Is(err, mx.ErrNullMX)}, err
	}
	if r, ok := f.res[domain]; ok {
		return r, nil
	}
	return mx.Result{}, &mx.Error{Step: "MX", Name: domain, Rcode: dns.RcodeNameError, Err: errors.New("NXDOMAIN")}
}

// harness is a runner on a real spool in a temp dir.
type harness struct {
	t      *testing.T
	spool  *spool.Spool
	audit  string
	pol    atomic.Pointer[policy.Policy]
	res    *fakeResolver
	runner *Runner
	now    atomic.Pointer[time.Time]
	stop   func()
	ca     *testpeer.CA
}

func newHarness(t *testing.T, pol string, tweak func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	h := &harness{t: t, spool: sp, audit: filepath.Join(dir, "audit.log"),
		res: &fakeResolver{res: map[string]mx.Result{}, err: map[string]error{}}}
	h.ca = testpeer.NewCA(t)
	h.setPolicy(pol)
	al, err := audit.Open(h.audit, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	cfg := Config{
		Spool: sp, Policy: h.pol.Load, Resolver: h.res, Audit: al,
		Hostname: "relay.test", RootCAs: h.ca.Pool(), PolicyFile: "policy.conf",
		Routes:   map[string]string{},
		Timeouts: smtpclient.UniformTimeouts(5 * time.Second),
		Backoff:  []time.Duration{time.Hour},
		Now: func() time.Time {
			if n := h.now.Load(); n != nil {
				return *n
			}
			return time.Now()
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	h.runner, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) setPolicy(text string) {
	h.t.Helper()
	f, err := policy.Parse("policy.conf", []byte(text))
	if err != nil {
		h.t.Fatal(err)
	}
	h.pol.Store(f.Compile())
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.runner.Run(ctx); close(done) }()
	h.stop = func() { cancel(); <-done }
	h.t.Cleanup(h.stop)
}

// tlsConfig is a server config with a certificate from the harness CA for
// 127.0.0.1 and mx.test names.
func (h *harness) tlsConfig(mod func(*tls.Config)) *tls.Config {
	leaf := h.ca.Issue(h.t, "mx.test", "127.0.0.1")
	c := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	if mod != nil {
		mod(c)
	}
	return c
}

const body = "From: alice@corp.test\r\nTo: bob@partner.test\r\nSubject: test\r\nMessage-ID: <m1@corp.test>\r\n\r\nHello.\r\n"

func (h *harness) queue(from string, rcpts ...string) string {
	h.t.Helper()
	env := &spool.Envelope{From: from, MessageID: "<m1@corp.test>"}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Address: r})
	}
	if err := h.spool.Put(env, strings.NewReader(body)); err != nil {
		h.t.Fatal(err)
	}
	h.runner.Notify(env.ID)
	return env.ID
}

// waitGone waits until the message left the spool.
func (h *harness) waitGone(id string) {
	h.t.Helper()
	h.waitFor(id+" to leave the spool", func() bool {
		_, err := h.spool.Envelope(id)
		return errors.Is(err, os.ErrNotExist)
	})
}

// waitAttempts waits until rcpt of id has had n attempts.
func (h *harness) waitAttempts(id, rcpt string, n int) *spool.Envelope {
	h.t.Helper()
	var env *spool.Envelope
	h.waitFor(fmt.Sprintf("%d attempts for %s", n, rcpt), func() bool {
		e, err := h.spool.Envelope(id)
		if err != nil {
			return false
		}
		for _, r := range e.Recipients {
			if r.Address == rcpt && r.Attempts >= n {
				env = e
				return true
			}
		}
		return false
	})
	return env
}

func (h *harness) waitFor(what string, ok func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) records() []audit.Record {
	h.t.Helper()
	f, err := os.Open(h.audit)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var out []audit.Record
	if err := audit.Scan(f, func(r audit.Record) error { out = append(out, r); return nil }); err != nil {
		h.t.Fatal(err)
	}
	return out
}

// recordFor waits for the audit log to hold a record for rcpt and returns
// the last one.
func (h *harness) recordFor(rcpt string) audit.Record {
	h.t.Helper()
	var found *audit.Record
	h.waitFor("an audit record for "+rcpt, func() bool {
		for _, r := range h.records() {
			if r.Recipient == rcpt {
				found = &r
			}
		}
		return found != nil
	})
	return *found
}

// waitState waits until rcpt of id is in state st.
func (h *harness) waitState(id, rcpt string, st spool.RecipientState) *spool.Envelope {
	h.t.Helper()
	var env *spool.Envelope
	h.waitFor(fmt.Sprintf("%s to be %s", rcpt, st), func() bool {
		e, err := h.spool.Envelope(id)
		if err != nil {
			return false
		}
		for _, r := range e.Recipients {
			if r.Address == rcpt && r.State == st {
				env = e
				return true
			}
		}
		return false
	})
	return env
}

// dsns returns the DSNs queued in the spool (null sender).
func (h *harness) dsns() []*spool.Envelope {
	h.t.Helper()
	ids, _ := h.spool.List()
	var out []*spool.Envelope
	for _, id := range ids {
		if e, err := h.spool.Envelope(id); err == nil && e.From == "" {
			out = append(out, e)
		}
	}
	return out
}

func route(h *harness, domain string, f *fakeMX) { h.runner.cfg.Routes[domain] = f.Addr }

func TestEnforcedWithoutSTARTTLSBounces(t *testing.T) {
	h := newHarness(t, "partner.test\n", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "partner.test", f)
	// The DSN to corp.test must not go anywhere real: route it to a sink.
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "bob@partner.test")
	h.waitGone(id)

	if n := f.Mails(); n != 0 {
		t.Fatalf("%d MAIL FROM sent to an MX without STARTTLS", n)
	}
	rec := h.recordFor("bob@partner.test")
	if rec.Event != audit.Bounced || rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("audit = %+v", rec)
	}
	if rec.PolicyTarget != "partner.test" || rec.PolicyLine != 1 || rec.Requirement == nil || rec.Requirement.Bits != 112 {
		t.Errorf("audit policy fields = %+v", rec)
	}
	// The DSN went to the sender through the same queue.
	var got []fakeMessage
	h.waitFor("the DSN at the sender's MX", func() bool { got = sink.Messages(); return len(got) == 1 })
	d := got[0]
	if d.From != "" || len(d.Rcpts) != 1 || d.Rcpts[0] != "alice@corp.test" {
		t.Fatalf("DSN envelope = %q → %v", d.From, d.Rcpts)
	}
	rep := parseReport(t, d.Data)
	rc := rep.rcpt(t, "bob@partner.test")
	for k, want := range map[string]string{
		"Action":          "failed",
		"Status":          "5.7.0",
		"Diagnostic-Code": "smtp; 503 5.7.0 encryption too weak 0 less than 112",
		// SPEC §4: the MX sent no such reply; the gateway refused.
		"Remote-MTA": "",
	} {
		if got := rc.Get(k); got != want {
			t.Errorf("DSN %s = %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(rep.humanText(), "the gateway's TLS policy entry 'partner.test' (policy.conf line 1) requires") {
		t.Errorf("human part does not name the policy entry:\n%s", rep.human)
	}
	if !strings.Contains(string(rep.original), "Subject: test") {
		t.Errorf("original headers %q", rep.original)
	}
}

func TestEnforcedWithTLSDelivers(t *testing.T) {
	h := newHarness(t, "# partners\npartner.test verify=cert\n", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil) })
	route(h, "partner.test", f)
	h.start()
	id := h.queue("alice@corp.test", "bob@partner.test")
	h.waitGone(id)
	msgs := f.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil {
		t.Fatalf("messages = %+v", msgs)
	}
	if !strings.Contains(msgs[0].Data, "Subject: test") {
		t.Errorf("data = %q", msgs[0].Data)
	}
	rec := h.recordFor("bob@partner.test")
	if rec.Event != audit.Delivered || !rec.TLS || rec.TLSVersion != "TLSv1.3" || rec.Bits < 128 ||
		!rec.CertVerified || rec.PolicyLine != 2 || rec.MX != "127.0.0.1" || rec.IP != "127.0.0.1" ||
		!strings.HasPrefix(rec.Reply, "250 2.0.0") || rec.Attempt != 1 || rec.Cipher == "" {
		t.Errorf("audit = %+v", rec)
	}
}

func TestUnlistedGoesInClear(t *testing.T) {
	h := newHarness(t, "partner.test\n", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "other.test", f)
	h.start()
	h.waitGone(h.queue("alice@corp.test", "carol@other.test"))
	if msgs := f.Messages(); len(msgs) != 1 || msgs[0].TLS != nil {
		t.Fatalf("messages = %+v", msgs)
	}
	rec := h.recordFor("carol@other.test")
	if rec.Event != audit.Delivered || rec.TLS || rec.Requirement != nil || rec.PolicyTarget != "" {
		t.Errorf("audit = %+v", rec)
	}
}

func TestOpportunisticFallsBackAfterBrokenHandshake(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil); f.BreakHandshake = true })
	route(h, "other.test", f)
	h.start()
	h.waitGone(h.queue("alice@corp.test", "carol@other.test"))
	if msgs := f.Messages(); len(msgs) != 1 || msgs[0].TLS != nil {
		t.Fatalf("messages = %+v", msgs)
	}
	if f.Conns() != 2 {
		t.Errorf("%d connections, want 2 (TLS attempt, then clear)", f.Conns())
	}
}

// The man-in-the-middle cases: whatever happens to STARTTLS, an enforced
// recipient's message never gets as far as MAIL FROM.
func TestEnforcedNeverInClear(t *testing.T) {
	for name, setup := range map[string]func(h *harness, f *fakeMX){
		"stripped": func(h *harness, f *fakeMX) {},
		"454":      func(h *harness, f *fakeMX) { f.TLS = h.tlsConfig(nil); f.StartTLSReply = "454 4.7.0 TLS not available" },
		"injected": func(h *harness, f *fakeMX) { f.TLS = h.tlsConfig(nil); f.Inject = "250 2.1.0 injected\r\n" },
		"broken":   func(h *harness, f *fakeMX) { f.TLS = h.tlsConfig(nil); f.BreakHandshake = true },
		"unverified": func(h *harness, f *fakeMX) {
			leaf := testpeer.SelfSigned(h.t, "mx.test", "127.0.0.1")
			f.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
		},
		"tls1.0": func(h *harness, f *fakeMX) {
			f.TLS = h.tlsConfig(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS10 })
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "partner.test min-tls=1.2 verify=cert\n", nil)
			f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { setup(h, f) })
			route(h, "partner.test", f)
			route(h, "corp.test", startFake(t, "127.0.0.1:0", nil))
			h.start()
			h.waitGone(h.queue("alice@corp.test", "bob@partner.test"))
			if n := f.Mails(); n != 0 {
				t.Fatalf("%d MAIL FROM sent", n)
			}
			rec := h.recordFor("bob@partner.test")
			if rec.Event != audit.Bounced || !strings.HasPrefix(rec.Diagnostic, "503 5.7.0 ") {
				t.Errorf("audit = %+v", rec)
			}
			t.Logf("diagnostic: %s", rec.Diagnostic)
		})
	}
}

func TestBitsAboveNegotiated(t *testing.T) {
	h := newHarness(t, "bank.test bits=256\n", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) {
		f.TLS = h.tlsConfig(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		})
	})
	route(h, "bank.test", f)
	route(h, "corp.test", startFake(t, "127.0.0.1:0", nil))
	h.start()
	h.waitGone(h.queue("alice@corp.test", "ceo@bank.test"))
	if f.Mails() != 0 {
		t.Fatal("MAIL FROM sent below the requirement")
	}
	if rec := h.recordFor("ceo@bank.test"); rec.Diagnostic != "503 5.7.0 encryption too weak 128 less than 256" || rec.Bits != 128 {
		t.Errorf("audit = %+v", rec)
	}
}

// loopbackPair listens on two loopback addresses with the same port, so
// both can be MX hosts under one MXPort.
func loopbackPair(t *testing.T, a, b func(*fakeMX)) (*fakeMX, *fakeMX, int) {
	for range 20 {
		f1 := startFake(t, "127.0.0.1:0", a)
		_, port, _ := net.SplitHostPort(f1.Addr)
		ln, err := net.Listen("tcp4", "127.0.0.2:"+port)
		if err != nil {
			continue
		}
		ln.Close()
		f2 := startFake(t, "127.0.0.2:"+port, b)
		var p int
		fmt.Sscan(port, &p)
		return f1, f2, p
	}
	t.Fatal("no common port on 127.0.0.1 and 127.0.0.2")
	return nil, nil, 0
}

func mxResult(domain string, hosts ...string) mx.Result {
	r := mx.Result{Domain: domain, Name: domain}
	for i, h := range hosts {
		name, ip, _ := strings.Cut(h, "=")
		r.Hosts = append(r.Hosts, mx.Host{Name: name, Preference: uint16(10 * (i + 1)), Addrs: []netip.Addr{netip.MustParseAddr(ip)}})
	}
	return r
}

func TestBackupMX(t *testing.T) {
	for name, primary := range map[string]func(h *harness) func(*fakeMX){
		"primary without TLS": func(h *harness) func(*fakeMX) { return nil },
		"primary down":        nil,
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, "partner.test\n", nil)
			var p func(*fakeMX)
			if primary != nil {
				p = primary(h)
			}
			f1, f2, port := loopbackPair(t, p, func(f *fakeMX) { f.TLS = h.tlsConfig(nil) })
			if primary == nil {
				f1.ln.Close() // down: connection refused
			}
			h.runner.cfg.MXPort = port
			h.runner.courier = smtpCourier(h.runner.cfg) // the courier takes the port at New
			h.res.res["partner.test"] = mxResult("partner.test", "mx1.partner.test=127.0.0.1", "mx2.partner.test=127.0.0.2")
			h.start()
			h.waitGone(h.queue("alice@corp.test", "bob@partner.test"))
			if f1.Mails() != 0 || len(f2.Messages()) != 1 {
				t.Fatalf("primary MAILs %d, backup messages %d", f1.Mails(), len(f2.Messages()))
			}
			if rec := h.recordFor("bob@partner.test"); rec.MX != "mx2.partner.test" || rec.IP != "127.0.0.2" || !rec.TLS {
				t.Errorf("audit = %+v", rec)
			}
			// The primary that did not carry it is audited once, as its
			// own hop-failed record before the delivery, with why.
			recs := h.records()
			if len(recs) != 2 || recs[0].Event != audit.HopFailed || recs[1].Event != audit.Delivered {
				t.Fatalf("audit records %+v; want hop-failed then delivered", recs)
			}
			hf := recs[0]
			if hf.MX != "mx1.partner.test" || hf.IP != "127.0.0.1" || hf.Attempt != 1 || hf.Recipient != "bob@partner.test" || hf.TLS {
				t.Errorf("hop-failed = %+v", hf)
			}
			if primary != nil && (hf.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" || hf.SendingIP == "") {
				t.Errorf("hop-failed for the primary without TLS: diagnostic %q, sending_ip %q", hf.Diagnostic, hf.SendingIP)
			}
			if primary == nil && (hf.Diagnostic != "" || !strings.Contains(hf.Reply, "127.0.0.1")) {
				t.Errorf("hop-failed for the primary down: reply %q, diagnostic %q", hf.Reply, hf.Diagnostic)
			}
		})
	}
}

// When no MX carries the mail, each MX tried is audited once: the one
// the outcome names in the bounced record, every other as hop-failed
// (before it) — never twice, never left out.
func TestEveryMXFailedAuditedOnce(t *testing.T) {
	h := newHarness(t, "partner.test\n", nil)
	f1, f2, port := loopbackPair(t, nil, nil) // neither offers STARTTLS
	h.runner.cfg.MXPort = port
	h.runner.courier = smtpCourier(h.runner.cfg)
	h.res.res["partner.test"] = mxResult("partner.test", "mx1.partner.test=127.0.0.1", "mx2.partner.test=127.0.0.2")
	h.start()
	h.waitGone(h.queue("alice@corp.test", "bob@partner.test", "carol@partner.test"))
	if f1.Mails()+f2.Mails() != 0 {
		t.Fatal("MAIL FROM sent in clear for an enforced recipient")
	}
	for _, rcpt := range []string{"bob@partner.test", "carol@partner.test"} {
		var got []audit.Record
		for _, r := range h.records() {
			if r.Recipient == rcpt {
				got = append(got, r)
			}
		}
		if len(got) != 2 || got[0].Event != audit.HopFailed || got[1].Event != audit.Bounced {
			t.Fatalf("%s: records %+v; want hop-failed then bounced", rcpt, got)
		}
		if got[0].MX == got[1].MX || got[0].Attempt != 1 || got[1].Attempt != 1 {
			t.Errorf("%s: hop-failed %s attempt %d, bounced %s attempt %d; want each MX once, attempt 1", rcpt, got[0].MX, got[0].Attempt, got[1].MX, got[1].Attempt)
		}
		for _, r := range got {
			if r.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
				t.Errorf("%s %s: diagnostic %q", rcpt, r.Event, r.Diagnostic)
			}
		}
	}
}

func TestOnFailDeferThenExpire(t *testing.T) {
	h := newHarness(t, "partner.test on-fail=defer\n", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "bob@partner.test")
	env := h.waitAttempts(id, "bob@partner.test", 1)
	rc := env.Recipients[0]
	if rc.State != spool.Pending || rc.LastReply != "503 5.7.0 encryption too weak 0 less than 112" || !rc.NextAttempt.After(time.Now()) {
		t.Fatalf("after the first attempt: %+v", rc)
	}
	if len(h.dsns()) != 0 || len(sink.Messages()) != 0 {
		t.Fatal("a DSN for a deferred recipient")
	}
	if rec := h.recordFor("bob@partner.test"); rec.Event != audit.Deferred || rec.Diagnostic != rc.LastReply {
		t.Errorf("audit = %+v", rec)
	}

	// Past the queue lifetime, the next attempt returns it with the same
	// diagnostic (SPEC §2 on-fail=defer).
	later := time.Now().Add(DefaultQueueLifetime + 2*time.Hour)
	h.now.Store(&later)
	h.runner.Notify(id)
	h.waitGone(id)
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	if !strings.Contains(got[0].Data, "Diagnostic-Code: smtp; 503 5.7.0 encryption too weak 0 less than 112") ||
		!strings.Contains(got[0].Data, "Status: 5.7.0") {
		t.Errorf("DSN:\n%s", got[0].Data)
	}
	if f.Mails() != 0 {
		t.Fatal("MAIL FROM sent")
	}
}

func TestTemporaryFailureExpiresWith447(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = func(string) string { return "451 4.3.0 try again later" } })
	route(h, "other.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "carol@other.test")
	env := h.waitAttempts(id, "carol@other.test", 1)
	if rc := env.Recipients[0]; rc.State != spool.Pending || rc.LastReply != "451 4.3.0 try again later" {
		t.Fatalf("%+v", rc)
	}
	later := time.Now().Add(DefaultQueueLifetime + time.Minute)
	h.now.Store(&later)
	h.runner.Notify(id)
	h.waitGone(id)
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	if !strings.Contains(got[0].Data, "Status: 4.4.7") || !strings.Contains(got[0].Data, "Diagnostic-Code: smtp; 451 4.3.0 try again later") {
		t.Errorf("DSN:\n%s", got[0].Data)
	}
}

func TestTestingModeDeliversAndRecords(t *testing.T) {
	h := newHarness(t, "* mode=testing\n", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "partner.test", f)
	h.start()
	h.waitGone(h.queue("alice@corp.test", "bob@partner.test"))
	if len(f.Messages()) != 1 {
		t.Fatal("testing mode did not deliver")
	}
	rec := h.recordFor("bob@partner.test")
	if rec.Event != audit.WouldBounce || rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" ||
		rec.PolicyTarget != "*" || rec.Requirement.Mode != "testing" || !strings.HasPrefix(rec.Reply, "250") {
		t.Errorf("audit = %+v", rec)
	}
	if len(h.dsns()) != 0 {
		t.Error("a DSN in testing mode")
	}
}

func TestPerRecipientReplies(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) {
		f.Rcpt = func(a string) string {
			switch a {
			case "gone@other.test":
				return "550 5.1.1 <gone@other.test>: Recipient address rejected"
			case "full@other.test":
				return "452 4.2.2 mailbox full"
			}
			return "250 2.1.5 Ok"
		}
	})
	route(h, "other.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "ok@other.test", "gone@other.test", "full@other.test")
	h.waitAttempts(id, "full@other.test", 1)
	env := h.waitState(id, "gone@other.test", spool.Bounced)
	states := map[string]spool.RecipientState{}
	for _, r := range env.Recipients {
		states[r.Address] = r.State
	}
	if states["ok@other.test"] != spool.Delivered || states["gone@other.test"] != spool.Bounced || states["full@other.test"] != spool.Pending {
		t.Fatalf("states = %v", states)
	}
	if m := f.Messages(); len(m) != 1 || len(m[0].Rcpts) != 1 || m[0].Rcpts[0] != "ok@other.test" {
		t.Fatalf("one transaction with the accepted recipient expected: %+v", m)
	}
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	if !strings.Contains(got[0].Data, "Diagnostic-Code: smtp; 550 5.1.1 <gone@other.test>: Recipient address rejected") ||
		strings.Contains(got[0].Data, "full@other.test") {
		t.Errorf("DSN:\n%s", got[0].Data)
	}
}

func TestNullMXAndDNSFailures(t *testing.T) {
	h := newHarness(t, "", nil)
	h.res.err["nomail.test"] = &mx.Error{Step: "MX", Name: "nomail.test", Err: mx.ErrNullMX}
	h.res.err["flaky.test"] = &mx.Error{Step: "MX", Name: "flaky.test", Rcode: dns.RcodeServerFailure, Temporary: true, Err: errors.New("SERVFAIL")}
	// The MX records exist, their hosts' addresses do not: for good
	// (bounce, as smgctl probe grades it: mx.Result.NoAddress), or with
	// one temporary failure among them (wait).
	nx := &mx.Error{Step: "A", Name: "ghost.nxmx.test", Rcode: dns.RcodeNameError, Err: errors.New("NXDOMAIN")}
	sf := &mx.Error{Step: "A", Name: "sf.mixed.test", Rcode: dns.RcodeServerFailure, Temporary: true, Err: errors.New("SERVFAIL")}
	h.res.res["nxmx.test"] = mx.Result{Domain: "nxmx.test", Hosts: []mx.Host{{Name: "ghost.nxmx.test", Preference: 10, Err: nx}}}
	h.res.res["mixed.test"] = mx.Result{Domain: "mixed.test", Hosts: []mx.Host{{Name: "ghost.nxmx.test", Preference: 10, Err: nx}, {Name: "sf.mixed.test", Preference: 20, Err: sf}}}
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "a@nomail.test", "b@flaky.test", "c@nxdomain.test", "d@nxmx.test", "e@mixed.test")
	h.waitAttempts(id, "b@flaky.test", 1)
	h.waitAttempts(id, "e@mixed.test", 1)
	h.waitState(id, "a@nomail.test", spool.Bounced)
	h.waitState(id, "d@nxmx.test", spool.Bounced)
	env := h.waitState(id, "c@nxdomain.test", spool.Bounced)
	got := map[string]spool.Recipient{}
	for _, r := range env.Recipients {
		got[r.Address] = r
	}
	if r := got["a@nomail.test"]; r.State != spool.Bounced || !strings.HasPrefix(r.LastReply, "556 5.1.10 ") {
		t.Errorf("null MX: %+v", r)
	}
	if r := got["b@flaky.test"]; r.State != spool.Pending || !strings.HasPrefix(r.LastReply, "451 4.4.3 ") {
		t.Errorf("SERVFAIL: %+v", r)
	}
	if r := got["c@nxdomain.test"]; r.State != spool.Bounced || !strings.HasPrefix(r.LastReply, "550 5.4.4 ") {
		t.Errorf("NXDOMAIN: %+v", r)
	}
	if r := got["d@nxmx.test"]; r.State != spool.Bounced || r.LastReply != "550 5.4.4 Host or domain name not found: "+nx.Error() {
		t.Errorf("every MX host NXDOMAIN: %+v", r)
	}
	if r := got["e@mixed.test"]; r.State != spool.Pending || !strings.HasPrefix(r.LastReply, "451 4.4.4 ") {
		t.Errorf("one MX host SERVFAIL: %+v", r)
	}
	var dsn []fakeMessage
	h.waitFor("one DSN for both returned recipients", func() bool { dsn = sink.Messages(); return len(dsn) == 1 })
	if !strings.Contains(dsn[0].Data, "Status: 5.1.10") || !strings.Contains(dsn[0].Data, "c@nxdomain.test") {
		t.Errorf("DSN:\n%s", dsn[0].Data)
	}
}

func TestNullSenderNeverBounced(t *testing.T) {
	h := newHarness(t, "partner.test\n", nil)
	route(h, "partner.test", startFake(t, "127.0.0.1:0", nil))
	h.start()
	id := h.queue("", "bob@partner.test")
	h.waitGone(id)
	if d := h.dsns(); len(d) != 0 {
		t.Fatalf("a DSN for a DSN: %+v", d)
	}
	if rec := h.recordFor("bob@partner.test"); rec.Event != audit.Bounced || rec.Sender != "" {
		t.Errorf("audit = %+v", rec)
	}
}

// SPEC §4: recipients of one message to one domain share a transaction
// only when their requirement is the same.
func TestGrouping(t *testing.T) {
	h := newHarness(t, "partner.test\nceo@partner.test bits=128\n", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil) })
	route(h, "partner.test", f)
	route(h, "sales.partner.test", f)
	h.start()
	h.waitGone(h.queue("alice@corp.test", "a@partner.test", "b@partner.test", "ceo@partner.test", "c@sales.partner.test"))
	var sizes []int
	for _, m := range f.Messages() {
		sizes = append(sizes, len(m.Rcpts))
	}
	if len(sizes) != 3 {
		t.Fatalf("transactions = %v, want 3 (domain entry ×2, user entry, subdomain)", sizes)
	}
	for _, rcpt := range []string{"a@partner.test", "ceo@partner.test", "c@sales.partner.test"} {
		rec := h.recordFor(rcpt)
		want := "partner.test"
		if rcpt == "ceo@partner.test" {
			want = rcpt
		}
		if rec.PolicyTarget != want || rec.Event != audit.Delivered {
			t.Errorf("%s: %+v", rcpt, rec)
		}
	}
}

func TestDelayedDSN(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.DelayWarning = time.Hour })
	route(h, "other.test", startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = func(string) string { return "450 4.2.0 greylisted" } }))
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "x@other.test")
	h.waitAttempts(id, "x@other.test", 1)
	if len(sink.Messages()) != 0 {
		t.Fatal("delay DSN before the delay")
	}
	later := time.Now().Add(2 * time.Hour)
	h.now.Store(&later)
	h.runner.Notify(id)
	env := h.waitAttempts(id, "x@other.test", 2)
	var got []fakeMessage
	h.waitFor("the delay DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	if !strings.Contains(got[0].Data, "Action: delayed") || !strings.Contains(got[0].Data, "Will-Retry-Until:") {
		t.Errorf("DSN:\n%s", got[0].Data)
	}
	h.waitFor("DelayNotified", func() bool {
		env, _ = h.spool.Envelope(id)
		return env != nil && env.DelayNotified
	})
	later2 := later.Add(2 * time.Hour)
	h.now.Store(&later2)
	h.runner.Notify(id)
	h.waitAttempts(id, "x@other.test", 3)
	if n := len(sink.Messages()); n != 1 {
		t.Errorf("%d delay DSNs, want exactly one", n)
	}
}

func TestPicksUpSpoolOnStart(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "other.test", f)
	var ids []string
	for range 5 {
		env := &spool.Envelope{From: "a@corp.test", Recipients: []spool.Recipient{{Address: "x@other.test"}}}
		if err := h.spool.Put(env, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	h.start() // no Notify: the start-up scan must find them
	for _, id := range ids {
		h.waitGone(id)
	}
	if n := len(f.Messages()); n != 5 {
		t.Fatalf("%d delivered, want 5", n)
	}
}

// A start is a queue run: deferred recipients are tried at once, not
// after the rest of their backoff.
func TestStartIsQueueRun(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "other.test", f)
	env := &spool.Envelope{From: "a@corp.test", Recipients: []spool.Recipient{
		{Address: "x@other.test", Attempts: 3, NextAttempt: time.Now().Add(time.Hour), LastReply: "451 4.3.0 later"},
	}}
	if err := h.spool.Put(env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.waitGone(env.ID)
	if rec := h.recordFor("x@other.test"); rec.Event != audit.Delivered || rec.Attempt != 4 {
		t.Errorf("audit = %+v", rec)
	}
}

func TestPerDestinationLimit(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxPerDestination = 2 })
	sessions := newSessionGauge()
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = sessions.rcpt })
	route(h, "other.test", f)
	h.start()
	var ids []string
	for range 6 {
		ids = append(ids, h.queue("a@corp.test", "x@other.test"))
	}
	h.waitFor("two sessions in RCPT", func() bool { return sessions.cur.Load() == 2 })
	close(sessions.gate)
	for _, id := range ids {
		h.waitGone(id)
	}
	if p := sessions.peak.Load(); p != 2 {
		t.Errorf("peak concurrent sessions to one destination = %d, want 2", p)
	}
}

func TestShutdownKeepsUnfinished(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.DrainTimeout = 50 * time.Millisecond })
	release := make(chan struct{})
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) {
		f.Rcpt = func(string) string { <-release; return "250 2.1.5 Ok" }
	})
	defer close(release)
	route(h, "other.test", f)
	h.start()
	id := h.queue("a@corp.test", "x@other.test")
	h.waitFor("the session", func() bool { return f.Mails() == 1 })
	h.stop()
	env, err := h.spool.Envelope(id)
	if err != nil {
		t.Fatalf("message gone after an interrupted attempt: %v", err)
	}
	if rc := env.Recipients[0]; rc.State != spool.Pending || rc.Attempts != 0 {
		t.Errorf("interrupted attempt counted: %+v", rc)
	}
}

func TestParseRoute(t *testing.T) {
	for in, ok := range map[string]bool{
		"partner.test=127.0.0.1:25":  true,
		"Partner.Test.=mx.test:2525": true,
		"partner.test":               false,
		"=127.0.0.1:25":              false,
		"partner.test=127.0.0.1":     false,
		"partner.test=127.0.0.1:0":   false,
		"bad..domain=127.0.0.1:25":   false,
	} {
		d, _, err := ParseRoute(in)
		if (err == nil) != ok {
			t.Errorf("ParseRoute(%q) = %q, %v", in, d, err)
		}
	}
	if d, hp, _ := ParseRoute("Partner.Test.=mx.test:2525"); d != "partner.test" || hp != "mx.test:2525" {
		t.Errorf("ParseRoute normalised to %q %q", d, hp)
	}
}

func TestGroupRecipients(t *testing.T) {
	f, _ := policy.Parse("p", []byte("partner.test\nceo@partner.test bits=256\n* mode=testing\n"))
	pol := f.Compile()
	now := time.Now()
	env := &spool.Envelope{Recipients: []spool.Recipient{
		{Address: "a@partner.test"}, {Address: "B@Partner.Test"}, {Address: "ceo@partner.test"},
		{Address: "x@other.test"}, {Address: "y@other.test", State: spool.Delivered},
		{Address: "z@other.test", NextAttempt: now.Add(time.Hour)},
	}}
	gs := groupRecipients(env, pol, now, false)
	var got []string
	for _, g := range gs {
		var rcpts []string
		for _, rc := range g.Rcpts {
			rcpts = append(rcpts, rc.Stored)
		}
		got = append(got, fmt.Sprintf("%s/%s:%s", g.Domain, g.Req.Target, strings.Join(rcpts, ",")))
	}
	want := "partner.test/partner.test:a@partner.test,B@Partner.Test partner.test/ceo@partner.test:ceo@partner.test other.test/*:x@other.test"
	if strings.Join(got, " ") != want {
		t.Errorf("groups = %v\nwant    %s", got, want)
	}
}

func BenchmarkGroupRecipients(b *testing.B) {
	f, _ := policy.Parse("p", []byte("partner.test\nceo@partner.test bits=256\n* mode=testing\n"))
	pol := f.Compile()
	env := &spool.Envelope{}
	for i := range 50 {
		env.Recipients = append(env.Recipients, spool.Recipient{Address: fmt.Sprintf("u%d@d%d.test", i, i%5)})
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		groupRecipients(env, pol, now, false)
	}
}

// Issue 10 points 3 and 5 for mail already queued: envelopes spooled
// before the relay parsed addresses at RCPT hold go-smtp's text (quoted
// local parts unquoted, domains as the client spelt them). They are read
// by value, grouped by canonical domain under that domain's policy, and
// written quoted on the RCPT line; a domain that is not a host name and an
// address literal are returned without any lookup or connection.
func TestStoredAddressesFromOldEnvelopes(t *testing.T) {
	h := newHarness(t, "partner.test verify=cert\n", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil) })
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "u@PARTNER.test.", "inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x@partner.test",
		"user@partner.test..", "v@[127.0.0.1]")
	h.waitGone(id)

	want := []string{`RCPT TO:<u@partner.test>`, `RCPT TO:<"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@partner.test>`}
	if got := f.RcptLines(); !slices.Equal(got, want) {
		t.Errorf("RCPT lines at the MX:\n%q\nwant\n%q", got, want)
	}
	if msgs := f.Messages(); len(msgs) != 1 || msgs[0].TLS == nil {
		t.Errorf("messages at the MX: %+v", msgs)
	}
	for rcpt, reply := range map[string]string{
		"u@PARTNER.test.": "250 ",
		"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x@partner.test": "250 ",
		"user@partner.test..": "501 5.1.3 Bad recipient address syntax",
		"v@[127.0.0.1]":       "550 5.1.2 ",
	} {
		rec := h.recordFor(rcpt)
		if !strings.HasPrefix(rec.Reply, reply) || (reply == "250 " && rec.PolicyTarget != "partner.test") {
			t.Errorf("audit for %s: %+v, want reply %q", rcpt, rec, reply)
		}
	}
}
