package health

import (
	"testing"
	"time"
)

func TestBoard(t *testing.T) {
	var b Board
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b.now = func() time.Time { return clock }
	if lvl, conds := b.Snapshot(); lvl != OK || len(conds) != 0 {
		t.Fatalf("empty board: %v %v", lvl, conds)
	}
	b.Set("policy", Degraded, "reload refused")
	clock = clock.Add(time.Minute)
	b.Set("policy", Degraded, "reload refused again")
	b.Set("audit", Failing, "no space left on device")
	lvl, conds := b.Snapshot()
	if lvl != Failing || len(conds) != 2 {
		t.Fatalf("got %v %v", lvl, conds)
	}
	if conds[0].Part != "audit" || conds[1].Part != "policy" {
		t.Fatalf("not sorted: %v", conds)
	}
	if got := conds[1].Since; !got.Equal(clock.Add(-time.Minute)) {
		t.Errorf("since moved on a repeated report: %v", got)
	}
	if conds[1].Reason != "reload refused again" {
		t.Errorf("reason not updated: %q", conds[1].Reason)
	}
	b.Clear("audit")
	if lvl, _ := b.Snapshot(); lvl != Degraded {
		t.Errorf("after clearing audit: %v", lvl)
	}
	if b.Level("policy") != Degraded || b.Level("spool") != OK {
		t.Errorf("Level: %v %v", b.Level("policy"), b.Level("spool"))
	}
	var nilBoard *Board
	nilBoard.Set("x", Failing, "ignored")
	if lvl, _ := nilBoard.Snapshot(); lvl != OK {
		t.Errorf("nil board: %v", lvl)
	}
}
