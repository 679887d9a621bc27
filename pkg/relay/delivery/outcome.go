package delivery

// This file is the one place an attempt's outcome becomes state:
// (*message).record writes the courier's Results to the audit log, then to
// the envelope; (*message).finish reports the returned recipients to the
// sender in one DSN per attempt, spooled like any message (queueDSN), and
// marks them final. Nothing else in the runner writes an audit record; the
// delay warning (hooks.go) queues its DSN through queueDSN too.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// message collects the outcomes of one message's attempt. Deliveries are
// written to the envelope as soon as their group finishes, so a crash
// cannot make them go out twice; returned recipients stay pending until
// their DSN is safely queued, so a crash cannot lose the DSN.
type message struct {
	r   *Runner
	mu  sync.Mutex
	env *spool.Envelope
	// returned are the recipients returned in this attempt, to mark
	// final and, where their NOTIFY wants it, to report in its DSN.
	returned []returned
	// unstored: the final state is only in memory; the message must be
	// removed (or, failing that, its envelope written).
	unstored bool
	// unaudited: the audit records of an attempt were not kept.
	unaudited bool
}

func (m *message) rcpt(addr string) *spool.Recipient {
	for i := range m.env.Recipients {
		if m.env.Recipients[i].Address == addr && m.env.Recipients[i].State == spool.Pending {
			return &m.env.Recipients[i]
		}
	}
	return nil
}

// returned is a recipient returned to the sender in this attempt.
type returned struct {
	dsn.Recipient
	report bool // its NOTIFY asks for a failure report (RFC 3461 §4.1)
}

// record applies a group's results to the envelope, stores it and writes
// the audit lines.
func (m *message) record(ctx context.Context, g courier.Group, sts stsInfo, res []courier.Result) {
	r := m.r
	now := r.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	env := m.env
	expires := env.Arrival.Add(r.cfg.QueueLifetime)
	recs := make([]audit.Record, 0, len(res))
	var relayed []dsn.Recipient
	for _, x := range res {
		rc := m.rcpt(x.Rcpt)
		if rc == nil {
			continue
		}
		if ctx.Err() != nil && x.Kind == courier.Deferred {
			continue // interrupted by shutdown, not a real attempt: stays due
		}
		rc.Attempts++
		rc.LastReply = x.Reply.String() // the envelope keeps the text
		event := audit.Deferred
		switch x.Kind {
		case courier.Delivered:
			rc.State = spool.Delivered
			event = audit.Delivered
			switch {
			case x.HandedOff:
				// To the entry's route, not the domain: not counted as
				// delivered. The gateway is not the final destination,
				// so NOTIFY=SUCCESS gets "relayed" at most (below).
				event = audit.HandedOff
			case x.WouldBounce:
				event = audit.WouldBounce
				r.stats.wouldBounce.Add(1)
				r.stats.delivered.Add(1)
			default:
				r.stats.delivered.Add(1)
			}
			// RFC 3461 §5.2.2: past a hop without DSN, NOTIFY=SUCCESS
			// is answered with "relayed", as nothing further will come.
			if !x.DSNOffered && dsn.Wants(rc.Notify, dsn.Relayed) {
				relayed = append(relayed, dsn.Recipient{
					Address: rc.Address, ORcpt: rc.ORcpt, Action: dsn.Relayed,
					RemoteMTA: x.Hop.MX, Diagnostic: x.Reply, LastAttempt: now,
				})
			}
		case courier.Bounced:
			event = audit.Bounced
			m.returnRcpt(rc, x, g, "", now)
		case courier.Deferred:
			if !now.Before(expires) {
				// RFC 3463 4.4.7: the queue lifetime ran out. A 5xx
				// text here is the relay's own policy verdict (a
				// remote 5xx bounces at once), which the sender is
				// told as it is; anything else is 4.4.7.
				status := smtpreply.StatusExpired
				if x.Reply.Permanent() {
					status = ""
				}
				event = audit.Bounced
				m.returnRcpt(rc, x, g, status, now)
				break
			}
			rc.NextAttempt = now.Add(r.cfg.backoff(rc.Attempts))
			r.stats.deferred.Add(1)
		}
		// The hops tried before the one that decided, each once: RFC
		// 8460 §4 reports every session, and an auditor asks why the
		// first MX was passed over.
		for _, fh := range x.FailedHops {
			recs = append(recs, hopFailedRecord(env, g.Req, sts, x.Rcpt, fh, rc.Attempts, now))
		}
		recs = append(recs, auditRecord(env, g.Req, sts, x, event, rc.Attempts, now))
	}
	// The records go first: once the envelope says delivered, nothing
	// would try again, so a crash in between must cost at most a second
	// delivery (recorded), never a delivery without its record.
	if r.cfg.Audit != nil {
		if err := r.cfg.Audit.Write(recs...); err != nil {
			r.cfg.Log.Error("writing the audit log; the message stays queued", "id", env.ID, "err", err)
			m.unaudited = true
		}
	}
	// The "relayed" report is spooled before the envelope says
	// delivered: a crash in between costs a second delivery and report,
	// never the report. A failure to spool it loses only the report.
	if len(relayed) > 0 && env.From != "" {
		if err := r.queueDSN(env, relayed, now); err != nil {
			r.cfg.Log.Error("queueing a relayed DSN; the sender is not told", "id", env.ID, "err", err)
		}
	}
	if !env.Pending() {
		// Every recipient is final and process removes the message next:
		// the removal, durable once its directory fsync returns, is the
		// record that nothing is left to send. Rewriting the envelope
		// first would cost a file and a directory fsync per message and
		// protect nothing; if the removal fails, the envelope is written
		// then (remove).
		m.unstored = true
	} else if err := r.cfg.Spool.Update(env); err != nil {
		r.storeFailed(env.ID, err)
	} else {
		r.storeWorked(env.ID)
	}
	for _, x := range res {
		r.cfg.Log.Info("recipient", "id", env.ID, "rcpt", x.Rcpt, "outcome", x.Kind.String(), "mx", x.Hop.MX,
			"ip", x.Hop.IP, "tls", policy.VersionName(x.Hop.Outcome.Version), "bits", x.Hop.Outcome.Bits(),
			"reply", x.Reply.String(), "diagnostic", x.Diagnostic.String(), "entry", g.Req.Target, "line", g.Req.Line)
	}
}

// returnRcpt notes a recipient returned in this attempt. It stays pending
// until its DSN is queued (finish).
func (m *message) returnRcpt(rc *spool.Recipient, x courier.Result, g courier.Group, status string, now time.Time) {
	m.r.stats.bounced.Add(1)
	d := dsn.Recipient{
		Address:     rc.Address,
		ORcpt:       rc.ORcpt,
		Action:      dsn.Failed,
		Status:      status,
		Diagnostic:  x.Reply,
		LastAttempt: now,
	}
	if x.RemoteReply {
		d.RemoteMTA = x.Hop.MX
	}
	if x.Refused {
		d.Policy = &dsn.PolicyRefusal{File: m.r.cfg.PolicyFile, Entry: g.Req.Target, Line: g.Req.Line, Host: x.Hop.MX}
	}
	m.returned = append(m.returned, returned{Recipient: d, report: dsn.Wants(rc.Notify, dsn.Failed)})
	rc.NextAttempt = time.Time{}
}

// finish queues the DSNs of this attempt and then marks the returned
// recipients final.
func (m *message) finish() {
	r := m.r
	env := m.env
	now := r.cfg.Now()
	changed := false
	if len(m.returned) > 0 {
		var report []dsn.Recipient
		for _, f := range m.returned {
			if f.report {
				report = append(report, f.Recipient)
			}
		}
		switch {
		case env.From == "":
			// RFC 5321 §4.5.5 / RFC 3464: a DSN is never answered by
			// another; its failure is in the log and the audit log.
			r.cfg.Log.Warn("undeliverable message with the null sender dropped", "id", env.ID, "dsn_of", env.DSNOf)
		case len(report) == 0:
			// RFC 3461 §4.1: NOTIFY=NEVER, or a list without FAILURE.
			r.cfg.Log.Info("no DSN: the sender's NOTIFY excludes failures", "id", env.ID, "recipients", len(m.returned))
		default:
			if err := r.queueDSN(env, report, now); err != nil {
				r.cfg.Log.Error("queueing a DSN; the recipients stay queued", "id", env.ID, "err", err)
				for _, f := range m.returned {
					if rc := m.rcpt(f.Address); rc != nil {
						rc.NextAttempt = now.Add(r.cfg.backoff(1))
					}
				}
				m.returned = nil
			}
		}
		for _, f := range m.returned {
			if rc := m.rcpt(f.Address); rc != nil {
				rc.State = spool.Bounced
				if f.Status == smtpreply.StatusExpired {
					rc.State = spool.Expired
				}
			}
		}
		changed = true
	}
	if r.warnDelayed(env, now) {
		changed = true
	}
	if changed {
		if err := r.cfg.Spool.Update(env); err != nil {
			r.storeFailed(env.ID, err)
		} else {
			r.storeWorked(env.ID)
		}
	}
}

// maxHeaders bounds the original header block quoted in a DSN.
const maxHeaders = 64 << 10

// queueDSN builds a report on env for rcpts and spools it with the null
// sender, to the original sender.
func (r *Runner) queueDSN(env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) error {
	d, err := returnToSender(r.cfg.Spool, r.cfg.Hostname, r.cfg.MaxReturn, env, rcpts, now)
	if err != nil {
		return err
	}
	r.stats.dsns.Add(1)
	r.cfg.Log.Info("DSN queued", "id", d.ID, "dsn_of", env.ID, "to", env.From, "recipients", len(rcpts), "action", string(rcpts[0].Action))
	r.Notify(d.ID)
	return nil
}

func auditRecord(env *spool.Envelope, req policy.Requirement, sts stsInfo, x courier.Result, event audit.Event, attempt int, now time.Time) audit.Record {
	rec := audit.Record{
		Time: now, Event: event, QueueID: env.ID, MessageID: env.MessageID,
		Sender: env.From, Recipient: x.Rcpt,
		PolicyTarget: req.Target, PolicyLine: req.Line,
		MX: x.Hop.MX, IP: x.Hop.IP,
		Reply: x.Reply.String(), Diagnostic: x.Diagnostic.String(), Attempt: attempt,
		Route: x.Route,
	}
	if req.Target != "" {
		rec.Requirement = &audit.Requirement{
			Bits: req.Bits, MinTLS: req.Options.Get("min-tls"), Verify: req.Verify.String(),
			Mode: req.Mode.String(), OnFail: req.Get("on-fail"), // route:HOST[:PORT] with its host
		}
	}
	if o := x.Hop.Outcome; o.TLS {
		rec.TLS = true
		rec.TLSVersion = policy.VersionName(o.Version)
		rec.Cipher = policy.SuiteName(o.CipherSuite)
		rec.Bits = o.Bits()
		rec.CertVerified = o.Verified
	}
	if event == audit.Bounced && x.Diagnostic.IsZero() {
		rec.Diagnostic = x.Reply.String()
	}
	auditPublished(&rec, req, sts, x.Hop) // auditsources.go
	return rec
}

// hopFailedRecord is the audit record of one hop of an attempt that did
// not carry rcpt's mail (audit.HopFailed): the hop's connection, TLS and
// published-policy fields as auditRecord fills them, Reply why it was
// not used, Diagnostic the verdict when the requirement refused it.
func hopFailedRecord(env *spool.Envelope, req policy.Requirement, sts stsInfo, rcpt string, fh courier.FailedHop, attempt int, now time.Time) audit.Record {
	x := courier.Result{Rcpt: rcpt, Reply: fh.Reply, Hop: fh.Hop}
	if fh.Policy {
		x.Diagnostic = fh.Reply
	}
	return auditRecord(env, req, sts, x, audit.HopFailed, attempt, now)
}

// ReturnToSender builds an RFC 3464 report on env for rcpts and spools it
// with the null sender to env's sender, as the runner does for its own
// bounces; the relay delivers it like any message (under the same policy).
// `smgctl queue bounce` uses it. The caller holds env's lock and marks the
// recipients final afterwards. A message with the null sender is never
// answered (RFC 5321 §4.5.5): the caller must not call this for one.
func ReturnToSender(sp *spool.Spool, hostname string, env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) (*spool.Envelope, error) {
	return returnToSender(sp, hostname, DefaultMaxReturn, env, rcpts, now)
}

func returnToSender(sp *spool.Spool, hostname string, maxReturn int64, env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) (*spool.Envelope, error) {
	if env.From == "" {
		return nil, errors.New("delivery: a message with the null sender is never returned")
	}
	rep := dsn.Report{
		Hostname: hostname, To: env.From, QueueID: env.ID, OriginalMessageID: env.MessageID,
		EnvID: env.DSNEnvID, Arrival: env.Arrival, Recipients: rcpts, Now: now,
		Global: env.SMTPUTF8,
	}
	// RFC 3461 §4.3: RET=FULL returns the message, up to maxReturn. RFC
	// 8689 §5: a REQUIRETLS message is never returned in full; its report
	// is redacted (nothing of the message, headers included), so that it
	// need not travel with REQUIRETLS itself.
	rep.Redacted = env.RequireTLS
	full := strings.EqualFold(env.DSNRet, "FULL") && !env.RequireTLS
	switch {
	case full && env.Size > maxReturn:
		rep.TooLarge = maxReturn
	case full:
		// Unreadable (or larger than stored): the headers, below.
		if msg, err := wholeBody(sp, env.ID, maxReturn); err == nil {
			rep.Return, rep.Original = dsn.ReturnFull, msg
		}
	}
	if rep.Original == nil && !rep.Redacted {
		rep.Original = headerBlock(sp, env.ID)
	}
	msg, err := dsn.Build(rep)
	if err != nil {
		return nil, err
	}
	d := &spool.Envelope{
		Recipients: []spool.Recipient{{Address: env.From}},
		MessageID:  "<" + msg.MessageID + ">",
		SMTPUTF8:   msg.UTF8,
		Body8Bit:   msg.EightBit,
		DSNOf:      env.ID,
	}
	if err := sp.Put(d, bytes.NewReader(msg.Bytes)); err != nil {
		return nil, err
	}
	return d, nil
}

// wholeBody is the stored message, for RET=FULL; an error when it cannot
// be read or is larger than limit (stored sizes can be wrong).
func wholeBody(sp *spool.Spool, id string, limit int64) ([]byte, error) {
	body, err := sp.Body(id)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("message larger than %d octets", limit)
	}
	return b, nil
}

// headerBlock is the stored message's header block, for a DSN's
// text/rfc822-headers part.
func headerBlock(sp *spool.Spool, id string) []byte {
	body, err := sp.Body(id)
	if err != nil {
		return nil
	}
	defer body.Close()
	br := bufio.NewReader(io.LimitReader(body, maxHeaders))
	var out bytes.Buffer
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimRight(line, "\r\n")) == 0 && (err == nil || len(line) > 0) {
			break
		}
		out.Write(line)
		if err != nil {
			break
		}
	}
	return out.Bytes()
}
