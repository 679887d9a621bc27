// Package store edits a policy file safely: under an exclusive lock,
// through a temporary file that is fsync'd and renamed into place, and
// with every change appended to a hash-chained journal beside the file
// (SPEC §2 "Edits are for scripts as much as for people").
//
// Readers (the relay, `policy list`) need no lock: they only ever see the
// old file or the new one.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// DefaultLockTimeout is how long an edit waits for another edit by
// default. Edits hold the lock for milliseconds; anything longer is a
// person holding it on purpose (flock(1) around a hand edit).
const DefaultLockTimeout = 10 * time.Second

// Store edits the policy file at Path. Its lock is `<Path>.lock` and its
// journal `<Path>.journal`.
type Store struct {
	Path string
	// LockTimeout bounds the wait for another edit's lock; 0 means
	// DefaultLockTimeout.
	LockTimeout time.Duration
	Logger      *slog.Logger
	// Now stamps journal records; nil means time.Now.
	Now func() time.Time
}

// LockPath is the file whose flock(2) serialises edits.
func (s *Store) LockPath() string { return s.Path + ".lock" }

// JournalPath is the change journal beside the policy file.
func (s *Store) JournalPath() string { return s.Path + ".journal" }

// Change is what one edit did, or would do, to one target.
type Change struct {
	Target policy.Target
	Before *policy.Entry // nil: the target had no entry
	After  *policy.Entry // nil: the target has no entry afterwards
}

// Changed reports whether the edit altered the file for this target.
func (c Change) Changed() bool {
	switch {
	case c.Before == nil && c.After == nil:
		return false
	case c.Before == nil || c.After == nil:
		return true
	}
	return c.Before.Options != c.After.Options || c.Before.Comment != c.After.Comment
}

// Kind is add, update or remove for a change; "" when nothing changed.
func (c Change) Kind() Action {
	switch {
	case !c.Changed():
		return ""
	case c.Before == nil:
		return ActionAdd
	case c.After == nil:
		return ActionRemove
	}
	return ActionUpdate
}

// EntryMap is an entry's options as the journal records them: every
// option by its file name, plus "comment" when there is one; nil for no
// entry.
func EntryMap(e *policy.Entry) map[string]string {
	if e == nil {
		return nil
	}
	m := e.Options.Map()
	if e.Comment != "" {
		m["comment"] = e.Comment
	}
	return m
}

// CheckComment refuses a comment that could not stay on the entry's line.
func CheckComment(c string) error {
	for _, r := range c {
		if r < ' ' && r != '\t' || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("comment: control character %q not allowed", r)
		}
	}
	return nil
}

// Add lists t with the options in set (option name → value, as in a
// policy file): a new entry gets them over the defaults; an existing one
// gets them over its current options, in place, so options not named
// keep their values — raising bits never silently drops verify=cert. An
// empty comment keeps the existing one. When the entry is already as
// asked, neither the file nor the journal is touched.
func (s *Store) Add(ctx context.Context, actor string, t policy.Target, set map[string]string, comment string) (Change, error) {
	// Check every value before taking the lock: a refused edit must not
	// even wait.
	probe := policy.DefaultOptions()
	if err := applyOptions(&probe, set); err != nil {
		return Change{}, err
	}
	if err := CheckComment(comment); err != nil {
		return Change{}, err
	}
	changes, err := s.edit(ctx, actor, false, func(f *policy.File) []Change {
		e := policy.Entry{Target: t, Options: policy.DefaultOptions(), Comment: comment}
		if old := f.Get(t); old != nil {
			e.Options = old.Options
		}
		applyOptions(&e.Options, set) // cannot fail: checked above
		return []Change{setEntry(f, e)}
	}, func(c Change) Action { return c.Kind() })
	if err != nil {
		return Change{}, err
	}
	return changes[0], nil
}

// applyOptions sets options in canonical order, so the first bad one
// is the one reported.
func applyOptions(o *policy.Options, set map[string]string) error {
	for _, k := range policy.OptionKeys() {
		if v, ok := set[k]; ok {
			if err := o.Set(k, v); err != nil {
				return err
			}
		}
	}
	for k := range set {
		if !slices.Contains(policy.OptionKeys(), k) {
			return o.Set(k, set[k]) // reports the unknown key
		}
	}
	return nil
}

// Remove deletes the entry for t. Removing an absent entry is not an
// error: it changes nothing and returns a Change that is not Changed.
func (s *Store) Remove(ctx context.Context, actor string, t policy.Target) (Change, error) {
	changes, err := s.edit(ctx, actor, false, func(f *policy.File) []Change {
		c := Change{Target: t}
		if old := f.Get(t); old != nil {
			before := *old
			c.Before = &before
			f.Remove(t)
		}
		return []Change{c}
	}, func(Change) Action { return ActionRemove })
	if err != nil {
		return Change{}, err
	}
	return changes[0], nil
}

// Import merges entries into the file in one edit: each is added, or
// replaces an existing entry's options in place; entries already as
// given change nothing. Each changed target gets a journal record with
// action "import". With dryRun the changes are computed against the
// current file and nothing is locked or written.
func (s *Store) Import(ctx context.Context, actor string, entries []policy.Entry, dryRun bool) ([]Change, error) {
	for _, e := range entries {
		if err := CheckComment(e.Comment); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Target, err)
		}
	}
	return s.edit(ctx, actor, dryRun, func(f *policy.File) []Change {
		cs := make([]Change, 0, len(entries))
		for _, e := range entries {
			cs = append(cs, setEntry(f, e))
		}
		return cs
	}, func(Change) Action { return ActionImport })
}

// setEntry applies one entry to f and reports the change.
func setEntry(f *policy.File, e policy.Entry) Change {
	c := Change{Target: e.Target}
	if old := f.Get(e.Target); old != nil {
		before := *old
		c.Before = &before
	}
	e.Line = 0
	f.Set(e)
	after := *f.Get(e.Target)
	c.After = &after
	return c
}

// edit is the one path every change takes: lock, read and parse the
// current file, apply, check the result parses, write it to a temporary
// file and fsync, journal, rename into place, fsync the directory. A
// file that does not parse is refused before anything is written, so a
// refused edit changes neither the file nor the journal.
//
// The journal is written before the rename: a crash between the two
// leaves a record of a change that did not land, never a change without
// a record.
func (s *Store) edit(ctx context.Context, actor string, dryRun bool, apply func(*policy.File) []Change, action func(Change) Action) ([]Change, error) {
	if !dryRun {
		timeout := s.LockTimeout
		if timeout == 0 {
			timeout = DefaultLockTimeout
		}
		unlock, err := lock(ctx, s.LockPath(), timeout)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	f, err := policy.ReadFile(s.Path)
	if err != nil {
		return nil, err
	}
	changes := apply(f)
	var recs []Record
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	at := now().UTC()
	for _, c := range changes {
		if !c.Changed() {
			continue
		}
		recs = append(recs, Record{
			Time:   at,
			Actor:  actor,
			Action: action(c),
			Target: c.Target.Key(),
			Before: EntryMap(c.Before),
			After:  EntryMap(c.After),
		})
	}
	if dryRun || len(recs) == 0 {
		return changes, nil
	}
	data := f.Bytes()
	// Fail closed: never put in place a file the relay would refuse.
	if len(data) > policy.MaxFileSize {
		return nil, fmt.Errorf("edit would make the file %d bytes, over the %d MiB the relay reads, not written", len(data), policy.MaxFileSize>>20)
	}
	if _, err := policy.Parse(s.Path, data); err != nil {
		return nil, fmt.Errorf("edit would make the file invalid, not written: %w", err)
	}
	sum := sha256.Sum256(data)
	for i := range recs {
		recs[i].SHA256 = hex.EncodeToString(sum[:])
	}
	p, err := safeio.Prepare(s.Path, data, 0o644)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", s.Path, err)
	}
	if err := appendJournal(s.JournalPath(), recs); err != nil {
		p.Abort()
		return nil, err
	}
	if err := p.Commit(); err != nil {
		return nil, fmt.Errorf("replace %s (the journal already records the change): %w", s.Path, err)
	}
	if s.Logger != nil {
		targets := make([]string, len(recs))
		for i, r := range recs {
			targets[i] = string(r.Action) + " " + r.Target
		}
		s.Logger.LogAttrs(ctx, slog.LevelInfo, "policy edited",
			slog.String("file", s.Path), slog.String("actor", actor),
			slog.String("changes", strings.Join(targets, ", ")))
	}
	return changes, nil
}
