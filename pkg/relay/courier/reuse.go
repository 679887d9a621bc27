package courier

import (
	"context"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// connCache holds the relay's outbound SMTP connections, busy and idle,
// within the global and per-MX-address limits, and hands an idle one to
// the next transaction for the same MX (Postfix's scache with
// smtp_connection_reuse: RFC 5321 §4.1.1.5 lets one session carry many
// transactions, separated by RSET).
//
// An idle connection keeps the TLS Outcome that was judged when it was
// opened, and it is taken only for a group whose requirement that Outcome
// passes through policy.EvaluateHop (with the DANE state it was opened
// with): a clear-text session opened for an
// unlisted recipient can never carry mail for an enforced one, and a
// session whose certificate was not verified never carries verify=cert
// mail. The verdict is taken again for each group, so mode=testing and
// would-bounce are judged per transaction, as on a new connection.
//
// Idle connections count against the limits. A caller that finds the
// limit reached closes an idle connection it cannot use (of the same
// address first, else the oldest anywhere) rather than wait for it to
// time out.
type connCache struct {
	maxTotal, maxPerAddr int
	idleTime, maxAge     time.Duration
	now                  func() time.Time

	mu      sync.Mutex
	open    int            // connections open or being opened
	perAddr map[string]int // the same, by address dialled
	idle    []*conn        // oldest first
	changed chan struct{}  // closed (and replaced) whenever a slot or an idle connection appears
	closed  bool
}

// conn is an open outbound session and what was found out about it when
// it was opened.
type conn struct {
	s      *smtpclient.Session
	hop    Hop // MX, IP and the judged Outcome; Verdict is per group
	addr   string
	opened time.Time
	since  time.Time // idle since
	uses   int       // transactions carried
}

// Defaults for reuse, as Postfix's smtp_connection_cache_time_limit (2s;
// a little longer here so a steady trickle still finds a session) and
// smtp_connection_reuse_time_limit (300s).
const (
	DefaultConnIdleTime = 5 * time.Second
	DefaultConnMaxAge   = 300 * time.Second
)

func newConnCache(maxTotal, maxPerAddr int, idleTime, maxAge time.Duration, now func() time.Time) *connCache {
	return &connCache{
		maxTotal: maxTotal, maxPerAddr: maxPerAddr, idleTime: idleTime, maxAge: maxAge, now: now,
		perAddr: map[string]int{}, changed: make(chan struct{}),
	}
}

// signal wakes every waiter; c.mu is held.
func (c *connCache) signal() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// take returns an idle connection to addr (for MX name) whose Outcome
// passes req, or reserves a slot for a new connection (conn nil, ok true).
// It waits while the limits are reached and nothing can be freed, and
// returns ok false when ctx ends first.
//
// The connection must have been opened with the same HopFacts (DANE
// state) as t has now, and the verdict is EvaluateHop's with them: a
// connection opened without TLSA records never carries mail for a hop
// that has them now.
func (c *connCache) take(ctx context.Context, t target, req policy.Requirement) (cn *conn, ok bool) {
	name, addr := t.name, t.addr
	for {
		c.mu.Lock()
		now := c.now()
		var victim *conn
		for i, x := range c.idle {
			if x.addr != addr || x.hop.MX != name || x.hop.Facts != t.facts || c.expired(x, now) {
				continue
			}
			if !policy.EvaluateHop(req, x.hop.Facts, x.hop.Outcome).MaySend {
				continue
			}
			c.idle = append(c.idle[:i], c.idle[i+1:]...)
			c.mu.Unlock()
			return x, true
		}
		if c.perAddr[addr] < c.maxPerAddr && c.open < c.maxTotal {
			c.open++
			c.perAddr[addr]++
			c.mu.Unlock()
			return nil, true
		}
		// Make room by closing an idle connection this group cannot use:
		// one to the same address when that address is at its limit,
		// else the oldest one when the global limit is reached.
		for i, x := range c.idle {
			if c.perAddr[addr] < c.maxPerAddr || x.addr == addr {
				victim = x
				c.idle = append(c.idle[:i], c.idle[i+1:]...)
				break
			}
		}
		wait := c.changed
		c.mu.Unlock()
		if victim != nil {
			c.discard(ctx, victim, true)
			continue
		}
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// expired: idle too long, or open too long to be trusted with more mail.
func (c *connCache) expired(x *conn, now time.Time) bool {
	return now.Sub(x.since) >= c.idleTime || now.Sub(x.opened) >= c.maxAge
}

// release gives back a slot reserved by take whose connection was never
// made or has been closed.
func (c *connCache) release(addr string) {
	c.mu.Lock()
	c.open--
	if c.perAddr[addr]--; c.perAddr[addr] <= 0 {
		delete(c.perAddr, addr)
	}
	c.signal()
	c.mu.Unlock()
}

// put parks a connection whose last transaction ended cleanly, for the
// next transaction to the same MX; after shutdown it is closed instead.
func (c *connCache) put(ctx context.Context, x *conn) {
	x.since = c.now()
	c.mu.Lock()
	if c.closed || x.s.Closed() || c.expired(x, x.since) {
		c.mu.Unlock()
		c.discard(ctx, x, !x.s.Closed())
		return
	}
	c.idle = append(c.idle, x)
	c.signal()
	c.mu.Unlock()
}

// discard closes a connection (with QUIT when polite) and frees its slot.
func (c *connCache) discard(ctx context.Context, x *conn, polite bool) {
	if polite {
		// A short, separate bound: QUIT is a courtesy (RFC 5321
		// §4.1.1.10) and must not hold up the caller.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		x.s.Quit(qctx)
		cancel()
	}
	x.s.Close()
	c.release(x.addr)
}

// reap closes the idle connections that have expired.
func (c *connCache) reap(ctx context.Context) {
	c.mu.Lock()
	now := c.now()
	var old []*conn
	keep := c.idle[:0]
	for _, x := range c.idle {
		if c.expired(x, now) {
			old = append(old, x)
		} else {
			keep = append(keep, x)
		}
	}
	clear(c.idle[len(keep):])
	c.idle = keep
	c.mu.Unlock()
	for _, x := range old {
		c.discard(ctx, x, true)
	}
}

// shutdown closes every idle connection and makes put close the rest.
func (c *connCache) shutdown(ctx context.Context) {
	c.mu.Lock()
	c.closed = true
	old := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, x := range old {
		c.discard(ctx, x, true)
	}
}

// counts reports connections open and idle, for tests and metrics.
func (c *connCache) counts() (open, idle int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, len(c.idle)
}
