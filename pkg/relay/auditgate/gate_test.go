package auditgate

import (
	"context"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/health"
)

// logWriter stands for the audit log: it fails while full is set.
type logWriter struct {
	mu   sync.Mutex
	full bool
	got  []string
}

func (w *logWriter) Write(recs ...audit.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.full {
		return syscall.ENOSPC
	}
	for _, r := range recs {
		w.got = append(w.got, r.QueueID)
	}
	return nil
}

func (w *logWriter) set(full bool) { w.mu.Lock(); w.full = full; w.mu.Unlock() }

func (w *logWriter) ids() []string { w.mu.Lock(); defer w.mu.Unlock(); return slices.Clone(w.got) }

// TestBacklogSurvivesRestart: records that cannot be written are kept in
// the backlog, delivery is held and health fails; a restart finds them,
// and they reach the log first, in order, once it is writable.
func TestBacklogSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	w := &logWriter{}
	board := &health.Board{}
	g, err := Open(Config{Log: w, Dir: dir, Health: board})
	if err != nil {
		t.Fatal(err)
	}
	g.Write(audit.Record{QueueID: "A"})
	w.set(true)
	for _, id := range []string{"B", "C"} {
		if err := g.Write(audit.Record{QueueID: id}); err != nil {
			t.Fatalf("Write while full: %v (the backlog should keep it)", err)
		}
	}
	if g.Held() == nil || board.Level(Part) != health.Failing {
		t.Fatalf("held %v, health %v: want held and failing", g.Held(), board.Level(Part))
	}
	// The relay stops and starts again, the log still full.
	board = &health.Board{}
	g, err = Open(Config{Log: w, Dir: dir, Health: board})
	if err != nil {
		t.Fatal(err)
	}
	if g.Held() == nil || board.Level(Part) != health.Failing {
		t.Fatal("the backlog of the earlier run does not hold delivery")
	}
	w.set(false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.Run(ctx)
	for deadline := time.Now().Add(5 * time.Second); g.Held() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still held after the log became writable")
		}
	}
	if err := g.Write(audit.Record{QueueID: "D"}); err != nil {
		t.Fatal(err)
	}
	if got := w.ids(); !slices.Equal(got, []string{"A", "B", "C", "D"}) {
		t.Errorf("log got %v, want A B C D", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 || board.Level(Part) != health.OK {
		t.Errorf("after the flush: %d backlog files, health %v", len(ents), board.Level(Part))
	}
}

// TestBacklogUnwritable: when the backlog cannot be written either, Write
// says so (the caller keeps the message queued) and the records wait in
// memory, still ahead of later ones.
func TestBacklogUnwritable(t *testing.T) {
	dir := t.TempDir()
	w := &logWriter{full: true}
	g, err := Open(Config{Log: w, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() == 0 {
		os.RemoveAll(dir) // root ignores modes: take the directory away
	}
	if err := g.Write(audit.Record{QueueID: "A"}); err == nil || g.Held() == nil {
		t.Fatalf("Write with nowhere to keep the records = %v", err)
	}
	w.set(false)
	g.Write(audit.Record{QueueID: "B"})
	if got := w.ids(); !slices.Equal(got, []string{"A", "B"}) || g.Held() != nil {
		t.Errorf("log got %v, held %v", got, g.Held())
	}
}
