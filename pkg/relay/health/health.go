// Package health is the relay's one account of what is wrong with it: each
// part (policy, audit log, spool, ...) reports its own condition here, and
// /healthz and the metrics read the board, so an operator sees "degraded:
// policy reload failed" instead of a blind "ok".
package health

import (
	"sort"
	"sync"
	"time"
)

// Level is how bad a condition is.
type Level int

const (
	// OK: the part works.
	OK Level = iota
	// Degraded: mail still flows safely, but something needs attention
	// (e.g. a refused policy edit: the previous policy stays in force).
	Degraded
	// Failing: the relay cannot do its job for some or all mail (e.g. the
	// audit log cannot be written, so delivery is paused).
	Failing
)

func (l Level) String() string {
	switch l {
	case OK:
		return "ok"
	case Degraded:
		return "degraded"
	default:
		return "failing"
	}
}

// Condition is one part's reported state.
type Condition struct {
	Part   string    `json:"part"`
	Level  string    `json:"level"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	level  Level
}

// Board collects conditions. The zero value is ready; a nil *Board
// ignores reports, so parts can run without one (tests, CLI tools).
type Board struct {
	mu    sync.Mutex
	conds map[string]Condition
	now   func() time.Time
}

// Set reports part's condition. OK removes it. Since is kept while the
// level stays the same, so the board says how long a problem has lasted.
func (b *Board) Set(part string, level Level, reason string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if level == OK {
		delete(b.conds, part)
		return
	}
	if b.conds == nil {
		b.conds = make(map[string]Condition)
	}
	now := time.Now
	if b.now != nil {
		now = b.now
	}
	since := now().UTC()
	if old, ok := b.conds[part]; ok && old.level == level {
		since = old.Since
	}
	b.conds[part] = Condition{Part: part, Level: level.String(), Reason: reason, Since: since, level: level}
}

// Clear reports that part is fine again.
func (b *Board) Clear(part string) { b.Set(part, OK, "") }

// Snapshot returns the worst level and the conditions, sorted by part.
func (b *Board) Snapshot() (Level, []Condition) {
	if b == nil {
		return OK, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	worst := OK
	out := make([]Condition, 0, len(b.conds))
	for _, c := range b.conds {
		out = append(out, c)
		worst = max(worst, c.level)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Part < out[j].Part })
	return worst, out
}

// Level returns the level part reported last; OK when none.
func (b *Board) Level(part string) Level {
	if b == nil {
		return OK
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.conds[part].level
}
