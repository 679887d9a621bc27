package smtpserver

import (
	"sync"
	"time"
)

// logLimiter keeps a flood (thousands of refused connections a second)
// from becoming a flood of log lines: per kind of event, one line per
// interval, which says how many were left out before it.
type logLimiter struct {
	interval time.Duration

	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, last: map[string]time.Time{}, skipped: map[string]int{}}
}

// allow reports whether an event of this kind may be logged now and how
// many were not logged since the last one that was.
func (l *logLimiter) allow(kind string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if t, ok := l.last[kind]; ok && now.Sub(t) < l.interval {
		l.skipped[kind]++
		return false, 0
	}
	l.last[kind] = now
	n := l.skipped[kind]
	l.skipped[kind] = 0
	return true, n
}
