// Package policywatch keeps the relay's policy current: it reloads the
// policy file within a second of a finished change (B6) and on demand
// (SIGHUP), and refuses a file that does not parse, leaving the previous
// policy in force.
//
// A file being written is never read as the policy: a write in place
// (truncate, then write, perhaps slowly and in pieces: `cat a > policy`,
// cp, editors, configuration management) is read only after the writer
// closed the file and nothing wrote to it for a quiet period; a file
// renamed into place is complete by definition.
package policywatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/health"
)

const (
	// settle is how long the watcher waits after a rename, delete or
	// chmod for more events of the same edit before it reads the file.
	settle = 30 * time.Millisecond
	// quiet is how long a file written in place must stay untouched
	// after its writer closed it: a script that truncates and closes,
	// then appends (`: > f; cat x >> f`), is not done at the first close.
	quiet = 200 * time.Millisecond
	// poll is the safety net interval (the directory may not exist yet,
	// inotify may overflow or be missing), and without inotify the only
	// way to see a change: a changed file is read once two polls in a row
	// found it the same, so a finished edit is in force within 3 polls.
	poll = 250 * time.Millisecond
)

// writingReport: a write in place not finished after this long is shown
// on the health board (the writer may have stalled). A variable for the
// test.
var writingReport = 5 * time.Second

// useInotify is false in the tests of the polling fallback.
var useInotify = true

// HealthPart is the name the watcher reports under on the health board.
const HealthPart = "policy"

// Stats is what the watcher has done, for metrics and /healthz.
type Stats struct {
	Loads      uint64    // successful (re)loads, the first included
	Failures   uint64    // refused files
	LastLoad   time.Time // of the policy in force
	LastError  string    // why the last file read was refused; "" after a good load
	Entries    int       // entries of the policy in force
	Generation uint64    // increments with each policy put in force
	SHA256     string    // hex SHA-256 of the file content in force
	// Writing is true while the file is being written in place: it is
	// read when the writer has closed it.
	Writing bool
}

// Load describes a policy just put in force, for Config.Loaded.
type Load struct {
	Path  string
	First bool     // the load at start
	Prev  [32]byte // SHA-256 of the content in force before; zero on the first
	Sum   [32]byte // SHA-256 of the file's content now in force
	Size  int      // bytes
}

// Config says what to watch and whom to tell.
type Config struct {
	Path string
	// MissingOK makes a missing file at start an empty policy: only for
	// the documented default path of a fresh install, which enforces
	// nothing yet. A path the operator named must exist, so a typo
	// cannot silently turn enforcement off.
	MissingOK bool
	Log       *slog.Logger
	// Health gets the watcher's condition under HealthPart: degraded
	// while a refused file keeps the previous policy in force.
	Health *health.Board
	// Loaded, if set, is called after each policy put in force, the
	// first included, before the next load starts.
	Loaded func(Load)
}

// Watcher holds the policy in force.
type Watcher struct {
	cfg Config
	log *slog.Logger
	// src reports the kernel's file events; nil without inotify, then
	// srcErr says why. Run consumes and closes it.
	src    source
	srcErr error

	cur atomic.Pointer[policy.Policy]

	// loadMu serialises loads. It is never taken by Stats or Policy, so
	// a load that hangs cannot block /healthz or /metrics, and Reload
	// only tries it, so it cannot block SIGHUP.
	loadMu sync.Mutex
	sum    [32]byte // of the content in force; guarded by loadMu
	// again asks the load in progress for one more pass (a Reload came
	// while it ran).
	again atomic.Bool
	// reading is set while a read of the file has not returned; a read
	// that outlives readTimeout (a hung file system) keeps it set and no
	// second read starts behind it.
	reading atomic.Bool
	// writing is set while the file is being written in place.
	writing atomic.Bool

	statsMu sync.Mutex
	stats   Stats
	stamp   fileStamp // of the file last read, good or refused
}

// New loads the policy; a file that does not parse is an error, since
// there is no previous policy to keep.
func New(cfg Config) (*Watcher, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: log}
	// Watch before the first read, so a write in place that starts
	// between New and Run is known to be one when Run begins.
	if useInotify {
		w.src, w.srcErr = newSource(cfg.Path)
	} else {
		w.srcErr = errors.New("inotify not used")
	}
	fail := func(err error) (*Watcher, error) {
		if w.src != nil {
			w.src.Close()
		}
		return nil, err
	}
	// A file that changes while it is read is read again: there is no
	// previous policy to keep meanwhile.
	deadline := time.Now().Add(2 * time.Second)
	for {
		if err := w.Reload(); err != nil {
			return fail(err)
		}
		if w.cur.Load() != nil {
			return w, nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("policy %s: the file kept changing while it was read", cfg.Path))
		}
		time.Sleep(quiet)
	}
}

// Policy returns the policy in force. It never blocks and never returns nil.
func (w *Watcher) Policy() *policy.Policy { return w.cur.Load() }

// Path is the watched file.
func (w *Watcher) Path() string { return w.cfg.Path }

// Stats returns a snapshot of the watcher's counters. It never waits for
// a load.
func (w *Watcher) Stats() Stats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	s := w.stats
	s.Writing = w.writing.Load()
	return s
}

func (w *Watcher) loadedStamp() fileStamp {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stamp
}

// Reload reads the file now (SIGHUP). On a refused file the previous
// policy stays in force and the error is returned and logged. Once a
// policy is in force, a file that disappears or is empty is refused like
// a broken one: fail closed, since an empty policy would send every
// partner's mail with opportunistic TLS only. While the file is being
// written in place, Reload leaves it to the watcher, which reads it when
// the writer is done. When another load is running, Reload does not
// wait: that load reads the file once more when it ends.
func (w *Watcher) Reload() error {
	if w.writing.Load() {
		w.log.Info("policy file is being written; it is read when the writer has closed it", "path", w.cfg.Path)
		return nil
	}
	w.again.Store(true)
	var err error
	for w.again.Load() {
		if !w.loadMu.TryLock() {
			return nil // the load in progress sees again
		}
		for w.again.Swap(false) {
			err = w.load()
		}
		w.loadMu.Unlock()
	}
	return err
}

// load reads the file and puts it in force. The caller holds loadMu.
func (w *Watcher) load() error {
	first := w.cur.Load() == nil
	data, st, err := w.read()
	if errors.Is(err, errChanging) {
		// Not the file's fault: the next event or poll reads it again.
		w.log.Info("policy file changed while being read; reading it again when it settles", "path", w.cfg.Path)
		return nil
	}
	w.statsMu.Lock()
	w.stamp = st
	w.statsMu.Unlock()
	missing := os.IsNotExist(err) && first && w.cfg.MissingOK
	if missing {
		data, err = nil, nil
	}
	if err != nil {
		return w.refuse(err)
	}
	sum := sha256.Sum256(data)
	if !first && sum == w.sum {
		// Same content (a touch, the journal beside it changed, the
		// same file written again, or still the empty file the relay
		// started with): whatever was refused before is no longer
		// what is on disk.
		w.good()
		return nil
	}
	if !first && len(data) == 0 {
		return w.refuse(errors.New("the file is empty: taken for a write in progress (truncated, not yet written), " +
			"so the previous policy stays in force; to clear the policy, leave only a comment line in the file"))
	}
	f, err := policy.Parse(w.cfg.Path, data)
	if err != nil {
		return w.refuse(err)
	}
	p := f.Compile()
	prev := w.sum
	w.cur.Store(p)
	w.sum = sum
	w.statsMu.Lock()
	w.stats.Loads++
	w.stats.Generation++
	w.stats.LastLoad = time.Now()
	w.stats.Entries = p.Len()
	w.stats.SHA256 = hex.EncodeToString(sum[:])
	gen := w.stats.Generation
	w.statsMu.Unlock()
	w.good()
	if missing {
		w.log.Info("no policy file yet: an empty policy is in force until it is created", "path", w.cfg.Path)
	} else {
		w.log.Info("policy loaded", "path", w.cfg.Path, "entries", p.Len(), "generation", gen, "sha256", hex.EncodeToString(sum[:]))
	}
	if w.cfg.Loaded != nil {
		w.cfg.Loaded(Load{Path: w.cfg.Path, First: first, Prev: prev, Sum: sum, Size: len(data)})
	}
	return nil
}

// read reads the file within readTimeout. A read still running after it
// is left behind (a goroutine blocked in the kernel cannot be stopped),
// and until it returns every load is refused at once instead of piling
// up more blocked reads.
func (w *Watcher) read() ([]byte, fileStamp, error) {
	if !w.reading.CompareAndSwap(false, true) {
		return nil, unknownStamp, fmt.Errorf("an earlier read of the file has not returned after %v (hung file system?)", readTimeout)
	}
	type result struct {
		data []byte
		st   fileStamp
		err  error
	}
	done := make(chan result, 1)
	go func() {
		data, st, err := readRegular(w.cfg.Path, MaxSize)
		w.reading.Store(false) // before the result: the next load may start at once
		done <- result{data, st, err}
	}()
	t := time.NewTimer(readTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.data, r.st, r.err
	case <-t.C:
		return nil, unknownStamp, fmt.Errorf("reading the file took longer than %v (hung file system?)", readTimeout)
	}
}

// good clears a refusal: the file on disk is the policy in force.
func (w *Watcher) good() {
	w.statsMu.Lock()
	w.stats.LastError = ""
	w.statsMu.Unlock()
	w.cfg.Health.Clear(HealthPart)
}

func (w *Watcher) refuse(err error) error {
	err = fmt.Errorf("policy %s: %w", w.cfg.Path, err)
	w.statsMu.Lock()
	w.stats.Failures++
	w.stats.LastError = err.Error()
	w.statsMu.Unlock()
	if w.cur.Load() != nil {
		w.log.Error("policy file refused; the previous policy stays in force", "path", w.cfg.Path, "err", err)
		w.cfg.Health.Set(HealthPart, health.Degraded, "file refused, the previous policy stays in force: "+err.Error())
	}
	return err
}

// change is what the kernel told about the policy file.
type change int

const (
	changeWrite    change = iota // its content is being written in place
	changeClosed                 // a writer closed it
	changeAttr                   // mode, owner or times changed
	changeCreated                // a new file appeared under the name
	changeReplaced               // the name now means another file, or none
	changeLost                   // events were lost: anything may have happened
)

// source reports changes of the policy file (source_linux.go).
type source interface {
	Changes() <-chan change
	// Watch (re)establishes the watches; false while the directory
	// cannot be watched.
	Watch() bool
	Close() error
}

// Run keeps the policy current until ctx is done. Call it once.
//
// With inotify: a write in place marks the file as being written; only
// when a writer closes it and nothing writes for quiet is it read, so
// neither the empty file after a truncate nor half of a slow write is
// ever put in force. A rename, create or delete is read after settle.
// Without inotify (or if it lost events) a changed file is read once two
// polls in a row found it unchanged.
func (w *Watcher) Run(ctx context.Context) error {
	src := w.src
	var changes <-chan change
	if src == nil {
		w.log.Warn("cannot watch the policy file; polling instead", "err", w.srcErr)
	} else {
		defer src.Close()
		changes = src.Changes()
		if !src.Watch() {
			dir := filepath.Dir(w.cfg.Path)
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				// A fresh install: nothing is wrong.
				w.log.Info("the policy directory does not exist yet; polling finds it when it is created", "dir", dir)
			} else {
				w.log.Warn("cannot watch the policy directory; polling until it can", "dir", dir)
			}
		}
	}
	defer w.writing.Store(false)

	tick := time.NewTicker(poll)
	defer tick.Stop()
	var (
		due          <-chan time.Time // a read is scheduled
		writingSince time.Time        // zero: no write in progress
		reported     bool             // the stalled write is on the board
		lastPoll     fileStamp
	)
	setWriting := func(on bool) {
		if on && writingSince.IsZero() {
			writingSince = time.Now()
		}
		if !on {
			writingSince, reported = time.Time{}, false
		}
		w.writing.Store(on)
	}
	reload := func() {
		w.Reload()
		if src != nil {
			src.Watch() // the name may mean a new file now
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-changes:
			switch c {
			case changeWrite:
				setWriting(true)
				due = nil
			case changeClosed:
				setWriting(false)
				due = time.After(quiet)
			case changeCreated:
				// A new file is usually written next (cp to a
				// missing name); give the writer time to start.
				setWriting(false)
				due = time.After(quiet)
			case changeAttr:
				if writingSince.IsZero() {
					due = time.After(settle)
				}
			case changeReplaced:
				setWriting(false)
				due = time.After(settle)
			case changeLost:
				setWriting(false)
				due = time.After(quiet)
			}
		case <-due:
			due = nil
			reload()
		case <-tick.C:
			if src != nil {
				src.Watch()
			}
			if !writingSince.IsZero() {
				if !reported && time.Since(writingSince) > writingReport {
					reported = true
					w.log.Warn("policy file written in place but not closed yet; the previous policy stays in force", "path", w.cfg.Path, "since", writingSince)
					w.cfg.Health.Set(HealthPart, health.Degraded, fmt.Sprintf(
						"file being written in place since %s and not closed yet; the previous policy stays in force",
						writingSince.UTC().Format(time.RFC3339)))
				}
				continue
			}
			if due != nil {
				continue
			}
			st := stampOf(w.cfg.Path)
			if st != w.loadedStamp() && st == lastPoll {
				reload()
			}
			lastPoll = st
		}
	}
}
