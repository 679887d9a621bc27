package spool

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// TestGroupCommit holds the first directory fsync until n more callers have
// queued, then checks they all share a single second fsync and that each
// gets the error of an fsync that started after its call.
func TestGroupCommit(t *testing.T) {
	const n = 50
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var calls atomic.Int32
	errSecond := errors.New("EIO on round 2")
	d := &groupCommit{run: func() error {
		switch calls.Add(1) {
		case 1:
			entered <- struct{}{}
			<-release
			return nil
		case 2:
			return errSecond
		}
		return nil
	}}

	first := make(chan error)
	go func() { first <- d.Sync() }()
	<-entered

	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { errs[i] = d.Sync() })
	}
	for { // wait until every caller has joined the pending round
		d.mu.Lock()
		joined := d.pending != nil && d.pending.members == n
		d.mu.Unlock()
		if joined {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first caller: %v", err)
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, errSecond) {
			t.Fatalf("caller %d got %v; it joined round 2, whose fsync failed", i, err)
		}
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d fsyncs for %d callers, want 2", got, n+1)
	}
	d.mu.Lock()
	running, pending := d.running, d.pending
	d.mu.Unlock()
	if running || pending != nil {
		t.Errorf("syncer not idle afterwards: running=%v pending=%v", running, pending)
	}
	// Idle again: the next caller leads a fresh round.
	if err := d.Sync(); err != nil || calls.Load() != 3 {
		t.Errorf("Sync after idle: %v, fsyncs %d", err, calls.Load())
	}
}

// TestGroupCommitConcurrent hammers the syncer (run with -race): every
// caller returns, and fsyncs never overlap.
func TestGroupCommitConcurrent(t *testing.T) {
	var inFlight, maxInFlight, calls atomic.Int32
	d := &groupCommit{run: func() error {
		calls.Add(1)
		if v := inFlight.Add(1); v > maxInFlight.Load() {
			maxInFlight.Store(v)
		}
		runtime.Gosched()
		inFlight.Add(-1)
		return nil
	}}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 200 {
				if err := d.Sync(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if maxInFlight.Load() != 1 {
		t.Errorf("%d fsyncs ran at once", maxInFlight.Load())
	}
	t.Logf("%d callers × 200 Syncs → %d fsyncs", 64, calls.Load())
}
