package relay

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/queuectl"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// operate runs the relay's clock- and operator-driven queue work until
// ctx ends: the wake-up trigger of `smgctl queue` (a FIFO in the spool,
// like Postfix's qmgr trigger) and the timer for delayed DSNs and queue
// expiry, which must not wait for a message's next attempt. It also
// audits the administrators' deletions and returns (queuectl's
// admin-action records) at start, on every wake-up and on every tick;
// doing so only here keeps it to one goroutine.
func (r *Relay) operate(ctx context.Context) {
	wake := make(chan struct{}, 1)
	go func() {
		err := queuectl.ListenWake(ctx, r.cfg.Spool, func() {
			select {
			case wake <- struct{}{}:
			default: // one is pending: as good as ours
			}
		})
		if err != nil {
			// Not fatal: the runner's periodic scan still finds changes.
			r.log.Warn("queue wake-up trigger unavailable; queue changes wait for the next scan", "err", err)
		}
	}()
	r.recordAdminActions()
	tick := time.NewTicker(r.runner.TimerInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wake:
			r.recordAdminActions()
			r.runner.Rescan()
		case <-tick.C:
			r.recordAdminActions()
			r.runner.CheckTimers()
		}
	}
}

// recordAdminActions writes one audit record per recipient of each
// pending admin-action record, in the order the actions were taken, and
// removes a record only once its audit lines are durable: a crash in
// between audits it twice, never not at all. The relay stays the audit
// log's only writer.
func (r *Relay) recordAdminActions() {
	log := r.log.With("part", "admin-audit")
	pending, err := queuectl.ReadAdminActions(r.cfg.Spool, log)
	if err != nil {
		log.Error("reading admin-action records", "err", err)
		return
	}
	for i := range pending {
		p := &pending[i]
		// The command writes its record before it removes the message,
		// holding the message's lock: still locked means in progress,
		// still queued after means the removal never happened.
		unlock, err := r.spool.TryLock(p.QueueID)
		switch {
		case errors.Is(err, spool.ErrLocked):
			continue // the next wake-up or tick
		case err == nil:
			unlock()
			p.Unapplied(log)
			continue
		case !errors.Is(err, fs.ErrNotExist):
			log.Error("admin-action record: checking its message", "path", p.Path, "err", err)
			continue
		}
		recs := adminRecords(&p.AdminAction)
		if err := r.gate.Write(recs...); err != nil {
			// Kept: the next pass tries again.
			log.Error("auditing an admin action", "path", p.Path, "err", err)
			return
		}
		r.metrics.count(recs) // once audited, so a retried write counts once
		if err := p.Done(); err != nil {
			log.Error("admin-action record audited but not removed; it may be audited again", "path", p.Path, "err", err)
		}
	}
}

func adminRecords(a *queuectl.AdminAction) []audit.Record {
	ev := audit.Deleted
	if a.Action == queuectl.ActionReturned {
		ev = audit.Returned
	}
	recs := make([]audit.Record, 0, len(a.Recipients))
	for _, rc := range a.Recipients {
		recs = append(recs, audit.Record{
			Time: a.Time, Event: ev, QueueID: a.QueueID, MessageID: a.MessageID, Sender: a.Sender,
			Recipient: rc.Address, Diagnostic: rc.Diagnostic, Actor: a.Actor,
		})
	}
	return recs
}
