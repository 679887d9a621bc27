package delivery

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// Failing spool writes: the back-off grows once per period however many
// messages fail (100 ms doubling, capped at 30 s), the log says it once
// per 10 s with the count of what it left out, health says "spool full"
// until a write works, and a message that failed is scheduled after the
// back-off instead of at once.
func TestStoreFailureBackoffAndLog(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var logs bytes.Buffer
	clock := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	board := &health.Board{}
	r, err := New(Config{
		Spool: sp, Policy: func() *policy.Policy { return &policy.Policy{} }, Routes: map[string]string{"x.test": "127.0.0.1:1"},
		Log: slog.New(slog.NewTextHandler(&logs, nil)), Health: board, Now: func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	full := fmt.Errorf("spool: update: %w: %w", spool.ErrNoSpace, syscall.ENOSPC)

	// 50 messages fail at once: one log line, the back-off at its start.
	for i := range 50 {
		r.storeFailed(fmt.Sprintf("id%02d", i), full)
	}
	if n := strings.Count(logs.String(), "storing delivery state"); n != 1 {
		t.Fatalf("%d log lines for 50 failures at once:\n%s", n, logs.String())
	}
	if r.store.delay != storeRetryMin {
		t.Errorf("back-off %v after one round, want %v", r.store.delay, storeRetryMin)
	}
	if lvl, conds := board.Snapshot(); lvl != health.Failing || len(conds) != 1 || conds[0].Part != "spool" ||
		!strings.HasPrefix(conds[0].Reason, "spool full: ") {
		t.Errorf("health: %v %+v", lvl, conds)
	}
	// A failed message waits the back-off; the others are not held.
	if at, ok := r.storeHold("id00"); !ok || !at.Equal(clock.Add(storeRetryMin)) {
		t.Errorf("storeHold = %v %v", at, ok)
	}
	if _, ok := r.storeHold("other"); ok {
		t.Error("a message that did not fail is held")
	}

	// Failing on for a minute, one failure every 100 ms: the back-off
	// reaches its cap, and the log has one line per 10 s saying how many
	// it left out.
	for range 600 {
		clock = clock.Add(100 * time.Millisecond)
		r.storeFailed("id01", full)
	}
	if r.store.delay != storeRetryMax {
		t.Errorf("back-off %v after a minute, want the cap %v", r.store.delay, storeRetryMax)
	}
	if n := strings.Count(logs.String(), "storing delivery state"); n != 7 {
		t.Errorf("%d log lines in a minute of failures, want 7 (one per 10 s)", n)
	}
	if !strings.Contains(logs.String(), "repeats_not_logged=99\n") {
		t.Errorf("the log does not count what it left out:\n%s", logs.String())
	}

	// A message is removed (that needs no space) while others still
	// wait: still failing.
	r.removed("id02")
	if lvl, _ := board.Snapshot(); lvl != health.Failing {
		t.Errorf("health after a removal while others wait: %v", lvl)
	}

	// A write works: health clears, the next trouble starts afresh.
	r.storeWorked("id01")
	if lvl, _ := board.Snapshot(); lvl != health.OK {
		t.Errorf("health after a write worked: %v", lvl)
	}
	if !strings.Contains(logs.String(), "delivery state stored again") {
		t.Error("recovery not logged")
	}
	r.storeFailed("id02", full)
	if r.store.delay != storeRetryMin {
		t.Errorf("back-off %v at a new trouble, want %v", r.store.delay, storeRetryMin)
	}
	// The only waiting message is removed: nothing waits, it clears.
	r.removed("id02")
	if lvl, _ := board.Snapshot(); lvl != health.OK {
		t.Errorf("health once nothing waits: %v", lvl)
	}
}
