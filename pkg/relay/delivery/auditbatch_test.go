package delivery

import (
	"errors"
	"slices"
	"testing"

	"github.com/smgctl/smgctl/pkg/audit"
)

// The grouping itself is safeio.GroupCommit's, tested there; here only
// what auditBatch adds: records pass unchanged, the recorder's error comes
// back, and a Write without records writes nothing.

type listRecorder struct {
	writes [][]audit.Record
	err    error
}

func (l *listRecorder) Write(recs ...audit.Record) error {
	l.writes = append(l.writes, recs)
	return l.err
}

func TestAuditBatchPassesRecords(t *testing.T) {
	rec := &listRecorder{}
	b := newAuditBatch(rec)
	recs := []audit.Record{{QueueID: "m1", Recipient: "a"}, {QueueID: "m1", Recipient: "b"}}
	if err := b.Write(recs...); err != nil {
		t.Fatal(err)
	}
	if len(rec.writes) != 1 || !slices.EqualFunc(rec.writes[0], recs, func(a, b audit.Record) bool {
		return a.QueueID == b.QueueID && a.Recipient == b.Recipient
	}) {
		t.Errorf("recorder got %+v, want %+v", rec.writes, recs)
	}
	rec.err = errors.New("disk full")
	if err := b.Write(recs[0]); !errors.Is(err, rec.err) {
		t.Errorf("Write = %v, want the recorder's error", err)
	}
}

func TestAuditBatchEmpty(t *testing.T) {
	rec := &listRecorder{}
	if err := newAuditBatch(rec).Write(); err != nil || len(rec.writes) != 0 {
		t.Errorf("empty Write: err %v, %d underlying writes", err, len(rec.writes))
	}
}

// nopRecorder is the cost floor: no I/O.
type nopRecorder struct{}

func (nopRecorder) Write(...audit.Record) error { return nil }

func BenchmarkAuditBatchParallel(b *testing.B) {
	ab := newAuditBatch(nopRecorder{})
	rec := audit.Record{QueueID: "0123456789abcdef", Recipient: "bob@example.test"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := ab.Write(rec); err != nil {
				b.Error(err)
			}
		}
	})
}
