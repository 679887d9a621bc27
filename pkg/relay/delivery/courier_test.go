package delivery

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// scriptedCourier answers each recipient with the outcome scripted for it
// (delivered when none is) and counts its calls, so the queue manager is
// tested without SMTP.
type scriptedCourier struct {
	outcome map[string]courier.Kind
	reply   map[courier.Kind]smtpreply.Reply

	mu     sync.Mutex
	groups []courier.Group
}

func (c *scriptedCourier) Deliver(_ context.Context, _ *courier.Message, g courier.Group) []courier.Result {
	c.mu.Lock()
	c.groups = append(c.groups, g)
	c.mu.Unlock()
	res := make([]courier.Result, len(g.Rcpts))
	for i, rc := range g.Rcpts {
		k := c.outcome[rc.Stored]
		res[i] = courier.Result{Rcpt: rc.Stored, Kind: k, Reply: c.reply[k], RemoteReply: true,
			DSNOffered: true, Hop: courier.Hop{MX: "mx." + g.Domain, IP: "192.0.2.1"}}
	}
	return res
}

func (c *scriptedCourier) Reap(context.Context)     {}
func (c *scriptedCourier) Shutdown(context.Context) {}

func (c *scriptedCourier) calls() []courier.Group {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]courier.Group(nil), c.groups...)
}

// The queue manager records each courier result exactly once: one audit
// record per recipient and attempt, the envelope updated once (attempts
// 1, the reply kept), a bounced recipient returned in one DSN, a
// delivered one never tried again — with no SMTP at all.
func TestOutcomesRecordedOnce(t *testing.T) {
	fc := &scriptedCourier{
		outcome: map[string]courier.Kind{
			"ok@one.test": courier.Delivered, "later@one.test": courier.Deferred, "no@two.test": courier.Bounced,
		},
		reply: map[courier.Kind]smtpreply.Reply{
			courier.Delivered: {Code: 250, Lines: []string{"2.0.0 Ok: queued"}},
			courier.Deferred:  {Code: 451, Lines: []string{"4.3.0 try later"}},
			courier.Bounced:   {Code: 550, Lines: []string{"5.1.1 no such user"}},
		},
	}
	h := newHarness(t, "", func(c *Config) { c.Courier = fc })
	h.start()
	id := h.queue("alice@corp.test", "ok@one.test", "later@one.test", "no@two.test")
	h.waitState(id, "no@two.test", spool.Bounced)
	h.waitFor("the DSN delivered", func() bool { return len(h.dsns()) == 0 && len(fc.calls()) == 3 })
	h.stop()

	env, err := h.spool.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		state spool.RecipientState
		event audit.Event
		reply string
	}{
		"ok@one.test":    {spool.Delivered, audit.Delivered, "250 2.0.0 Ok: queued"},
		"later@one.test": {spool.Pending, audit.Deferred, "451 4.3.0 try later"},
		"no@two.test":    {spool.Bounced, audit.Bounced, "550 5.1.1 no such user"},
	}
	for _, rc := range env.Recipients {
		w := want[rc.Address]
		if rc.State != w.state || rc.Attempts != 1 || rc.LastReply != w.reply {
			t.Errorf("%s: state %v, attempts %d, last reply %q; want %v, 1, %q",
				rc.Address, rc.State, rc.Attempts, rc.LastReply, w.state, w.reply)
		}
	}
	perRcpt := map[string][]audit.Record{}
	for _, r := range h.records() {
		perRcpt[r.Recipient] = append(perRcpt[r.Recipient], r)
	}
	for rcpt, w := range want {
		recs := perRcpt[rcpt]
		_, domain, _ := strings.Cut(rcpt, "@")
		if len(recs) != 1 || recs[0].Event != w.event || recs[0].Attempt != 1 || recs[0].Reply != w.reply || recs[0].MX != "mx."+domain {
			t.Errorf("%s: audit records %+v; want exactly one %s", rcpt, recs, w.event)
		}
	}
	// One group per domain for the message, then the DSN to the sender.
	calls := fc.calls()
	if len(calls) != 3 || len(perRcpt["alice@corp.test"]) != 1 {
		t.Errorf("courier calls %+v, DSN records %+v; want 2 groups and 1 DSN", calls, perRcpt["alice@corp.test"])
	}
}
