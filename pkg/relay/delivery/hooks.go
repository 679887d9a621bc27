package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// This file holds what the relay's operations side needs from the queue
// runner: the per-message lock an attempt holds, a rescan when `smgctl
// queue` changed the spool, the timer for delayed DSNs and expiry, and a
// way for the queue commands to return a message to its sender.

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
	if err != nil || !env.Pending() {
		return
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
	for _, rc := range env.Recipients {
		if rc.State == spool.Pending && rc.Attempts > 0 {
			delayed = append(delayed, dsn.Recipient{
				Address: rc.Address, Action: dsn.Delayed, Diagnostic: rc.LastReply,
				LastAttempt: now, WillRetryUntil: expires,
			})
		}
	}
	if len(delayed) == 0 {
		return false // not tried yet: nothing to say about a delay
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

// ReturnToSender builds an RFC 3464 report on env for rcpts and spools it
// with the null sender to env's sender, as the runner does for its own
// bounces; the relay delivers it like any message (under the same policy).
// `smgctl queue bounce` uses it. The caller holds env's lock and marks the
// recipients final afterwards. A message with the null sender is never
// answered (RFC 5321 §4.5.5): the caller must not call this for one.
func ReturnToSender(sp *spool.Spool, hostname string, env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) (*spool.Envelope, error) {
	if env.From == "" {
		return nil, errors.New("delivery: a message with the null sender is never returned")
	}
	msg, err := dsn.Build(dsn.Report{
		Hostname: hostname, To: env.From, QueueID: env.ID, OriginalMessageID: env.MessageID,
		Arrival: env.Arrival, Recipients: rcpts, Original: headerBlock(sp, env.ID), Now: now,
	})
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
