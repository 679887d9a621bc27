package delivery

import (
	"fmt"
	"sync"
	"testing"

	"github.com/smgctl/smgctl/pkg/audit"
)

// slowRecorder blocks its first Write until release is closed, so the
// test can queue callers behind it; it fails the Writes listed in fail.
type slowRecorder struct {
	release chan struct{}
	entered chan struct{}
	fail    map[int]bool // by Write number, from 1

	mu      sync.Mutex
	writes  [][]audit.Record
	written map[string]bool
}

func (s *slowRecorder) Write(recs ...audit.Record) error {
	s.mu.Lock()
	n := len(s.writes) + 1
	s.writes = append(s.writes, recs)
	s.mu.Unlock()
	if n == 1 {
		close(s.entered)
		<-s.release
	}
	if s.fail[n] {
		return fmt.Errorf("write %d failed", n)
	}
	s.mu.Lock()
	for _, r := range recs {
		s.written[r.QueueID+" "+r.Recipient] = true
	}
	s.mu.Unlock()
	return nil
}

func TestAuditBatchGroupsWrites(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fail     map[int]bool
		wantErrs int // callers that must see an error
	}{
		{"all succeed", nil, 0},
		{"the shared write fails", map[int]bool{2: true}, 40},
		{"the first write fails", map[int]bool{1: true}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const callers = 40
			rec := &slowRecorder{release: make(chan struct{}), entered: make(chan struct{}), fail: tc.fail, written: map[string]bool{}}
			b := &auditBatch{rec: rec}
			errs := make(chan error, callers+1)
			go func() { errs <- b.Write(audit.Record{QueueID: "first", Recipient: "a"}) }()
			<-rec.entered
			var wg sync.WaitGroup
			for i := range callers {
				wg.Go(func() {
					id := fmt.Sprintf("m%d", i)
					recs := []audit.Record{{QueueID: id, Recipient: "1"}, {QueueID: id, Recipient: "2"}, {QueueID: id, Recipient: "3"}}
					err := b.Write(recs...)
					if err == nil {
						// Durable before Write returns: every record is in.
						rec.mu.Lock()
						for _, r := range recs {
							if !rec.written[r.QueueID+" "+r.Recipient] {
								t.Errorf("%s %s: Write returned before its records were written", r.QueueID, r.Recipient)
							}
						}
						rec.mu.Unlock()
					}
					errs <- err
				})
			}
			// Wait until all 40 are queued behind the blocked first write.
			for {
				b.mu.Lock()
				n := 0
				if b.pending != nil {
					n = len(b.pending.recs)
				}
				b.mu.Unlock()
				if n == 3*callers {
					break
				}
			}
			close(rec.release)
			wg.Wait()
			nerr := 0
			for range callers + 1 {
				if err := <-errs; err != nil {
					nerr++
				}
			}
			if nerr != tc.wantErrs {
				t.Errorf("%d callers saw an error, want %d", nerr, tc.wantErrs)
			}
			if len(rec.writes) != 2 {
				t.Fatalf("%d underlying writes for %d callers, want 2 (one shared)", len(rec.writes), callers+1)
			}
			// One caller's records stay together and in order.
			shared := rec.writes[1]
			for i := 0; i < len(shared); i += 3 {
				id := shared[i].QueueID
				for j, want := range []string{"1", "2", "3"} {
					if shared[i+j].QueueID != id || shared[i+j].Recipient != want {
						t.Fatalf("records of %s split or reordered at %d: %+v", id, i+j, shared[i+j])
					}
				}
			}
		})
	}
}

func TestAuditBatchEmpty(t *testing.T) {
	rec := &slowRecorder{release: make(chan struct{}), entered: make(chan struct{}), written: map[string]bool{}}
	if err := (&auditBatch{rec: rec}).Write(); err != nil || len(rec.writes) != 0 {
		t.Errorf("empty Write: err %v, %d underlying writes", err, len(rec.writes))
	}
}

// nopRecorder is the cost floor: no I/O.
type nopRecorder struct{}

func (nopRecorder) Write(...audit.Record) error { return nil }

func BenchmarkAuditBatchParallel(b *testing.B) {
	ab := &auditBatch{rec: nopRecorder{}}
	rec := audit.Record{QueueID: "0123456789abcdef", Recipient: "bob@example.test"}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := ab.Write(rec); err != nil {
				b.Error(err)
			}
		}
	})
}
