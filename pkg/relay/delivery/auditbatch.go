package delivery

import (
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// auditBatch shares one Recorder.Write — and so the audit log's fsyncs —
// among every delivery that finishes while another Write is in flight
// (safeio.GroupCommit, as the spool does for its fsyncs). Without it each
// delivered message waited in line for its own fsync pair (log and seal)
// under the log's lock, which capped delivery at one fsync round trip per
// message and kept up to MaxMessages delivered messages unremoved, every
// one of them sent again after a crash.
//
// Durability is unchanged: Write returns only after a Recorder.Write that
// started after the call, and contains its records, has returned; the
// records of one call stay together and in order.
type auditBatch struct {
	group safeio.GroupCommit[audit.Record]
}

func newAuditBatch(rec Recorder) *auditBatch {
	return &auditBatch{group: safeio.GroupCommit[audit.Record]{
		Run: func(recs []audit.Record) error { return rec.Write(recs...) },
	}}
}

func (b *auditBatch) Write(recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	return b.group.Do(recs...)
}
