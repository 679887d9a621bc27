package spool

import (
	"os"
	"sync"
)

// groupCommit shares one sync among all callers that arrive while another
// is in flight, as databases do for their log. It serves the queue
// directory (a rename is durable only once an fsync of its directory that
// *started after* the rename has returned; POSIX leaves directory entries
// in the page cache until then) and the journal's segments.
//
// Callers join the pending round, which has not started yet, so the sync
// that covers them always begins after their write. At most one round runs
// at a time; whoever finds none running leads.
type groupCommit struct {
	run func() error // one round's sync

	mu      sync.Mutex
	pending *syncRound
	running bool
}

type syncRound struct {
	done    chan struct{}
	err     error
	members int // callers sharing this fsync
}

// Sync returns once a sync round that started after the call has
// completed, and its error.
func (d *groupCommit) Sync() error {
	d.mu.Lock()
	r := d.pending
	if r == nil {
		r = &syncRound{done: make(chan struct{})}
		d.pending = r
	}
	r.members++
	if !d.running {
		d.running = true
		d.mu.Unlock()
		d.lead(r)
	} else {
		d.mu.Unlock()
	}
	<-r.done
	return r.err
}

// lead runs rounds until the caller's own round is done, then hands the
// leadership to a goroutine if more callers queued up meanwhile, so no
// caller waits for more than two syncs however busy the spool is.
func (d *groupCommit) lead(mine *syncRound) {
	for {
		d.mu.Lock()
		r := d.pending
		if r == nil {
			d.running = false
			d.mu.Unlock()
			return
		}
		if mine == nil { // the caller's round is done; someone else waits
			d.mu.Unlock()
			go d.lead(r)
			return
		}
		d.pending = nil
		d.mu.Unlock()

		r.err = d.run()
		close(r.done)
		if r == mine {
			mine = nil
		}
	}
}

// syncDir fsyncs a directory, committing the entries created, renamed or
// removed in it.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
