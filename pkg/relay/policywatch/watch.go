// Package policywatch keeps the relay's policy current: it reloads the
// policy file within a second of a change (B6) and on demand (SIGHUP), and
// refuses a file that does not parse, leaving the previous policy in force.
package policywatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/smgctl/smgctl/pkg/policy"
)

// settle is how long the watcher waits after a file event for more
// events of the same edit (an editor's write, chmod and rename) before it
// reads the file once.
const settle = 30 * time.Millisecond

// poll is the safety net interval: inotify can overflow or the directory
// may not exist yet, so the file's identity is also checked periodically.
const poll = 500 * time.Millisecond

// Stats is what the watcher has done, for metrics and /healthz.
type Stats struct {
	Loads      uint64    // successful (re)loads, the first included
	Failures   uint64    // refused files
	LastLoad   time.Time // of the policy in force
	LastError  string    // why the last refused file was refused; "" after a good load
	Entries    int       // entries of the policy in force
	Generation uint64    // increments with each policy put in force
}

// Watcher holds the policy in force.
type Watcher struct {
	path      string
	missingOK bool
	log       *slog.Logger

	cur atomic.Pointer[policy.Policy]

	mu    sync.Mutex // serialises loads; guards the fields below
	sum   [32]byte   // of the bytes of the policy in force
	stamp fileStamp
	stats Stats
}

// New loads the policy at path; a file that does not parse is an error,
// since there is no previous policy to keep. A missing file is an empty
// policy only when missingOK (the documented default path of a fresh
// install, which enforces nothing yet); a path the operator named must
// exist, so a typo cannot silently turn enforcement off.
func New(path string, missingOK bool, log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{path: path, missingOK: missingOK, log: log}
	if err := w.Reload(); err != nil {
		return nil, err
	}
	return w, nil
}

// Policy returns the policy in force. It never blocks and never returns nil.
func (w *Watcher) Policy() *policy.Policy { return w.cur.Load() }

// Path is the watched file.
func (w *Watcher) Path() string { return w.path }

// Stats returns a snapshot of the watcher's counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Reload reads the file now. On a parse error the previous policy stays
// in force and the error is returned and logged. Once a policy is in
// force, a file that disappears is refused like a broken one: fail
// closed, since an empty policy would send every partner's mail with
// opportunistic TLS only. To clear the list, empty the file.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stamp = stampOf(w.path)
	data, err := os.ReadFile(w.path)
	if os.IsNotExist(err) && w.cur.Load() == nil && w.missingOK {
		data, err = nil, nil
	}
	if err != nil {
		return w.refuse(err)
	}
	sum := sha256.Sum256(data)
	if w.cur.Load() != nil && sum == w.sum {
		return nil // same content: e.g. a touch, or the journal beside it changed
	}
	f, err := policy.Parse(w.path, data)
	if err != nil {
		return w.refuse(err)
	}
	p := f.Compile()
	w.cur.Store(p)
	w.sum = sum
	w.stats.Loads++
	w.stats.Generation++
	w.stats.LastLoad = time.Now()
	w.stats.LastError = ""
	w.stats.Entries = p.Len()
	w.log.Info("policy loaded", "path", w.path, "entries", p.Len(), "generation", w.stats.Generation)
	return nil
}

func (w *Watcher) refuse(err error) error {
	w.stats.Failures++
	w.stats.LastError = err.Error()
	if w.cur.Load() != nil {
		w.log.Error("policy file refused; the previous policy stays in force", "path", w.path, "err", err)
	}
	return fmt.Errorf("policy %s: %w", w.path, err)
}

// Run watches the file's directory until ctx is done. Watching the
// directory, not the file, sees the new file an editor or `smgctl policy`
// renames into place (the old inode's watch would go quiet).
func (w *Watcher) Run(ctx context.Context) error {
	dir := filepath.Dir(w.path)
	base := filepath.Base(w.path)
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy watch: %w", err)
	}
	defer fw.Close()
	watching := fw.Add(dir) == nil
	if !watching {
		w.log.Warn("cannot watch the policy directory; polling instead", "dir", dir)
	}

	tick := time.NewTicker(poll)
	defer tick.Stop()
	var settleC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			// Our file, or a Kubernetes-style ..data symlink swap.
			name := filepath.Base(ev.Name)
			if name == base || strings.HasPrefix(name, "..") {
				settleC = time.After(settle)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.log.Warn("policy watch", "err", err)
			settleC = time.After(settle)
		case <-settleC:
			settleC = nil
			w.Reload()
		case <-tick.C:
			if !watching {
				watching = fw.Add(dir) == nil
			}
			w.mu.Lock()
			changed := stampOf(w.path) != w.stamp
			w.mu.Unlock()
			if changed {
				w.Reload()
			}
		}
	}
}

// fileStamp identifies a version of the file cheaply.
type fileStamp struct {
	exists bool
	ino    uint64
	size   int64
	mtime  time.Time
}

func stampOf(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{exists: true, ino: inode(st), size: st.Size(), mtime: st.ModTime()}
}
