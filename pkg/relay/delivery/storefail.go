package delivery

import (
	"errors"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// When a message's delivery state cannot be written to the spool (a full
// disk, a read-only remount), retrying it at once can only fail again:
// the stored envelope still says "due now", so without this the runner
// tried the same message in a tight loop, at 100 % CPU and thousands of
// log lines a second. Instead such a message waits an exponential back-off
// (storeRetryMin doubling to storeRetryMax, shared by all messages while
// the trouble lasts), the error is logged once per storeLogEvery with a
// count of the repeats, and the health board says "spool" is failing until
// a write works again.
const (
	storeRetryMin = 100 * time.Millisecond
	storeRetryMax = 30 * time.Second
	storeLogEvery = 10 * time.Second
	// storeHealthPart is the health board's part for spool writes.
	storeHealthPart = "spool"
)

// storeTrouble is the runner's state of failing spool writes.
type storeTrouble struct {
	mu      sync.Mutex
	failing bool
	delay   time.Duration // the current back-off
	bumped  time.Time     // when delay last grew
	// held are the messages whose last attempt could not store its
	// outcome; finish schedules them after the back-off.
	held map[string]bool
	// waiting are the messages whose outcome is not stored yet. The
	// trouble ends when a state write works, or when the last of them
	// is removed (a removal needs no space, so it alone proves nothing
	// while others still wait).
	waiting map[string]bool
	// logged is when the last line was written; suppressed counts the
	// failures since, failures those since the trouble began.
	logged               time.Time
	suppressed, failures int
}

// storeFailed notes that storing id's delivery state failed with err.
func (r *Runner) storeFailed(id string, err error) {
	s := &r.store
	now := r.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.failing:
		s.failing, s.delay, s.bumped, s.failures = true, storeRetryMin, now, 0
		s.logged, s.suppressed = time.Time{}, 0
	case now.Sub(s.bumped) >= s.delay:
		// Many messages fail at once: the back-off grows once per
		// period, not once per message.
		s.delay, s.bumped = min(2*s.delay, storeRetryMax), now
	}
	if s.held == nil {
		s.held, s.waiting = map[string]bool{}, map[string]bool{}
	}
	s.held[id], s.waiting[id] = true, true
	s.failures++
	reason := "cannot store delivery state: " + err.Error()
	if errors.Is(err, spool.ErrNoSpace) {
		reason = "spool full: " + err.Error()
	}
	r.cfg.Health.Set(storeHealthPart, health.Failing, reason)
	if !s.logged.IsZero() && now.Sub(s.logged) < storeLogEvery {
		s.suppressed++
		return
	}
	r.cfg.Log.Error("storing delivery state", "id", id, "err", err, "retry_in", s.delay,
		"repeats_not_logged", s.suppressed)
	s.logged, s.suppressed = now, 0
}

// storeWorked notes that id's delivery state was stored: the trouble is
// over.
func (r *Runner) storeWorked(id string) { r.storeDone(id, true) }

// removed notes that id left the spool.
func (r *Runner) removed(id string) { r.storeDone(id, false) }

func (r *Runner) storeDone(id string, wrote bool) {
	s := &r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, id)
	delete(s.waiting, id)
	if !s.failing || !wrote && len(s.waiting) > 0 {
		return
	}
	s.failing = false
	clear(s.waiting)
	r.cfg.Health.Clear(storeHealthPart)
	r.cfg.Log.Info("delivery state stored again", "id", id, "failures", s.failures, "repeats_not_logged", s.suppressed)
}

// storeHold returns when a message whose outcome could not be stored may
// be tried again, and forgets it; ok is false for any other message.
func (r *Runner) storeHold(id string) (time.Time, bool) {
	s := &r.store
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held[id] {
		return time.Time{}, false
	}
	delete(s.held, id)
	return r.cfg.Now().Add(s.delay), true
}
