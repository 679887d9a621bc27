// Package auditgate stands between the relay and its audit log so that
// no mail leaves without its record (issue 10, docs/audit.md "When the
// audit log cannot be written"). While the log cannot be written (disk
// full, I/O error), the records of deliveries already made are kept,
// durably, in a backlog in the spool; delivery is held and new mail is
// refused with a 4xx until the backlog has been written to the log, which
// a retry loop with back-off attempts by itself.
package auditgate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// Writer is the audit log: *audit.Log. Write must leave nothing of a
// batch in the log when it fails (audit.Log cuts a failed batch back).
type Writer interface {
	Write(recs ...audit.Record) error
}

// Part is the gate's name on the health board.
const Part = "audit"

// Back-off of the retry loop while the log cannot be written.
const (
	MinRetry = 500 * time.Millisecond
	MaxRetry = 30 * time.Second
)

// Config configures a Gate.
type Config struct {
	Log Writer
	// Dir holds the backlog: one file per batch that could not be
	// written, `<unix nanoseconds>-<n>.json`, oldest first by name.
	// It must be on another filesystem than the log to help when the
	// log's is full: the relay uses `<spool>/audit-backlog`.
	Dir    string
	Health *health.Board // nil is fine
	Logger *slog.Logger
}

// Gate is a Writer that never loses a record and holds delivery while the
// log is behind. It is safe for concurrent use.
type Gate struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// backlog is what waits for the log, oldest first.
	backlog []batch
	lastErr error
	seq     int
	// held is Held's answer, kept current under mu and read without it:
	// every MAIL FROM and every dispatch asks, and must not wait behind
	// an audit fsync.
	held atomic.Pointer[error]
}

// batch is one Write's records; file is where they are kept ("" when
// only in memory because the spool could not take them either).
type batch struct {
	recs []audit.Record
	file string
}

// Open reads the backlog a previous run left (the relay held delivery
// until it was written; a crash or stop came first) and returns a gate
// that holds delivery until it is written.
func Open(cfg Config) (*Gate, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Gate{cfg: cfg, log: cfg.Logger}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit backlog: %w", err)
	}
	ents, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("audit backlog: %w", err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	for _, name := range names {
		p := filepath.Join(cfg.Dir, name)
		b, err := os.ReadFile(p)
		var recs []audit.Record
		if err == nil {
			err = json.Unmarshal(b, &recs)
		}
		if err != nil {
			// Fail closed: keep holding until an operator looks.
			return nil, fmt.Errorf("audit backlog %s cannot be read (move it away once its records are accounted for): %w", p, err)
		}
		g.backlog = append(g.backlog, batch{recs: recs, file: p})
	}
	if len(g.backlog) > 0 {
		g.lastErr = errors.New("records of an earlier run are waiting to be written")
		g.report()
		g.log.Warn("audit records wait in the backlog from an earlier run; delivery holds until they are written", "batches", len(g.backlog))
	}
	return g, nil
}

// Write writes recs to the log, after any backlog. When the log cannot be
// written they join the backlog, kept durably in Dir, and Write returns
// nil: the records are safe and the caller may treat the attempt as
// recorded. It returns an error only when they could not be kept durably
// either (they are then held in memory and written first when the log is
// back); the caller must then not forget the attempt (delivery keeps the
// message queued).
func (g *Gate) Write(recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.backlog) > 0 {
		g.flush() // the backlog goes first, in order
	}
	if len(g.backlog) == 0 {
		err := g.cfg.Log.Write(recs...)
		if err == nil {
			if g.held.Load() != nil {
				g.report() // the backlog was just written
			}
			return nil
		}
		g.lastErr = err
		g.log.Error("the audit log cannot be written: delivery holds and new mail is refused until it can; the records are kept in the backlog",
			"err", err, "backlog", g.cfg.Dir)
	}
	err := g.keep(recs)
	g.report()
	return err
}

// keep appends recs to the backlog, durably when it can.
func (g *Gate) keep(recs []audit.Record) error {
	g.seq++
	p := filepath.Join(g.cfg.Dir, fmt.Sprintf("%019d-%06d.json", time.Now().UnixNano(), g.seq))
	err := writeFileSync(p, recs)
	if err != nil {
		g.log.Error("the audit backlog cannot be written either; records held in memory, the message stays queued", "err", err)
		p = ""
	}
	g.backlog = append(g.backlog, batch{recs: slices.Clone(recs), file: p})
	if err != nil {
		return fmt.Errorf("audit log and backlog both unwritable: %w", err)
	}
	return nil
}

// flush writes the backlog to the log in order, removing each batch's
// file once its records are durable in the log (a crash in between
// writes a batch twice, never not at all). Called with g.mu held.
func (g *Gate) flush() error {
	for len(g.backlog) > 0 {
		b := g.backlog[0]
		if err := g.cfg.Log.Write(b.recs...); err != nil {
			g.lastErr = err
			return err
		}
		if b.file != "" {
			if err := os.Remove(b.file); err != nil {
				g.log.Error("audit backlog batch written but not removed; it will be written again", "path", b.file, "err", err)
			}
		}
		g.backlog = g.backlog[1:]
	}
	return nil
}

// Held says why delivery must not start and new mail must be refused, or
// nil when the log is current.
func (g *Gate) Held() error {
	if p := g.held.Load(); p != nil {
		return *p
	}
	return nil
}

// report puts the gate's state on the health board and in Held; g.mu
// held.
func (g *Gate) report() {
	if len(g.backlog) == 0 {
		g.held.Store(nil)
		g.cfg.Health.Clear(Part)
		return
	}
	err := fmt.Errorf("the audit log cannot be written (%v); %d batches of records wait", g.lastErr, len(g.backlog))
	g.held.Store(&err)
	g.cfg.Health.Set(Part, health.Failing, fmt.Sprintf(
		"audit log cannot be written (%v): delivery paused, new mail refused (451), %d batches of records kept in %s",
		g.lastErr, len(g.backlog), g.cfg.Dir))
}

// Run retries the backlog with back-off until ctx ends, and lifts the
// hold as soon as it is written.
func (g *Gate) Run(ctx context.Context) {
	wait := MinRetry
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		behind := len(g.backlog)
		var err error
		if behind > 0 {
			if err = g.flush(); err == nil {
				g.log.Info("the audit log is writable again: backlog written, delivery resumes", "batches", behind)
			}
			g.report()
		}
		g.mu.Unlock()
		switch {
		case behind == 0 || err == nil:
			wait = MinRetry
		default:
			wait = min(2*wait, MaxRetry)
		}
		t.Reset(wait)
	}
}

// writeFileSync writes v as JSON to path durably (safeio.WriteFile:
// temporary file, fsync, rename, directory fsync).
func writeFileSync(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return safeio.WriteFile(path, b, 0o600)
}
