package delivery

import (
	"errors"
	"io/fs"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// This file holds what the relay's operations side needs from the queue
// runner: the per-message lock an attempt holds, a rescan when `smgctl
// queue` changed the spool, and the timer for delayed DSNs and expiry.
// (The queue commands return a message to its sender with
// ReturnToSender, in outcome.go.)

// lockForAttempt takes the message's spool lock for the whole attempt, so
// an operator's `smgctl queue delete|bounce|retry` never interleaves with
// a delivery: either it waits for the attempt to end, or the attempt sees
// its result (a deleted message is gone; Update refuses to resurrect it).
func (r *Runner) lockForAttempt(id string) (func(), bool) {
	unlock, err := r.cfg.Spool.Lock(id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.cfg.Log.Error("locking a message", "id", id, "err", err)
		}
		return nil, false
	}
	return unlock, true
}

// Rescan reads the spool again now and reschedules every message from its
// envelope: the queue commands change envelopes (retry sets the next
// attempt to now) and call it through the relay's wake-up trigger.
func (r *Runner) Rescan() {
	r.scan()
	r.poke()
}

// TimerInterval is how often CheckTimers should run: once a minute, or
// more often when the delay warning or the queue lifetime is shorter than
// a few minutes (labs and tests), so a delayed DSN is at most that late.
func (r *Runner) TimerInterval() time.Duration {
	d := time.Minute
	if r.cfg.DelayWarning > 0 {
		d = min(d, r.cfg.DelayWarning/4)
	}
	d = min(d, r.cfg.QueueLifetime/4)
	return max(d, 50*time.Millisecond)
}

// CheckTimers does, for every queued message not being delivered right
// now, what is due by the clock rather than by an attempt:
//
//   - the "delayed" DSN (RFC 3464 Action: delayed) once the message has
//     waited DelayWarning, even if its next attempt is hours away — the
//     backoff must not decide when the sender hears about a delay;
//   - a last attempt at the end of the queue lifetime, after which the
//     attempt's record() returns what is still undelivered (4.4.7), instead
//     of waiting for the next backoff step.
//
// A message whose lock is taken is in an attempt, whose finish() does the
// same checks.
func (r *Runner) CheckTimers() {
	ids, err := r.cfg.Spool.List()
	if err != nil {
		r.cfg.Log.Error("reading the spool", "err", err)
		return
	}
	for _, id := range ids {
		r.checkMessageTimers(id)
	}
}

func (r *Runner) checkMessageTimers(id string) {
	unlock, err := r.cfg.Spool.TryLock(id)
	if err != nil {
		return // being delivered, or gone
	}
	defer unlock()
	env, err := r.cfg.Spool.Envelope(id)
	if err != nil || !env.Pending() || env.Held {
		return // a held message neither expires nor warns: the administrator decides
	}
	now := r.cfg.Now()
	expires := env.Arrival.Add(r.cfg.QueueLifetime)
	if !now.Before(expires) {
		r.forceNow(id)
		return
	}
	if r.warnDelayed(env, now) {
		if err := r.cfg.Spool.Update(env); err != nil {
			r.storeFailed(id, err)
		} else {
			r.storeWorked(id)
		}
	}
}

// warnDelayed sends the "delayed" DSN (RFC 3464 Action: delayed) once a
// message has waited DelayWarning with recipients still pending, so no
// sender waits days in silence. It reports whether env changed; the
// caller stores it.
func (r *Runner) warnDelayed(env *spool.Envelope, now time.Time) bool {
	expires := env.Arrival.Add(r.cfg.QueueLifetime)
	if r.cfg.DelayWarning <= 0 || env.DelayNotified || env.From == "" || !env.Pending() ||
		now.Sub(env.Arrival) < r.cfg.DelayWarning || !expires.After(now) {
		return false
	}
	var delayed []dsn.Recipient
	var pol *policy.Policy
	for _, rc := range env.Recipients {
		// RFC 3461 §4.1: only for recipients whose NOTIFY asks for
		// delays (the default does; NEVER or a list without DELAY not).
		if rc.State != spool.Pending || rc.Attempts == 0 || !dsn.Wants(rc.Notify, dsn.Delayed) {
			continue
		}
		// The envelope on disk keeps the last reply as text (older
		// versions' too): read back once, here.
		last := smtpreply.FromLine(rc.LastReply)
		d := dsn.Recipient{
			Address: rc.Address, ORcpt: rc.ORcpt, Action: dsn.Delayed, Diagnostic: last,
			LastAttempt: now, WillRetryUntil: expires,
		}
		// A pending recipient whose last reply is a 5xx was held back
		// by the gateway's own policy (on-fail=defer): a remote 5xx
		// returns it at once. Name the entry in force.
		if last.Permanent() {
			if m, err := storedMailbox(rc.Address); err == nil {
				if pol == nil {
					pol = r.cfg.Policy()
				}
				req := pol.LookupMailbox(m).Requirement()
				d.Policy = &dsn.PolicyRefusal{File: r.cfg.PolicyFile, Entry: req.Target, Line: req.Line}
			}
		}
		delayed = append(delayed, d)
	}
	if len(delayed) == 0 {
		return false // not tried yet, or nobody asked: nothing to say
	}
	if err := r.queueDSN(env, delayed, now); err != nil {
		r.cfg.Log.Error("queueing a delay DSN", "id", env.ID, "err", err)
		return false
	}
	env.DelayNotified = true
	return true
}

// forceNow makes the message due now with every pending recipient tried,
// as a queue run does.
func (r *Runner) forceNow(id string) {
	r.mu.Lock()
	if r.active[id] {
		r.rerun[id] = true
	} else {
		r.due[id] = time.Time{}
		r.force[id] = true
	}
	r.mu.Unlock()
	r.poke()
}
