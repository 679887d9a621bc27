package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpclient"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// group is one SMTP transaction's worth of recipients: one message, one
// domain, one requirement (SPEC §4: recipients of one message to one
// domain with the same requirement share a transaction).
type group struct {
	domain string // canonical (address.CanonicalDomain)
	req    policy.Requirement
	rcpts  []string // as stored in the envelope
	wire   []string // the same, as written on the RCPT line
	// notify and orcpt are each recipient's RFC 3461 NOTIFY and ORCPT
	// as stored, passed on to a next hop that offers DSN.
	notify [][]string
	orcpt  []string
	// refused: the recipients are returned with this reply, unsent.
	refused smtpreply.Reply
}

// Kind is a recipient's outcome of one attempt.
type Kind uint8

const (
	KindDelivered Kind = iota
	KindDeferred
	KindBounced
)

func (k Kind) String() string {
	switch k {
	case KindDelivered:
		return "delivered"
	case KindDeferred:
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
	judged  bool // a session got as far as the TLS decision
}

// Result is one recipient's outcome of one attempt.
type Result struct {
	Rcpt string
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
	// RemoteReply: Reply is what Hop.MX answered (SPEC §4: a DSN names a
	// Remote-MTA only for a host that sent the reply).
	RemoteReply bool
	// DSNOffered: the next hop's EHLO listed DSN, so the recipient's
	// NOTIFY went on with the message (RFC 3461 §5.2.2: no "relayed"
	// report of ours then).
	DSNOffered bool
	Hop        Hop
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
}

// target is one address to try: an MX host's address or a route.
type target struct {
	name string // the MX host name, for SNI and certificate matching
	addr string // host:port to dial
}

// routeFor finds a static route for domain or a parent domain.
func (r *Runner) routeFor(domain string) (string, bool) {
	for d := domain; d != ""; {
		if hp, ok := r.cfg.Routes[d]; ok {
			return hp, true
		}
		_, rest, ok := strings.Cut(d, ".")
		if !ok {
			break
		}
		d = rest
	}
	return "", false
}

// targets lists where the domain's mail goes, in the order to try: the
// route, or every address of every MX host by preference (RFC 5321 §5.1).
// A non-nil failure applies to the whole group.
func (r *Runner) targets(ctx context.Context, domain string) ([]target, *failure) {
	if hp, ok := r.routeFor(domain); ok {
		host, _, _ := net.SplitHostPort(hp)
		return []target{{name: host, addr: hp}}, nil
	}
	if r.cfg.Resolver == nil {
		return nil, &failure{reply: smtpreply.LookupFailed("no resolver and no route for " + domain), temporary: true}
	}
	res, err := r.cfg.Resolver.LookupMX(ctx, domain)
	switch {
	case errors.Is(err, mx.ErrNullMX) || res.NullMX:
		return nil, &failure{reply: smtpreply.NullMX(domain)}
	case err != nil && mx.IsTemporary(err):
		return nil, &failure{reply: smtpreply.LookupFailed(err), temporary: true}
	case err != nil:
		return nil, &failure{reply: smtpreply.NoDomain(err)}
	}
	port := strconv.Itoa(r.cfg.MXPort)
	var ts []target
	for _, h := range res.Hosts {
		for _, a := range h.Addrs {
			ts = append(ts, target{name: h.Name, addr: net.JoinHostPort(unmap(a).String(), port)})
		}
	}
	if len(ts) == 0 {
		// Every host failed its A/AAAA lookup: temporary unless each
		// failure was permanent (mx.Result.NoAddress, which the probe
		// grades by too).
		if permanent, err := res.NoAddress(); permanent {
			return nil, &failure{reply: smtpreply.NoDomain(err)}
		}
		return nil, &failure{reply: smtpreply.NoMXReached(domain), temporary: true}
	}
	return ts, nil
}

func unmap(a netip.Addr) netip.Addr { return a.Unmap() }

// deliverGroup runs one attempt for a group and returns each recipient's
// outcome. It tries every target in order until one carries the
// transaction; a target that cannot meet the group's requirement gets no
// MAIL FROM. When none carried, policy.Decide says whether the group
// bounces or waits.
func (r *Runner) deliverGroup(ctx context.Context, env *spool.Envelope, g group) []Result {
	if !g.refused.IsZero() {
		return r.failAll(g, &failure{reply: g.refused})
	}
	ts, f := r.targets(ctx, g.domain)
	if f != nil {
		return r.failAll(g, f)
	}
	var fails []*failure // one per target tried, in order
	var hops []policy.HopResult
	for _, t := range ts {
		if ctx.Err() != nil {
			// The targets not tried might have met the requirement.
			fails = append(fails, &failure{reply: smtpreply.Local("delivery interrupted: " + ctx.Err().Error()), temporary: true})
			hops = append(hops, policy.HopResult{})
			break
		}
		res, f := r.deliverTo(ctx, t, env, g)
		if f == nil {
			return res // the first target that could carry it did
		}
		fails = append(fails, f)
		hops = append(hops, policy.HopResult{Reached: f.policy, Verdict: f.hop.Verdict})
	}
	d := policy.Decide(g.req, hops)
	switch {
	case d.Action == policy.Bounce:
		// Every MX was reached and none met the requirement (B4, B5).
		f := fails[d.Hop]
		f.temporary = false
		return r.failAll(g, f)
	case d.Hop >= 0:
		// on-fail=defer, or an MX that could not be reached might have
		// met it: retry, and keep the policy text for the expiry DSN.
		// (Deliver cannot come back: every hop given failed; if it did,
		// deferring is the safe reading.)
		f := fails[d.Hop]
		f.temporary = true
		return r.failAll(g, f)
	case len(fails) > 0:
		// Nothing refused the mail; say why the last target failed.
		return r.failAll(g, fails[len(fails)-1])
	}
	return r.failAll(g, &failure{reply: smtpreply.NoMXReached(g.domain), temporary: true})
}

// deliverTo runs the transaction over a connection to t. A cached
// connection found dead at its RSET is dropped and the next one (or a new
// connection) is tried: nothing was handed over on it.
func (r *Runner) deliverTo(ctx context.Context, t target, env *spool.Envelope, g group) ([]Result, *failure) {
	for {
		cn, f := r.session(ctx, t, g.req)
		if f != nil {
			r.cfg.Log.Info("MX not used", "domain", g.domain, "mx", t.name, "addr", t.addr, "reason", f.reply.String(), "policy", f.policy)
			return nil, f
		}
		res, f := r.transact(ctx, cn, env, g)
		if f != nil && f.stale && ctx.Err() == nil {
			r.cfg.Log.Debug("cached connection dropped", "mx", t.name, "addr", t.addr, "err", f.reply.String())
			continue
		}
		return res, f // f: the session broke before the message was handed over
	}
}

func (r *Runner) failAll(g group, f *failure) []Result {
	k := KindBounced
	if f.temporary {
		k = KindDeferred
	}
	res := make([]Result, len(g.rcpts))
	for i, rc := range g.rcpts {
		res[i] = Result{Rcpt: rc, Kind: k, Reply: f.reply, Hop: f.hop, RemoteReply: f.remote}
		if f.policy {
			res[i].Diagnostic, res[i].Refused = f.reply, true
		}
	}
	return res
}

func (r *Runner) dial(ctx context.Context, t target) (*smtpclient.Session, error) {
	return smtpclient.Dial(ctx, t.addr, smtpclient.Options{
		HeloName:   r.cfg.Hostname,
		ServerName: t.name,
		RootCAs:    r.cfg.RootCAs,
		Timeouts:   r.cfg.Timeouts,
		Logger:     r.cfg.Log,
	})
}

// session finds a connection to t that may carry mail under req: an idle
// one whose judged Outcome passes req, or a new one from connect. The
// connection holds a slot in the cache until transact hands it back.
func (r *Runner) session(ctx context.Context, t target, req policy.Requirement) (*conn, *failure) {
	cn, ok := r.cache.take(ctx, t.name, t.addr, req)
	if !ok {
		return nil, &failure{hop: Hop{MX: t.name, IP: hostOf(t.addr)}, reply: smtpreply.Local("delivery interrupted: " + context.Cause(ctx).Error()), temporary: true}
	}
	if cn != nil {
		// RFC 5321 §4.1.1.5: RSET clears whatever the previous
		// transaction left and proves the connection still alive before
		// it is given a MAIL FROM. It leads the next transaction's
		// pipelined group; a dead connection fails there (stale, in
		// transact) and deliverTo takes the next one.
		cn.s.ResetNext()
		cn.hop.Verdict = policy.Evaluate(req, cn.hop.Outcome)
		cn.uses++
		return cn, nil
	}
	s, hop, f := r.connect(ctx, t, req)
	if f != nil {
		r.cache.release(t.addr)
		return nil, f
	}
	now := r.cfg.Now()
	return &conn{s: s, hop: hop, addr: t.addr, opened: now, since: now, uses: 1}, nil
}

// connect opens a session to t that may carry mail under req: EHLO,
// STARTTLS whenever offered, and policy.Evaluate's verdict. When the
// verdict forbids sending, the session is closed with QUIT before any MAIL
// FROM and a policy failure is returned.
func (r *Runner) connect(ctx context.Context, t target, req policy.Requirement) (*smtpclient.Session, Hop, *failure) {
	hop := Hop{MX: t.name, IP: hostOf(t.addr)}
	s, err := r.dial(ctx, t)
	if err != nil {
		return nil, hop, sessionFailure(hop, t, err)
	}
	if err := s.Hello(ctx); err != nil {
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	out, err := s.StartTLS(ctx)
	hop.Outcome, hop.Verdict, hop.judged = out, policy.Evaluate(req, out), true
	if err != nil && out.TLS {
		// Encrypted, then the session broke (EHLO after TLS): nothing
		// to judge, try the next one.
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	if !hop.Verdict.MaySend {
		// SPEC §4: no MAIL FROM on this connection.
		if err == nil {
			s.Quit(ctx)
		}
		s.Close()
		return nil, hop, &failure{hop: hop, reply: hop.Verdict.Reply, policy: true}
	}
	if err == nil {
		return s, hop, nil
	}
	// The handshake failed (or injected plaintext was refused) and the
	// recipient may go without TLS: like Postfix's "may" level, try
	// again in clear on a new connection (RFC 7435 §4: opportunistic
	// security falls back to clear text rather than fail).
	s.Close()
	r.cfg.Log.Info("TLS failed; retrying in clear for an unenforced recipient", "mx", t.name, "addr", t.addr, "reason", out.Failure)
	s, err = r.dial(ctx, t)
	if err != nil {
		return nil, hop, sessionFailure(hop, t, err)
	}
	if err := s.Hello(ctx); err != nil {
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	clear := policy.Outcome{Failure: out.Failure}
	hop.Outcome, hop.Verdict = clear, policy.Evaluate(req, clear)
	if !hop.Verdict.MaySend { // cannot happen for a MaySend requirement; fail closed anyway
		s.Quit(ctx)
		return nil, hop, &failure{hop: hop, reply: hop.Verdict.Reply, policy: true}
	}
	return s, hop, nil
}

// transact hands the message to an established session. A non-nil
// failure means nothing was handed over and the next target may be tried;
// otherwise every recipient has its outcome.
//
// The connection goes back to the cache when the session is in a known
// state after the transaction (a reply to the final ".", or every RCPT
// refused); otherwise it is closed.
func (r *Runner) transact(ctx context.Context, cn *conn, env *spool.Envelope, g group) (_ []Result, _ *failure) {
	s, hop := cn.s, cn.hop
	reusable := false
	defer func() {
		if reusable && ctx.Err() == nil {
			r.cache.put(ctx, cn)
			return
		}
		r.cache.discard(ctx, cn, false)
	}()
	t := target{name: hop.MX, addr: s.Addr()}
	// RFC 3461 §5.2.2: NOTIFY goes on only to a hop that offers DSN;
	// otherwise a NOTIFY=SUCCESS recipient gets our "relayed" report.
	offersDSN := s.Supports("DSN")
	res := make([]Result, len(g.rcpts))
	for i, rc := range g.rcpts {
		res[i] = Result{Rcpt: rc, Hop: hop, DSNOffered: offersDSN}
		if !hop.Verdict.Met {
			res[i].Diagnostic = hop.Verdict.Reply
		}
	}
	setAll := func(k Kind, rep smtpreply.Reply, remote bool) []Result {
		for i := range res {
			res[i].Kind, res[i].Reply, res[i].RemoteReply = k, rep, remote
		}
		return res
	}
	opts := smtpclient.MailOptions{Size: env.Size, SMTPUTF8: env.SMTPUTF8, Body8BIT: env.Body8Bit,
		Ret: env.DSNRet, EnvID: env.DSNEnvID}
	from := env.From
	if m, err := storedMailbox(from); err == nil {
		from = m.String()
	} // else "" (the null sender) or unreadable: Envelope refuses it
	rcpts := make([]smtpclient.Recipient, len(g.wire))
	for i, w := range g.wire {
		rcpts[i] = smtpclient.Recipient{Addr: w, Notify: g.notify[i], ORcpt: g.orcpt[i]}
	}
	mailRep, replies, err := s.EnvelopeTo(ctx, from, opts, rcpts)
	if e := (*smtpclient.Error)(nil); errors.As(err, &e) && e.Step == "RSET" {
		f := sessionFailure(hop, t, err)
		f.stale = true
		return nil, f
	}
	if err != nil {
		if errors.Is(err, smtpclient.ErrSMTPUTF8) {
			return setAll(KindBounced, smtpreply.NeedsSMTPUTF8(smtpclient.ErrSMTPUTF8.Error()), false), nil
		}
		if rep, ok := smtpclient.ReplyOf(err); ok && rep.Code != 421 {
			s.Quit(ctx)
			// RFC 5321 §4.2.5 / §6.1: a reply to MAIL decides for the
			// whole transaction: 5xx returns, 4xx retries.
			if rep.Permanent() {
				return setAll(KindBounced, rep, true), nil
			}
			return setAll(KindDeferred, rep, true), nil
		}
		if !smtpclient.IsTemporary(err) {
			f := sessionFailure(hop, t, err)
			return setAll(KindBounced, f.reply, f.remote), nil
		}
		// 421 or a broken connection before DATA: nothing was handed
		// over, another MX may do better.
		return nil, sessionFailure(hop, t, err)
	}
	_ = mailRep
	var accepted []int
	closing := false
	for i := range res {
		if i >= len(replies) {
			res[i].Kind, res[i].Reply = KindDeferred, smtpreply.Local("no reply to RCPT")
			continue
		}
		rep := replies[i]
		closing = closing || rep.Code == 421
		switch {
		case rep.Code/100 == 2:
			accepted = append(accepted, i)
		case rep.Permanent():
			res[i].Kind, res[i].Reply, res[i].RemoteReply = KindBounced, rep, true
		default:
			res[i].Kind, res[i].Reply, res[i].RemoteReply = KindDeferred, rep, true
		}
	}
	if len(accepted) == 0 {
		// RFC 5321 §3.3: with no valid recipient there is no DATA (a
		// pipelined DATA the server took anyway gets an empty message);
		// the next transaction's RSET ends this one.
		reusable = !closing && s.EndData(ctx) == nil && !s.Closed()
		return res, nil
	}
	body, err := r.cfg.Spool.Body(env.ID)
	if err != nil {
		s.Quit(ctx)
		for _, i := range accepted {
			res[i].Kind, res[i].Reply = KindDeferred, smtpreply.Local("local: "+err.Error())
		}
		return res, nil
	}
	defer body.Close()
	dataRep, err := s.Data(ctx, body)
	var k Kind
	var reply smtpreply.Reply
	rep, remote := smtpclient.ReplyOf(err)
	switch {
	case err == nil:
		k, reply, remote = KindDelivered, dataRep, true
	case remote && rep.Permanent():
		k, reply = KindBounced, rep
	default:
		// 4xx, or the connection broke during or after the body: the
		// message may or may not have been taken, so it is retried
		// (RFC 5321 §6.1 prefers a duplicate to a loss).
		k, reply = KindDeferred, sessionReply(t, err)
	}
	for _, i := range accepted {
		res[i].Kind, res[i].Reply, res[i].RemoteReply = k, reply, remote
		if k == KindDelivered && hop.Verdict.WouldBounce {
			res[i].WouldBounce = true
		}
	}
	// A reply to "." (any code) leaves the session between transactions
	// (RFC 5321 §4.1.1.4).
	// A 421 closes the session (RFC 5321 §3.8).
	reusable = err == nil || (remote && rep.Code != 421 && !s.Closed())
	return res, nil
}

// sessionFailure is a temporary failure of a session at hop; remote when
// the host replied (a 421, a refusing banner) rather than the connection
// failing.
func sessionFailure(hop Hop, t target, err error) *failure {
	_, remote := smtpclient.ReplyOf(err)
	return &failure{hop: hop, reply: sessionReply(t, err), temporary: true, remote: remote}
}

// sessionReply says what went wrong with a session, in the words a DSN
// and an operator want: the remote's reply when there is one.
func sessionReply(t target, err error) smtpreply.Reply {
	if rep, ok := smtpclient.ReplyOf(err); ok {
		return rep
	}
	return smtpreply.Local(fmt.Sprintf("%s[%s]: %v", t.name, hostOf(t.addr), err))
}

func hostOf(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}
