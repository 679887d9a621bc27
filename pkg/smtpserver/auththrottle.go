package smtpserver

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// authThrottle slows password guessing from one address (IPv6: one /64)
// across connections: every AUTH from an address with recent failures
// waits delay per failure, at most maxDelay, before it is answered,
// whether the password is right or not, so that a quick answer gives
// nothing away. Failures are forgotten authMemory after the last one. A
// right password is never locked out, so an attacker cannot lock a user
// out either; the per-connection limit (Config.MaxAuthFailures) and the
// connection limits bound how many guesses run at once.
type authThrottle struct {
	delay, maxDelay time.Duration

	mu    sync.Mutex
	fails map[netip.Prefix]*authRecord
}

type authRecord struct {
	n    int
	last time.Time
}

const (
	authMemory = 15 * time.Minute
	// authRecords bounds the table; when full, forgotten records are
	// swept, then the oldest goes.
	authRecords = 1 << 16
)

func newAuthThrottle(delay, maxDelay time.Duration) *authThrottle {
	return &authThrottle{delay: delay, maxDelay: maxDelay, fails: map[netip.Prefix]*authRecord{}}
}

// wait is the pause owed before answering an AUTH from key.
func (t *authThrottle) wait(key netip.Prefix) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.fails[key]
	if r == nil || time.Since(r.last) > authMemory {
		return 0
	}
	return min(time.Duration(r.n)*t.delay, t.maxDelay)
}

// pause sleeps the wait owed, or until ctx ends.
func (t *authThrottle) pause(ctx context.Context, key netip.Prefix) {
	d := t.wait(key)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// failed records a failure from key.
func (t *authThrottle) failed(key netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	r := t.fails[key]
	if r == nil {
		if len(t.fails) >= authRecords {
			t.sweep(now)
		}
		r = &authRecord{}
		t.fails[key] = r
	}
	if now.Sub(r.last) > authMemory {
		r.n = 0
	}
	r.n++
	r.last = now
}

// sweep drops forgotten records, and the oldest one if none was.
func (t *authThrottle) sweep(now time.Time) {
	var oldest netip.Prefix
	var at time.Time
	for k, r := range t.fails {
		if now.Sub(r.last) > authMemory {
			delete(t.fails, k)
			continue
		}
		if at.IsZero() || r.last.Before(at) {
			oldest, at = k, r.last
		}
	}
	if len(t.fails) >= authRecords {
		delete(t.fails, oldest)
	}
}
