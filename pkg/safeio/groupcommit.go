package safeio

import "sync"

// GroupCommit shares one run of a costly sync (an fsync, an audit log
// write with its fsyncs) among all callers that arrive while another run
// is in flight, as databases do for their log.
//
// The contract: Do returns only after a run that began after Do was
// called, and whose items include the caller's, has returned; Do returns
// that run's error. So a caller that made a write before calling Do knows
// on a nil error that a sync which began after the write has completed —
// what POSIX requires for the write to be durable. A failing run fails
// every caller that joined it and no other.
//
// Callers join the pending round, which has not started yet, so the run
// that covers them always begins after their call. At most one run is in
// flight at a time; whoever finds none running leads. A caller waits for
// at most two runs: the one in flight when it arrived and its own.
type GroupCommit[T any] struct {
	// Run does one round's work for the items of every caller in it, in
	// the order they joined; one caller's items stay together. It is
	// never called concurrently with itself.
	Run func(items []T) error

	mu      sync.Mutex
	pending *round[T] // not started yet; callers join it
	running bool      // a leader is running rounds
}

type round[T any] struct {
	items []T
	done  chan struct{}
	err   error
}

// Do adds items to the next round and returns once that round's Run has
// returned, with its error. Items may be none: the caller then only
// waits for a run that began after its call (a directory fsync).
func (g *GroupCommit[T]) Do(items ...T) error {
	g.mu.Lock()
	r := g.pending
	if r == nil {
		r = &round[T]{done: make(chan struct{})}
		g.pending = r
	}
	r.items = append(r.items, items...)
	if g.running {
		g.mu.Unlock()
		<-r.done
		return r.err
	}
	g.running = true
	g.mu.Unlock()
	g.lead(r)
	return r.err
}

// lead runs rounds until the caller's own round is done, then hands the
// lead to a new goroutine if more callers queued up meanwhile, so that no
// caller waits for more than two runs however busy the others are.
func (g *GroupCommit[T]) lead(mine *round[T]) {
	for {
		g.mu.Lock()
		r := g.pending
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		if mine == nil { // the caller's round is done; others wait
			g.mu.Unlock()
			go g.lead(r)
			return
		}
		g.pending = nil
		g.mu.Unlock()

		r.err = g.Run(r.items)
		close(r.done)
		if r == mine {
			mine = nil
		}
	}
}
