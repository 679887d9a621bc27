// Package queuectl is the operator's view of the relay's queue, like
// Postfix's mailq, postqueue and postsuper: list and show queued messages,
// retry them now, delete them, or return them to their senders.
//
// It works on the spool directly, with or without a relay running on it.
// Every change is made under the message's spool lock (spool.Lock), which
// the relay's queue runner also holds for the whole of a delivery attempt,
// so a command either waits for an attempt in progress to end or the
// attempt sees the command's result; a deleted message is never written
// back or delivered. After a change the running relay is woken through the
// spool's trigger FIFO (see Wake) so a retry goes out at once.
package queuectl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/smgctl/smgctl/pkg/policy/store"
	"github.com/smgctl/smgctl/pkg/relay/delivery"
	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Queue is an open spool seen by an operator.
type Queue struct {
	sp  *spool.Spool
	log *slog.Logger
	// Hostname names the relay in DSNs from Bounce (Reporting-MTA and
	// MAILER-DAEMON@); it should be the relay's own.
	Hostname string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Actor is who the audit log names for Delete and Bounce; Open sets
	// it to store.DefaultActor (SMGCTL_ACTOR, else the OS user).
	Actor string
}

// Open opens the spool at dir. It must exist: an operator's typo must not
// create an empty spool and report an empty queue.
func Open(dir string, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("queue: spool %s: %w", dir, err)
	}
	sp, err := spool.Open(dir, log)
	if err != nil {
		return nil, err
	}
	return &Queue{sp: sp, log: log, Hostname: "localhost", Now: time.Now, Actor: store.DefaultActor()}, nil
}

// Close releases the spool.
func (q *Queue) Close() error { return q.sp.Close() }

// Dir is the spool directory.
func (q *Queue) Dir() string { return q.sp.Dir() }

// Message is one queued message as `smgctl queue` shows it; its JSON form
// is the stable schema of `--output json` (docs/schemas/queue-list.schema.json).
type Message struct {
	ID            string    `json:"id"`
	Arrival       time.Time `json:"arrival"`
	Size          int64     `json:"size"`
	From          string    `json:"from"` // "" = the null sender (a DSN)
	MessageID     string    `json:"message_id,omitempty"`
	DSNOf         string    `json:"dsn_of,omitempty"`
	DelayNotified bool      `json:"delay_notified"`
	// Held: on hold (queue hold); not delivered until released.
	Held       bool        `json:"held"`
	Recipients []Recipient `json:"recipients"`
	// Error is set, and nothing else but ID, for a message whose envelope
	// cannot be read: it is listed, not hidden, and not acted on by --all.
	Error string `json:"error,omitempty"`
}

// Recipient is a recipient's delivery state.
type Recipient struct {
	Address     string     `json:"address"`
	State       string     `json:"state"` // pending, delivered, bounced, expired
	Attempts    int        `json:"attempts"`
	LastReply   string     `json:"last_reply,omitempty"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"` // pending only; absent: due now
}

func fromEnvelope(env *spool.Envelope) Message {
	m := Message{
		ID: env.ID, Arrival: env.Arrival, Size: env.Size, From: env.From, MessageID: env.MessageID,
		DSNOf: env.DSNOf, DelayNotified: env.DelayNotified, Held: env.Held, Recipients: make([]Recipient, 0, len(env.Recipients)),
	}
	for _, rc := range env.Recipients {
		r := Recipient{Address: rc.Address, State: rc.State.String(), Attempts: rc.Attempts, LastReply: rc.LastReply}
		if rc.State == spool.Pending && !rc.NextAttempt.IsZero() {
			t := rc.NextAttempt
			r.NextAttempt = &t
		}
		m.Recipients = append(m.Recipients, r)
	}
	return m
}

// List returns every queued message, oldest first. Messages that vanish
// while it reads (delivered meanwhile) are left out; one whose envelope
// cannot be read is listed with only its ID and Error, so that one bad
// file neither hides the rest nor goes unnoticed. The error is for the
// spool as a whole.
func (q *Queue) List() ([]Message, error) {
	ids, err := q.sp.List()
	if err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(ids))
	for _, id := range ids {
		env, err := q.sp.Envelope(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			msgs = append(msgs, Message{ID: id, Recipients: []Recipient{}, Error: err.Error()})
			continue
		}
		msgs = append(msgs, fromEnvelope(env))
	}
	return msgs, nil
}

// Damage lists the journal segments the relay kept in corrupt/ because
// they held less than it had acknowledged: mail may have been lost. They
// are reported until the operator removes them.
func (q *Queue) Damage() ([]spool.JournalDamage, error) { return q.sp.Damage() }

// ErrNotQueued is returned for an ID that is not (or no longer) in the
// queue.
var ErrNotQueued = errors.New("not in the queue")

// Show returns one message and, when body is not nil, copies its content
// (as stored, with the relay's Received: header) to body.
func (q *Queue) Show(id string, body io.Writer) (Message, error) {
	if !spool.ValidID(id) {
		return Message{}, fmt.Errorf("%q: not a queue ID", id)
	}
	env, err := q.sp.Envelope(id)
	if errors.Is(err, fs.ErrNotExist) {
		return Message{}, fmt.Errorf("%s: %w", id, ErrNotQueued)
	}
	if err != nil {
		return Message{}, err
	}
	if body != nil {
		rc, err := q.sp.Body(id)
		if err != nil {
			return Message{}, err
		}
		defer rc.Close()
		if _, err := io.Copy(body, rc); err != nil {
			return Message{}, err
		}
	}
	return fromEnvelope(env), nil
}

// Result is what a change did to one message.
type Result struct {
	ID string `json:"id"`
	// Done is true when the change was made.
	Done bool `json:"done"`
	// Recipients are the pending recipients it applied to.
	Recipients []string `json:"recipients,omitempty"`
	// DSN is the queue ID of the DSN queued by Bounce.
	DSN   string `json:"dsn,omitempty"`
	Error string `json:"error,omitempty"`
	// BadInput: the ID is malformed or not in the queue — the caller's
	// mistake (exit 2), not a failed change (exit 1).
	BadInput bool `json:"-"`
}

// Retry makes every pending recipient of ids due now (postqueue -i, or
// postsuper -r for a deferred message), then wakes the relay.
func (q *Queue) Retry(ctx context.Context, ids []string) []Result {
	return q.each(ctx, ids, func(env *spool.Envelope, res *Result) error {
		makeDue(env, res)
		return q.sp.Update(env)
	})
}

// makeDue makes every pending recipient due now and names it in res.
func makeDue(env *spool.Envelope, res *Result) {
	for i := range env.Recipients {
		rc := &env.Recipients[i]
		if rc.State == spool.Pending {
			rc.NextAttempt = time.Time{}
			res.Recipients = append(res.Recipients, rc.Address)
		}
	}
}

// Hold keeps ids from being delivered until they are released (postsuper
// -h): no attempt, no delayed DSN, no expiry. The flag is in the envelope,
// so it survives restarts. A delivery in progress is waited for.
func (q *Queue) Hold(ctx context.Context, ids []string) []Result {
	return q.each(ctx, ids, func(env *spool.Envelope, res *Result) error {
		env.Held = true
		for _, rc := range env.Recipients {
			if rc.State == spool.Pending {
				res.Recipients = append(res.Recipients, rc.Address)
			}
		}
		return q.sp.Update(env)
	})
}

// Release undoes Hold (postsuper -H) and makes the pending recipients due
// now, as Postfix moves a released message to the incoming queue.
func (q *Queue) Release(ctx context.Context, ids []string) []Result {
	return q.each(ctx, ids, func(env *spool.Envelope, res *Result) error {
		env.Held = false
		makeDue(env, res)
		return q.sp.Update(env)
	})
}

// Delete removes ids from the queue without notice to anyone (postsuper
// -d). A delivery in progress is waited for; what it delivered meanwhile
// has gone, the rest never will. The audit log learns of it through an
// admin-action record (admin.go) written before the message goes.
func (q *Queue) Delete(ctx context.Context, ids []string) []Result {
	return q.each(ctx, ids, func(env *spool.Envelope, res *Result) error {
		a := q.action(ActionDeleted, env)
		for _, rc := range env.Recipients {
			if rc.State == spool.Pending {
				res.Recipients = append(res.Recipients, rc.Address)
				a.Recipients = append(a.Recipients, AdminRecipient{Address: rc.Address})
			}
		}
		return q.removeRecorded(env.ID, a)
	})
}

func (q *Queue) action(action string, env *spool.Envelope) AdminAction {
	return AdminAction{
		Time: q.now().UTC(), Actor: q.Actor, Action: action,
		QueueID: env.ID, MessageID: env.MessageID, Sender: env.From,
	}
}

// removeRecorded writes the admin-action record, then removes the
// message: a crash in between leaves a record whose message is still
// queued, which the relay sets aside unaudited. If the removal fails the
// record is taken back.
func (q *Queue) removeRecorded(id string, a AdminAction) error {
	if a.Actor == "" {
		a.Actor = store.DefaultActor()
	}
	path, err := WriteAdminAction(q.sp.Dir(), a)
	if err != nil {
		return err
	}
	if err := q.sp.Remove(id); err != nil {
		if rerr := os.Remove(path); rerr != nil {
			q.log.Error("admin record of a failed removal left behind; the relay sets it aside", "path", path, "err", rerr)
		}
		return err
	}
	return nil
}

// Bounce returns ids to their senders now: one DSN per message listing
// every pending recipient with smtpreply.AdminReturn (Status 5.0.0), then the
// message leaves the queue. A message with the null sender (itself a DSN)
// is removed without a report (RFC 5321 §4.5.5: never bounce a bounce).
func (q *Queue) Bounce(ctx context.Context, ids []string) []Result {
	return q.each(ctx, ids, func(env *spool.Envelope, res *Result) error {
		now := q.now()
		a := q.action(ActionReturned, env)
		var rcpts, report []dsn.Recipient
		for i := range env.Recipients {
			rc := &env.Recipients[i]
			if rc.State != spool.Pending {
				continue
			}
			res.Recipients = append(res.Recipients, rc.Address)
			d := dsn.Recipient{
				Address: rc.Address, ORcpt: rc.ORcpt, Action: dsn.Failed, Diagnostic: smtpreply.AdminReturn, LastAttempt: now,
			}
			rcpts = append(rcpts, d)
			// RFC 3461 §4.1: only those whose NOTIFY asks for failures.
			if dsn.Wants(rc.Notify, dsn.Failed) {
				report = append(report, d)
			}
		}
		if len(report) > 0 && env.From != "" {
			d, err := delivery.ReturnToSender(q.sp, q.Hostname, env, report, now)
			if err != nil {
				return err
			}
			res.DSN = d.ID
		}
		for _, r := range rcpts {
			a.Recipients = append(a.Recipients, AdminRecipient{Address: r.Address, DSN: res.DSN, Diagnostic: smtpreply.AdminReturn.String()})
		}
		// The DSN is durable before the message goes: a crash in between
		// can send the report twice, never lose it.
		return q.removeRecorded(env.ID, a)
	})
}

func (q *Queue) now() time.Time {
	if q.Now == nil {
		return time.Now()
	}
	return q.Now()
}

// each applies change to each message under its lock, waiting for the
// lock until ctx ends, and wakes the relay once if anything changed.
func (q *Queue) each(ctx context.Context, ids []string, change func(*spool.Envelope, *Result) error) []Result {
	results := make([]Result, 0, len(ids))
	changed := false
	for _, id := range ids {
		res := Result{ID: id}
		if err := q.apply(ctx, id, &res, change); err != nil {
			res.Error = err.Error()
			res.BadInput = errors.Is(err, ErrNotQueued) || !spool.ValidID(id)
		} else {
			res.Done = true
			changed = true
		}
		results = append(results, res)
	}
	if changed {
		if _, err := Wake(q.sp.Dir()); err != nil {
			q.log.Warn("the relay was not woken; it picks the change up at its next scan", "err", err)
		}
	}
	return results
}

func (q *Queue) apply(ctx context.Context, id string, res *Result, change func(*spool.Envelope, *Result) error) error {
	if !spool.ValidID(id) {
		return fmt.Errorf("%q: not a queue ID", id)
	}
	unlock, err := q.lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	env, err := q.sp.Envelope(id)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotQueued
	}
	if err != nil {
		return err
	}
	return change(env, res)
}

// lock waits for the message's lock: the relay holds it while it delivers
// the message, which takes at most its SMTP timeouts.
func (q *Queue) lock(ctx context.Context, id string) (func(), error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		unlock, err := q.sp.TryLock(id)
		switch {
		case err == nil:
			return unlock, nil
		case errors.Is(err, fs.ErrNotExist):
			return nil, ErrNotQueued
		case !errors.Is(err, spool.ErrLocked):
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("being delivered right now; try again (%w)", ctx.Err())
		case <-tick.C:
		}
	}
}
