package safeio

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blockingRun is a Run whose first round blocks until release is closed,
// so a test can queue callers behind it, and whose rounds listed in fail
// return an error. It keeps every round's items.
type blockingRun struct {
	entered, release chan struct{}
	fail             map[int]error // by round, from 1

	mu     sync.Mutex
	rounds [][]int
}

func newBlockingRun(fail map[int]error) *blockingRun {
	return &blockingRun{entered: make(chan struct{}), release: make(chan struct{}), fail: fail}
}

func (b *blockingRun) run(items []int) error {
	b.mu.Lock()
	b.rounds = append(b.rounds, slices.Clone(items))
	n := len(b.rounds)
	b.mu.Unlock()
	if n == 1 {
		close(b.entered)
		<-b.release
	}
	return b.fail[n]
}

// waitJoined waits until the pending round holds n items.
func waitJoined[T any](g *GroupCommit[T], n int) {
	for {
		g.mu.Lock()
		joined := g.pending != nil && len(g.pending.items) == n
		g.mu.Unlock()
		if joined {
			return
		}
		runtime.Gosched()
	}
}

// A first caller leads round 1, which blocks; 40 callers arrive meanwhile
// and must all share round 2. A failing round fails exactly its callers;
// the group works normally afterwards.
func TestGroupCommitRounds(t *testing.T) {
	errEIO := errors.New("EIO")
	for _, tc := range []struct {
		name string
		fail map[int]error
	}{
		{"all succeed", nil},
		{"the shared round fails", map[int]error{2: errEIO}},
		{"the first round fails", map[int]error{1: errEIO}},
		{"both fail", map[int]error{1: errEIO, 2: errEIO}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const callers = 40
			b := newBlockingRun(tc.fail)
			g := &GroupCommit[int]{Run: b.run}

			first := make(chan error)
			go func() { first <- g.Do(-1) }()
			<-b.entered
			errs := make([]error, callers)
			var wg sync.WaitGroup
			for i := range callers {
				// Three items per caller: they must stay together.
				wg.Go(func() { errs[i] = g.Do(3*i, 3*i+1, 3*i+2) })
			}
			waitJoined(g, 3*callers)
			close(b.release)

			if err := <-first; err != tc.fail[1] {
				t.Errorf("first caller: %v, want round 1's %v", err, tc.fail[1])
			}
			wg.Wait()
			for i, err := range errs {
				if err != tc.fail[2] {
					t.Fatalf("caller %d: %v, want round 2's %v", i, err, tc.fail[2])
				}
			}
			if len(b.rounds) != 2 {
				t.Fatalf("%d runs for %d callers, want 2", len(b.rounds), callers+1)
			}
			if !slices.Equal(b.rounds[0], []int{-1}) {
				t.Errorf("round 1 items %v, want the first caller's only", b.rounds[0])
			}
			shared := b.rounds[1]
			if len(shared) != 3*callers {
				t.Fatalf("round 2 has %d items, want %d", len(shared), 3*callers)
			}
			for k := 0; k < len(shared); k += 3 {
				if shared[k]%3 != 0 || shared[k+1] != shared[k]+1 || shared[k+2] != shared[k]+2 {
					t.Fatalf("a caller's items split or reordered at %d: %v", k, shared[k:k+3])
				}
			}
			// Idle again: the next caller leads a fresh round of its own.
			if err := g.Do(1000); err != tc.fail[3] || len(b.rounds) != 3 || !slices.Equal(b.rounds[2], []int{1000}) {
				t.Errorf("Do after idle: %v, rounds %v", err, b.rounds)
			}
			if g.running || g.pending != nil {
				t.Errorf("not idle afterwards: running=%v pending=%v", g.running, g.pending)
			}
		})
	}
}

// The leader returns as soon as its own round is done, even while more
// callers wait: the round after its own is run by another goroutine.
func TestGroupCommitLeaderHandsOff(t *testing.T) {
	leaderDone := make(chan struct{})
	entered := make(chan struct{})
	release := make(chan struct{})
	var runs atomic.Int32
	g := &GroupCommit[string]{Run: func([]string) error {
		switch runs.Add(1) {
		case 1:
			close(entered)
			<-release
		case 2:
			select {
			case <-leaderDone:
			case <-time.After(10 * time.Second):
				return errors.New("the leader was kept running the next round")
			}
		}
		return nil
	}}
	go func() {
		if err := g.Do("leader"); err != nil {
			t.Error(err)
		}
		close(leaderDone)
	}()
	<-entered
	second := make(chan error)
	go func() { second <- g.Do("second") }()
	waitJoined(g, 1)
	close(release)
	if err := <-second; err != nil {
		t.Error(err)
	}
}

// The contract, under load: every caller's "write" happens before the
// run that covers it begins; Do returns only once that run has returned,
// with that run's error (every third run fails); runs never overlap.
func TestGroupCommitContract(t *testing.T) {
	var clock atomic.Int64 // logical time: writes and run starts
	var inFlight atomic.Int32
	var mu sync.Mutex
	result := map[int64]error{} // by write: the error of the run that covered it
	var runs int
	g := &GroupCommit[int64]{Run: func(writes []int64) error {
		if inFlight.Add(1) != 1 {
			t.Error("two runs at once")
		}
		defer inFlight.Add(-1)
		start := clock.Add(1)
		mu.Lock()
		defer mu.Unlock()
		runs++
		var err error
		if runs%3 == 0 {
			err = fmt.Errorf("run %d failed", runs)
		}
		for _, w := range writes {
			if w > start {
				t.Errorf("write %d is covered by a run that began at %d, before it", w, start)
			}
			if _, dup := result[w]; dup {
				t.Errorf("write %d in two runs", w)
			}
			result[w] = err
		}
		return err
	}}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 100 {
				w := clock.Add(1) // the caller's write
				err := g.Do(w)
				mu.Lock()
				want, covered := result[w]
				mu.Unlock()
				if !covered {
					t.Errorf("Do returned before a run covered write %d", w)
				} else if err != want {
					t.Errorf("write %d: Do returned %v, its run %v", w, err, want)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("32 callers × 100 writes → %d runs", runs)
}

// A caller with no items still waits for a run that began after its call
// (a directory fsync needs no payload).
func TestGroupCommitNoItems(t *testing.T) {
	b := newBlockingRun(nil)
	g := &GroupCommit[int]{Run: b.run}
	go g.Do()
	<-b.entered
	done := make(chan error)
	go func() { done <- g.Do() }()
	waitJoined(g, 0)
	close(b.release)
	<-done
	if len(b.rounds) != 2 {
		t.Errorf("%d runs, want 2: the second caller must not return on the run in flight when it came", len(b.rounds))
	}
}
