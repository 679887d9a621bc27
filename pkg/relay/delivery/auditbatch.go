package delivery

import (
	"sync"

	"github.com/smgctl/smgctl/pkg/audit"
)

// auditBatch shares one Recorder.Write — and so the audit log's fsyncs —
// among every delivery that finishes while another Write is in flight
// (group commit, as spool's dirSyncer does for directory fsyncs). Without
// it each delivered message waited in line for its own fsync pair (log
// and seal) under the log's lock, which capped delivery at one fsync
// round trip per message and kept up to MaxMessages delivered messages
// unremoved, every one of them sent again after a crash.
//
// Durability is unchanged: Write returns only after a Recorder.Write that
// started after the call, and contains its records, has returned; the
// records of one call stay together and in order.
type auditBatch struct {
	rec Recorder

	mu      sync.Mutex
	pending *auditRound
	running bool
}

type auditRound struct {
	recs []audit.Record
	done chan struct{}
	err  error
}

func (b *auditBatch) Write(recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	b.mu.Lock()
	r := b.pending
	if r == nil {
		r = &auditRound{done: make(chan struct{})}
		b.pending = r
	}
	r.recs = append(r.recs, recs...)
	if b.running {
		b.mu.Unlock()
		<-r.done
		return r.err
	}
	b.running = true
	b.mu.Unlock()
	b.lead(r)
	return r.err
}

// lead writes rounds until the caller's own is done, then hands the lead
// to a new goroutine if more callers queued meanwhile, so no caller waits
// for more than two Writes however busy the relay is.
func (b *auditBatch) lead(mine *auditRound) {
	for {
		b.mu.Lock()
		r := b.pending
		if r == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		if mine == nil {
			b.mu.Unlock()
			go b.lead(r)
			return
		}
		b.pending = nil
		b.mu.Unlock()

		r.err = b.rec.Write(r.recs...)
		close(r.done)
		if r == mine {
			mine = nil
		}
	}
}
