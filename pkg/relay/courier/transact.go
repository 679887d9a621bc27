package courier

import (
	"context"
	"errors"

	"github.com/smgctl/smgctl/pkg/smtpclient"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// transact hands the message to an established session. A non-nil
// failure means nothing was handed over and the next target may be tried;
// otherwise every recipient has its outcome.
//
// The connection goes back to the cache when the session is in a known
// state after the transaction (a reply to the final ".", or every RCPT
// refused); otherwise it is closed.
func (c *SMTP) transact(ctx context.Context, cn *conn, m *Message, g Group) (_ []Result, _ *failure) {
	s, hop := cn.s, cn.hop
	reusable := false
	defer func() {
		if reusable && ctx.Err() == nil {
			c.cache.put(ctx, cn)
			return
		}
		c.cache.discard(ctx, cn, false)
	}()
	t := target{name: hop.MX, addr: s.Addr()}
	// RFC 3461 §5.2.2: NOTIFY goes on only to a hop that offers DSN;
	// otherwise a NOTIFY=SUCCESS recipient gets our "relayed" report.
	offersDSN := s.Supports("DSN")
	res := make([]Result, len(g.Rcpts))
	for i, rc := range g.Rcpts {
		res[i] = Result{Rcpt: rc.Stored, Hop: hop, DSNOffered: offersDSN}
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
	opts := m.Options
	opts.RequireTLS = m.RequireTLS // passed on (RFC 8689 §4.2.1 step 5)
	rcpts := make([]smtpclient.Recipient, len(g.Rcpts))
	for i, rc := range g.Rcpts {
		rcpts[i] = rc.RCPT
	}
	mailRep, replies, err := s.EnvelopeTo(ctx, m.From, opts, rcpts)
	if e := (*smtpclient.Error)(nil); errors.As(err, &e) && e.Step == "RSET" {
		f := sessionFailure(hop, t, err)
		f.stale = true
		return nil, f
	}
	if err != nil {
		if errors.Is(err, smtpclient.ErrSMTPUTF8) {
			return setAll(Bounced, smtpreply.NeedsSMTPUTF8(smtpclient.ErrSMTPUTF8.Error()), false), nil
		}
		if rep, ok := smtpclient.ReplyOf(err); ok && rep.Code != 421 {
			s.Quit(ctx)
			// RFC 5321 §4.2.5 / §6.1: a reply to MAIL decides for the
			// whole transaction: 5xx returns, 4xx retries.
			if rep.Permanent() {
				return setAll(Bounced, rep, true), nil
			}
			return setAll(Deferred, rep, true), nil
		}
		if !smtpclient.IsTemporary(err) {
			f := sessionFailure(hop, t, err)
			return setAll(Bounced, f.reply, f.remote), nil
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
			res[i].Kind, res[i].Reply = Deferred, smtpreply.Local("no reply to RCPT")
			continue
		}
		rep := replies[i]
		closing = closing || rep.Code == 421
		switch {
		case rep.Code/100 == 2:
			accepted = append(accepted, i)
		case rep.Permanent():
			res[i].Kind, res[i].Reply, res[i].RemoteReply = Bounced, rep, true
		default:
			res[i].Kind, res[i].Reply, res[i].RemoteReply = Deferred, rep, true
		}
	}
	if len(accepted) == 0 {
		// RFC 5321 §3.3: with no valid recipient there is no DATA (a
		// pipelined DATA the server took anyway gets an empty message);
		// the next transaction's RSET ends this one.
		reusable = !closing && s.EndData(ctx) == nil && !s.Closed()
		return res, nil
	}
	body, err := m.Body()
	if err != nil {
		s.Quit(ctx)
		for _, i := range accepted {
			res[i].Kind, res[i].Reply = Deferred, smtpreply.Local("local: "+err.Error())
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
		k, reply, remote = Delivered, dataRep, true
	case remote && rep.Permanent():
		k, reply = Bounced, rep
	default:
		// 4xx, or the connection broke during or after the body: the
		// message may or may not have been taken, so it is retried
		// (RFC 5321 §6.1 prefers a duplicate to a loss).
		k, reply = Deferred, sessionReply(t, err)
	}
	for _, i := range accepted {
		res[i].Kind, res[i].Reply, res[i].RemoteReply = k, reply, remote
		if k == Delivered && hop.Verdict.WouldBounce {
			res[i].WouldBounce = true
		}
	}
	// A reply to "." (any code) leaves the session between transactions
	// (RFC 5321 §4.1.1.4).
	// A 421 closes the session (RFC 5321 §3.8).
	reusable = err == nil || (remote && rep.Code != 421 && !s.Closed())
	return res, nil
}
