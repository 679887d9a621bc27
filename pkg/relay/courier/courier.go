// Package courier makes one SMTP delivery attempt for one group of
// recipients (one message, one domain, one policy requirement): it finds
// the hops (a static route or the domain's MX hosts), connects to them in
// order, has policy.EvaluateHop judge each hop (its TLS and its DANE
// state, against the list, MTA-STS and REQUIRETLS), sends over the first hop
// whose verdict lets the mail go, and asks policy.Decide about the group
// when none did. It keeps the outbound connection cache (reuse.go).
//
// It is Postfix's smtp(8) to the queue manager's qmgr(8), and chasquid's
// courier.Courier: it knows nothing of the spool's schedule, the audit log
// or DSNs; it returns one Result per recipient and the queue manager
// (pkg/relay/delivery) records them.
//
// The per-hop steps live apart so a check can be added where it belongs:
// targets.go lists the hops, hop.go connects to one and judges it,
// transact.go hands the message over on a judged session.
package courier

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Resolver finds a domain's MX hosts; *mx.Resolver is one.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) (mx.Result, error)
}

// Config is what the SMTP courier needs. The queue manager fills it from
// its own configuration (delivery.Config).
type Config struct {
	// Hostname is the EHLO name.
	Hostname string
	Resolver Resolver
	// DANE looks up an MX host's TLSA records (RFC 7672); nil: DANE is
	// not looked up (no DNSSEC-capable resolver).
	DANE DANELookup
	// Routes send a domain (and its subdomains) to a fixed host:port
	// without an MX lookup. Keys are lower-case domains without a
	// trailing dot, values checked host:port; the map is read at every
	// attempt, not copied.
	Routes map[string]string
	// MXPort is the port dialled on MX hosts (25; another for labs).
	MXPort   int
	RootCAs  *x509.CertPool
	Timeouts smtpclient.Timeouts
	// MaxConnections bounds the outbound connections, busy or idle;
	// MaxPerAddress those to one MX address (IP:port).
	MaxConnections, MaxPerAddress int
	// ConnIdleTime is how long an idle connection waits for the next
	// transaction to its MX; ConnMaxAge how long one connection may be
	// reused at all.
	ConnIdleTime, ConnMaxAge time.Duration
	Log                      *slog.Logger
	Now                      func() time.Time
}

// SMTP is the relay's courier: one attempt per Deliver call, over cached
// or new connections. It is safe for concurrent use.
type SMTP struct {
	cfg   Config
	cache *connCache
}

// New returns a courier for cfg; every field must be set (the queue
// manager's defaults apply before).
func New(cfg Config) *SMTP {
	return &SMTP{
		cfg:   cfg,
		cache: newConnCache(cfg.MaxConnections, cfg.MaxPerAddress, cfg.ConnIdleTime, cfg.ConnMaxAge, cfg.Now),
	}
}

// Reap closes the idle connections that have expired; the queue manager
// calls it about twice per ConnIdleTime.
func (c *SMTP) Reap(ctx context.Context) { c.cache.reap(ctx) }

// Shutdown closes every idle connection (with QUIT) and makes the
// connections still in use close when their transaction ends.
func (c *SMTP) Shutdown(ctx context.Context) { c.cache.shutdown(ctx) }

// Conns reports the connections open (busy or idle) and idle, for tests
// and metrics.
func (c *SMTP) Conns() (open, idle int) { return c.cache.counts() }

// Message is what an attempt needs of one spooled message.
type Message struct {
	ID string // the queue ID, for logs
	// From is the reverse-path as written on MAIL FROM ("" for the null
	// sender).
	From    string
	Options smtpclient.MailOptions
	// RequireTLS: the message was received with MAIL FROM … REQUIRETLS
	// (RFC 8689 §4.1); it goes only over a hop that meets RFC 8689
	// §4.2.1 and the flag is passed on.
	RequireTLS bool
	// Body opens the message as stored (headers and body, CRLF lines).
	Body func() (io.ReadCloser, error)
}

// Group is one SMTP transaction's worth of recipients: one message, one
// domain, one requirement (recipients of one message to one domain with
// the same requirement share a transaction).
type Group struct {
	Domain string // canonical (address.CanonicalDomain)
	Req    policy.Requirement
	Rcpts  []Recipient
	// Refused: the recipients are returned with this reply, unsent (an
	// unreadable address, an address literal).
	Refused smtpreply.Reply
}

// Recipient is one recipient of a group.
type Recipient struct {
	// Stored is the address as the envelope keeps it; its Result
	// carries it back.
	Stored string
	// RCPT is what goes on the RCPT line: the address written by
	// address.Mailbox.String, and the RFC 3461 NOTIFY and ORCPT, passed on
	// to a next hop that offers DSN.
	RCPT smtpclient.Recipient
}

// Kind is a recipient's outcome of one attempt.
type Kind uint8

const (
	Delivered Kind = iota
	Deferred
	Bounced
)

func (k Kind) String() string {
	switch k {
	case Delivered:
		return "delivered"
	case Deferred:
		return "deferred"
	}
	return "bounced"
}

// Hop is the connection an outcome came from: which MX, which address,
// and what TLS it achieved.
type Hop struct {
	MX      string // MX host name (or the route's host)
	IP      string // the address dialled
	Outcome policy.Outcome
	Verdict policy.Verdict
	// Facts is the hop's DANE state the verdict was taken with; TLSA its
	// TLSA records in presentation form (usable or not), for the audit
	// and TLS-RPT's policy-string.
	Facts policy.HopFacts
	TLSA  []string
	// LocalIP is the relay's own address on the connection (TLS-RPT's
	// sending-mta-ip); "" when none was made.
	LocalIP string
}

// Result is one recipient's outcome of one attempt.
type Result struct {
	Rcpt string // Recipient.Stored
	Kind Kind
	// Reply is the remote's reply for this recipient, or the relay's own
	// (pkg/smtpreply's codes, or a Local text) when there was none.
	Reply smtpreply.Reply
	// Diagnostic is the policy verdict when the requirement was not met
	// (the bounce or would-bounce reason); zero otherwise.
	Diagnostic smtpreply.Reply
	// WouldBounce: delivered in mode=testing although the requirement
	// failed.
	WouldBounce bool
	// Refused: the gateway's own policy refused the delivery; Reply is
	// the verdict, which no host sent.
	Refused bool
	// RemoteReply: Reply is what Hop.MX answered (a DSN names a
	// Remote-MTA only for a host that sent the reply).
	RemoteReply bool
	// DSNOffered: the next hop's EHLO listed DSN, so the recipient's
	// NOTIFY went on with the message (RFC 3461 §5.2.2: no "relayed"
	// report of ours then).
	DSNOffered bool
	// HandedOff: no MX met the requirement and the message went to the
	// entry's hand-off route instead (on-fail=route, handoff.go); Hop is
	// the route's, Route names it as the policy file does, and
	// Diagnostic is why the partner's MX hosts were refused.
	HandedOff bool
	Route     string
	Hop       Hop
	// FailedHops are the MX hosts (one per address) this attempt tried
	// before, or instead of, Hop that did not carry the mail, in the
	// order tried: refused by the requirement (a DANE mismatch, no
	// STARTTLS under an enforced requirement, a bad certificate), ruled
	// out before a connection (an MTA-STS policy not listing it, its
	// TLSA lookup failing), or unreachable. Hop's own failure is not
	// repeated here. The queue manager audits each (hop-failed): RFC
	// 8460 §4 counts every session, not only the one that decided. The
	// recipients of one group share the slice.
	FailedHops []FailedHop
}

// FailedHop is one hop of an attempt that did not carry the mail.
type FailedHop struct {
	Hop
	// Reply is why: the verdict's text (Hop.Verdict, whose FailedBy
	// names the source that refused), the remote's reply, or the
	// connection's error.
	Reply smtpreply.Reply
	// Policy: the hop did not meet the requirement; Reply is the
	// verdict, which no host sent.
	Policy bool
	// NotDialled: refused before any connection (RFC 7672 §2.2: its
	// TLSA lookup failed; RFC 8461 §4.1: the enforced MTA-STS policy
	// does not list it). Hop.IP is the address that would have been
	// dialled; nothing was sent to it.
	NotDialled bool
}

// failure is why a hop did not carry the group.
type failure struct {
	hop       Hop
	reply     smtpreply.Reply
	temporary bool
	policy    bool // the TLS requirement was not met
	remote    bool // reply is what hop.MX sent
	// stale: a cached connection turned out dead at its RSET, before
	// anything of this message was sent; another connection may do.
	stale bool
	// notDialled: refused before a connection (refuseBeforeDial).
	notDialled bool
}

// Deliver runs one attempt for g and returns each recipient's outcome,
// in g.Rcpts order. It tries every target in order until one carries the
// transaction; a target that cannot meet the group's requirement gets no
// MAIL FROM. When none carried, policy.Decide says whether the group
// bounces, waits, or is handed off to the entry's route (handOff).
func (c *SMTP) Deliver(ctx context.Context, m *Message, g Group) []Result {
	// The message's REQUIRETLS is part of its requirement (RFC 8689
	// §4.2.1), judged with the rest on every hop (connect, session); the
	// queue manager joins it through policy.Combine, and a group handed
	// over without it must not lose it.
	g.Req.RequireTLS = g.Req.RequireTLS || m.RequireTLS
	if !g.Refused.IsZero() {
		return failAll(g, &failure{reply: g.Refused})
	}
	ts, f := c.targets(ctx, g)
	if f != nil {
		return failAll(g, f)
	}
	var fails []*failure // one per target tried, in order
	var hops []policy.HopResult
	seen := map[string]target{} // MX host → its DANE state, this attempt
	for _, t := range ts {
		if ctx.Err() != nil {
			// The targets not tried might have met the requirement.
			fails = append(fails, &failure{reply: smtpreply.Local("delivery interrupted: " + ctx.Err().Error()), temporary: true})
			hops = append(hops, policy.HopResult{})
			break
		}
		t = c.withDANE(ctx, t, g.Req, seen)
		if f := refuseBeforeDial(t, g.Req); f != nil {
			// Known unfit before a connection: none is made, so
			// nothing can leak in clear.
			c.cfg.Log.Info("MX not used", "domain", g.Domain, "mx", t.name, "addr", t.addr, "reason", f.reply.String(), "policy", true)
			fails = append(fails, f)
			hops = append(hops, policy.HopResult{Reached: true, Verdict: f.hop.Verdict})
			continue
		}
		res, f := c.deliverTo(ctx, t, m, g)
		if f == nil {
			// The first target that could carry it did.
			return withFailedHops(res, fails, nil)
		}
		fails = append(fails, f)
		hops = append(hops, policy.HopResult{Reached: f.policy, Verdict: f.hop.Verdict})
	}
	d := policy.Decide(g.Req, hops)
	switch {
	case d.Action == policy.HandOff:
		// Every partner hop failed; the result's Hop is the route's.
		return withFailedHops(c.handOff(ctx, m, g, d.Route, fails[d.Hop]), fails, nil)
	case d.Action == policy.Bounce:
		// Every MX was reached and none met the requirement.
		f := fails[d.Hop]
		f.temporary = false
		return withFailedHops(failAll(g, f), fails, f)
	case d.Hop >= 0:
		// on-fail=defer, or an MX that could not be reached might have
		// met it: retry, and keep the policy text for the expiry DSN.
		// (Deliver cannot come back: every hop given failed; if it did,
		// deferring is the safe reading.)
		f := fails[d.Hop]
		f.temporary = true
		return withFailedHops(failAll(g, f), fails, f)
	case len(fails) > 0:
		// Nothing refused the mail; say why the last target failed.
		f := fails[len(fails)-1]
		return withFailedHops(failAll(g, f), fails, f)
	}
	return failAll(g, &failure{reply: smtpreply.NoMXReached(g.Domain), temporary: true})
}

// refuseBeforeDial is the verdict on a hop that must not be connected to
// at all: its TLSA lookup failed (RFC 7672 §2.2: defer, never a
// downgrade), or an MTA-STS policy in enforce mode does not list it (RFC
// 8461 §4.1). nil when the hop may be tried. Both defer (policy.Decide:
// what the partner publishes never bounces).
//
// A failed TLSA lookup stops the hop when DANE applies, and also under an
// enforced verify=dane entry whatever relaxes the published policies
// (TLS-Required: No never lowers a list entry): dialled without its
// records the hop could only fail verify=dane as the list's refusal,
// which on-fail=bounce would bounce for a DNS failure.
func refuseBeforeDial(t target, req policy.Requirement) *failure {
	var rep smtpreply.Reply
	var src policy.SourceKind
	daneNeeded := req.Ignore == "" || (req.Enforced() && req.Verify == policy.VerifyDANE)
	switch {
	case daneNeeded && t.facts.DANE == policy.DANEFailed:
		// The verdict EvaluateHop gives such a hop, taken without a
		// connection: the DANE failure is the one that names why.
		rep, src = smtpreply.DANELookupFailed(t.name, t.facts.DANEError), policy.SourceDANE
	case req.STSRulesOut(t.name):
		rep, src = smtpreply.STSMXNotListed(t.name, req.STS.ID), policy.SourceMTASTS
	default:
		return nil
	}
	v := policy.EvaluateHop(req, t.facts, policy.Outcome{Failure: "not connected"})
	v.Met, v.MaySend, v.WouldBounce = false, false, false
	v.FailedBy, v.Reply, v.Diagnostic, v.Reason = src, rep, rep.String(), policy.ReasonPublished
	v.Failures = append([]policy.Failure{{Source: src, Reply: rep, Enforced: true}}, v.Failures...)
	hop := Hop{MX: t.name, IP: hostOf(t.addr), Verdict: v, Facts: t.facts, TLSA: tlsaStrings(t)}
	return &failure{hop: hop, reply: rep, policy: true, temporary: true, notDialled: true}
}

// withFailedHops gives every result the hops in fails that did not carry
// the mail, leaving out shown (the failure the results already carry as
// their Hop) and the placeholders of an interrupted attempt (no hop).
func withFailedHops(res []Result, fails []*failure, shown *failure) []Result {
	var hops []FailedHop
	for _, f := range fails {
		if f == shown || f.hop.MX == "" {
			continue
		}
		hops = append(hops, FailedHop{Hop: f.hop, Reply: f.reply, Policy: f.policy, NotDialled: f.notDialled})
	}
	if len(hops) == 0 {
		return res
	}
	for i := range res {
		res[i].FailedHops = hops
	}
	return res
}

// deliverTo runs the transaction over a connection to t. A cached
// connection found dead at its RSET is dropped and the next one (or a new
// connection) is tried: nothing was handed over on it.
func (c *SMTP) deliverTo(ctx context.Context, t target, m *Message, g Group) ([]Result, *failure) {
	for {
		cn, f := c.session(ctx, t, g.Req)
		if f != nil {
			c.cfg.Log.Info("MX not used", "domain", g.Domain, "mx", t.name, "addr", t.addr, "reason", f.reply.String(), "policy", f.policy)
			return nil, f
		}
		res, f := c.transact(ctx, cn, m, g)
		if f != nil && f.stale && ctx.Err() == nil {
			c.cfg.Log.Debug("cached connection dropped", "mx", t.name, "addr", t.addr, "err", f.reply.String())
			continue
		}
		return res, f // f: the session broke before the message was handed over
	}
}

// failAll gives every recipient of g the outcome f.
func failAll(g Group, f *failure) []Result {
	k := Bounced
	if f.temporary {
		k = Deferred
	}
	res := make([]Result, len(g.Rcpts))
	for i, rc := range g.Rcpts {
		res[i] = Result{Rcpt: rc.Stored, Kind: k, Reply: f.reply, Hop: f.hop, RemoteReply: f.remote}
		if f.policy {
			res[i].Diagnostic, res[i].Refused = f.reply, true
		}
	}
	return res
}
