package delivery

import (
	"fmt"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/courier"
)

// Queued messages to one MX share one TLS session, one transaction after
// another with RSET between them.
func TestConnectionReuse(t *testing.T) {
	h := newHarness(t, "partner.test verify=cert\n", func(c *Config) { c.MaxPerDestination = 1; c.ConnIdleTime = time.Minute })
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil) })
	route(h, "partner.test", f)
	route(h, "other.test", f)
	h.start()
	var ids []string
	for i := range 6 {
		to := fmt.Sprintf("u%d@partner.test", i)
		if i%2 == 1 {
			to = fmt.Sprintf("u%d@other.test", i) // unlisted: the same session serves it
		}
		ids = append(ids, h.queue("alice@corp.test", to))
	}
	for _, id := range ids {
		h.waitGone(id)
	}
	msgs := f.Messages()
	if len(msgs) != 6 {
		t.Fatalf("%d messages, want 6", len(msgs))
	}
	for _, m := range msgs {
		if m.TLS == nil {
			t.Errorf("message to %v went in clear", m.Rcpts)
		}
	}
	if f.Conns() != 1 {
		t.Errorf("%d connections for 6 messages, want 1", f.Conns())
	}
	if f.Rsets() != 5 {
		t.Errorf("%d RSETs, want 5 (one before each reused transaction)", f.Rsets())
	}
	for i := range 6 {
		rcpt := fmt.Sprintf("u%d@partner.test", i)
		if i%2 == 1 {
			rcpt = fmt.Sprintf("u%d@other.test", i)
		}
		rec := h.recordFor(rcpt)
		if rec.Event != audit.Delivered || !rec.TLS || rec.Bits < 128 {
			t.Errorf("%s: audit = %+v", rcpt, rec)
		}
		if i%2 == 0 && !rec.CertVerified {
			t.Errorf("%s: reused session lost its verification: %+v", rcpt, rec)
		}
	}
}

// A cached connection the MX has closed meanwhile (silently, or with a
// 421 at the next command) fails at its pipelined RSET; the relay takes a
// new connection and delivers at once: no deferral, nothing sent twice.
func TestReuseDeadConnection(t *testing.T) {
	for _, hangUp := range []string{"", "421 4.4.2 fake.test Error: timeout exceeded"} {
		t.Run(fmt.Sprintf("%q", hangUp), func(t *testing.T) {
			h := newHarness(t, "partner.test\n", func(c *Config) { c.MaxPerDestination = 1; c.ConnIdleTime = time.Minute })
			f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil); f.HangUp = &hangUp })
			route(h, "partner.test", f)
			h.start()
			for i := range 3 {
				to := fmt.Sprintf("u%d@partner.test", i)
				h.waitGone(h.queue("alice@corp.test", to))
				if rec := h.recordFor(to); rec.Event != audit.Delivered || rec.Attempt != 1 {
					t.Errorf("%s: audit = %+v, want delivered at the first attempt", to, rec)
				}
			}
			if n := len(f.Messages()); n != 3 {
				t.Errorf("%d messages at the MX, want 3", n)
			}
			if f.Conns() != 3 {
				t.Errorf("%d connections, want 3 (each cached one was dead)", f.Conns())
			}
		})
	}
}

// A clear-text session opened for an unlisted recipient (the handshake
// broke, so it fell back like Postfix's "may") is idle and to the right
// address, yet an enforced recipient must not get it: a new connection is
// made, fails the requirement, and the message is returned without MAIL
// FROM ever being sent for it.
func TestReuseNeverDowngrades(t *testing.T) {
	h := newHarness(t, "partner.test\n", func(c *Config) { c.ConnIdleTime = time.Minute })
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.TLS = h.tlsConfig(nil); f.BreakHandshake = true })
	route(h, "partner.test", f)
	route(h, "other.test", f)
	h.start()
	h.waitGone(h.queue("alice@corp.test", "carol@other.test"))
	if open, idle := h.conns(); open != 1 || idle != 1 {
		t.Fatalf("cache: %d open, %d idle; want the clear session idle", open, idle)
	}
	id := h.queue("alice@corp.test", "bob@partner.test")
	h.waitGone(id)
	if rec := h.recordFor("bob@partner.test"); rec.Event != audit.Bounced ||
		rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("audit = %+v", rec)
	}
	if f.Mails() != 1 { // carol's message only (corp.test, the DSN's, has no route here)
		t.Errorf("%d MAIL FROM, want 1", f.Mails())
	}
	for _, m := range f.Messages() {
		for _, r := range m.Rcpts {
			if r == "bob@partner.test" {
				t.Fatalf("enforced recipient sent in clear: %+v", m)
			}
		}
	}
	if f.Conns() != 3 {
		t.Errorf("%d connections, want 3 (TLS try + clear for carol, a new one for bob)", f.Conns())
	}
}

// The per-destination limit holds per MX address: two domains whose mail
// lands on one server share its limit.
func TestPerAddressLimit(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxPerDestination = 2 })
	sessions := newSessionGauge()
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = sessions.rcpt })
	route(h, "one.test", f)
	route(h, "two.test", f)
	h.start()
	var ids []string
	for i := range 8 {
		ids = append(ids, h.queue("a@corp.test", fmt.Sprintf("x@%s", []string{"one.test", "two.test"}[i%2])))
	}
	h.waitFor("two sessions in RCPT", func() bool { return sessions.cur.Load() == 2 })
	time.Sleep(100 * time.Millisecond) // room for a third to show up, were the limit per domain
	close(sessions.gate)
	for _, id := range ids {
		h.waitGone(id)
	}
	if p := sessions.peak.Load(); p != 2 {
		t.Errorf("peak concurrent sessions to one MX address = %d, want 2", p)
	}
	if f.Conns() > 2 {
		t.Errorf("%d connections; want at most 2", f.Conns())
	}
}

// Retries are spread by the jitter, within its bounds.
func TestBackoffJitter(t *testing.T) {
	c := Config{Backoff: []time.Duration{time.Minute, time.Hour}, Jitter: 0.1}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := c.backoff(2)
		if d < 54*time.Minute || d > 66*time.Minute {
			t.Fatalf("backoff(2) = %v, outside 1h ±10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 50 {
		t.Errorf("only %d distinct waits in 200: no jitter", len(seen))
	}
	c.Jitter = -1
	if d := c.backoff(5); d != time.Hour {
		t.Errorf("without jitter backoff(5) = %v, want 1h", d)
	}
}

// Shutdown says QUIT to idle sessions.
func TestShutdownClosesIdle(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.ConnIdleTime = time.Minute })
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "other.test", f)
	h.start()
	h.waitGone(h.queue("a@corp.test", "x@other.test"))
	if _, idle := h.conns(); idle != 1 {
		t.Fatalf("%d idle sessions, want 1", idle)
	}
	h.stop()
	if open, idle := h.conns(); open != 0 || idle != 0 {
		t.Errorf("after shutdown: %d open, %d idle", open, idle)
	}
}

// conns reports the SMTP courier's connections open and idle.
func (h *harness) conns() (open, idle int) {
	return h.runner.courier.(*courier.SMTP).Conns()
}
