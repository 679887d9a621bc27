package relay

import (
	"fmt"
	"sync"

	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// journalHealthPart is the health board's part for journal segments kept
// in corrupt/: acknowledged mail may be missing. It is separate from
// "spool" (writes failing now), which clears by itself when writes work
// again; this one clears only when the operator has dealt with the
// segments (removed them from corrupt/) and the relay looks again, at
// SIGHUP or the next start.
const journalHealthPart = "spool-journal"

// journalDamage is what the relay knows about damaged journal segments.
type journalDamage struct {
	mu sync.Mutex
	// found counts segments this process's recovery moved to corrupt/.
	found int
	// kept are the segments in corrupt/ at the last look.
	kept []spool.JournalDamage
}

// checkJournalDamage looks at corrupt/ and reports what it holds on the
// health board; recovered is true at start, when the segments found by
// this start's recovery are counted. Not being able to look is reported
// too, but does not stop the relay: the mail it holds is fine.
func (r *Relay) checkJournalDamage(recovered bool) {
	kept, err := r.spool.Damage()
	if err != nil {
		r.log.Error("cannot look for damaged journal segments", "err", err)
		r.health.Set(journalHealthPart, health.Degraded, "cannot look for damaged journal segments: "+err.Error())
		return
	}
	d := &r.journalDamage
	d.mu.Lock()
	if recovered {
		d.found = len(r.spool.RecoveredDamage())
	}
	d.kept = kept
	d.mu.Unlock()
	if len(kept) == 0 {
		r.health.Clear(journalHealthPart)
		return
	}
	var bytes int64
	for _, k := range kept {
		bytes += k.BytesUnaccounted
	}
	r.health.Set(journalHealthPart, health.Degraded, fmt.Sprintf(
		"%d damaged journal segment(s) kept in %s/corrupt, %d acknowledged bytes unaccounted for: mail may be lost (smgctl queue list)",
		len(kept), r.cfg.Spool, bytes))
}

// stats returns the damaged segments found at start, those in corrupt/
// and their unaccounted bytes, for metrics.
func (d *journalDamage) stats() (found, kept int, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, k := range d.kept {
		bytes += k.BytesUnaccounted
	}
	return d.found, len(d.kept), bytes
}
