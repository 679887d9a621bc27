package courier

import (
	"context"
	"fmt"
	"net"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// session finds a connection to t that may carry mail under req: an idle
// one whose judged Outcome passes req, or a new one from connect. The
// connection holds a slot in the cache until transact hands it back.
func (c *SMTP) session(ctx context.Context, t target, req policy.Requirement) (*conn, *failure) {
	cn, ok := c.cache.take(ctx, t, req)
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
		cn.hop.Verdict = policy.EvaluateHop(req, cn.hop.Facts, cn.hop.Outcome)
		cn.uses++
		return cn, nil
	}
	s, hop, f := c.connect(ctx, t, req)
	if f != nil {
		c.cache.release(t.addr)
		return nil, f
	}
	now := c.cfg.Now()
	return &conn{s: s, hop: hop, addr: t.addr, opened: now, since: now, uses: 1}, nil
}

func (c *SMTP) dial(ctx context.Context, t target) (*smtpclient.Session, error) {
	o := smtpclient.Options{
		HeloName:   c.cfg.Hostname,
		ServerName: t.name, // SNI: the MX name (RFC 7672 §8.1)
		RootCAs:    c.cfg.RootCAs,
		Timeouts:   c.cfg.Timeouts,
		Logger:     c.cfg.Log,
	}
	if t.facts.DANE == policy.DANEUsable {
		// RFC 7672 §3: the chain is judged by the usable TLSA records,
		// DANE-EE without name or date checks, DANE-TA for the MX name
		// or its CNAME-expanded form.
		o.TLSA, o.TLSAOwner, o.TLSANames = t.dane.Records, t.dane.Owner, t.dane.Names
	}
	return smtpclient.Dial(ctx, t.addr, o)
}

// tlsaStrings are t's TLSA records in presentation form.
func tlsaStrings(t target) []string {
	var out []string
	for _, r := range t.dane.Records {
		out = append(out, r.String())
	}
	return out
}

// connect opens a session to t that may carry mail under req: EHLO,
// STARTTLS whenever offered, and policy.EvaluateHop's verdict on the hop
// (the list, the hop's DANE state, MTA-STS, REQUIRETLS).
// When the verdict forbids sending, the session is closed with QUIT before
// any MAIL FROM and a policy failure is returned. This is the one place a
// new connection is judged: a per-hop check (of the certificate, of the
// host name) belongs here, before the verdict.
func (c *SMTP) connect(ctx context.Context, t target, req policy.Requirement) (*smtpclient.Session, Hop, *failure) {
	hop := Hop{MX: t.name, IP: hostOf(t.addr), Facts: t.facts, TLSA: tlsaStrings(t)}
	s, err := c.dial(ctx, t)
	if err != nil {
		return nil, hop, sessionFailure(hop, t, err)
	}
	hop.LocalIP = s.LocalIP()
	if err := s.Hello(ctx); err != nil {
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	out, err := s.StartTLS(ctx)
	out.RequireTLSOffered = s.OffersRequireTLS() // RFC 8689 §4.2.1 step 5
	hop.Outcome, hop.Verdict = out, policy.EvaluateHop(req, t.facts, out)
	if err != nil && out.TLS {
		// Encrypted, then the session broke (EHLO after TLS): nothing
		// to judge, try the next one.
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	if !hop.Verdict.MaySend {
		// No MAIL FROM on this connection.
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
	// security falls back to clear text rather than fail). MaySend was
	// judged on the failed TLS outcome, so an enforced list entry, a
	// REQUIRETLS message, and a hop with usable or unusable TLSA records
	// or an enforced MTA-STS policy never get here — the last two unless
	// the message's TLS-Required: No relaxed them (RFC 8689 §4.2.2 lets
	// it go in clear then). The verdict below is taken again on the
	// clear outcome all the same.
	s.Close()
	c.cfg.Log.Info("TLS failed; retrying in clear for an unenforced recipient", "mx", t.name, "addr", t.addr, "reason", out.Failure)
	s, err = c.dial(ctx, t)
	if err != nil {
		return nil, hop, sessionFailure(hop, t, err)
	}
	if err := s.Hello(ctx); err != nil {
		s.Close()
		return nil, hop, sessionFailure(hop, t, err)
	}
	hop.LocalIP = s.LocalIP()
	clear := policy.Outcome{Failure: out.Failure}
	hop.Outcome, hop.Verdict = clear, policy.EvaluateHop(req, t.facts, clear)
	if !hop.Verdict.MaySend { // cannot happen for a MaySend requirement; fail closed anyway
		s.Quit(ctx)
		return nil, hop, &failure{hop: hop, reply: hop.Verdict.Reply, policy: true}
	}
	return s, hop, nil
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
