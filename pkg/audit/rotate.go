package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/safeio"
)

// Options tune a Log. The zero value never rotates.
type Options struct {
	// MaxSize rotates the live file before a batch that would make it
	// larger than this many bytes (0: no size limit). A single batch
	// larger than MaxSize still goes into one file.
	MaxSize int64
	// MaxAge rotates the live file before a batch when its first record
	// is older than this (0: no age limit). An idle log is not rotated
	// until the next record arrives.
	MaxAge time.Duration
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// rotStamp names rotated files: fixed width, so that sorting the names
// sorts the files in chain order; UTC with milliseconds.
const rotStamp = "20060102T150405.000Z"

// rotSuffix matches the suffix rotStamp produces.
var rotSuffix = regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z$`)

// Rotated lists the rotated files of the log at path, oldest first:
// `<path>.<UTC time of rotation>`, e.g. audit.log.20260102T030405.123Z.
// Each file's first line chains to the last line of the one before it,
// and the live file's first line to the newest of them.
func Rotated(path string) ([]string, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		name := e.Name()
		if suf, ok := strings.CutPrefix(name, base+"."); ok && rotSuffix.MatchString(suf) && e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, name))
		}
	}
	slices.Sort(out)
	return out, nil
}

// IsRotated says whether path names a rotated file (by its suffix).
func IsRotated(path string) bool {
	base := filepath.Base(path)
	i := strings.LastIndexByte(base, '.')
	// The stamp itself holds one dot: "<log>.20060102T150405.000Z".
	if i < 0 {
		return false
	}
	j := strings.LastIndexByte(base[:i], '.')
	return j > 0 && rotSuffix.MatchString(base[j+1:])
}

// Files is the whole chain of the log at path in order: the rotated
// files, then the live file. Readers that want every record (audit
// report, trace) read these in this order.
func Files(path string) ([]string, error) {
	rot, err := Rotated(path)
	if err != nil {
		return nil, err
	}
	return append(rot, path), nil
}

// rotationDue says whether the live file must be rotated before a batch
// of n bytes is appended.
func (l *Log) rotationDue(n int64, now time.Time) bool {
	if l.state.Lines == 0 {
		return false
	}
	if l.opt.MaxSize > 0 && l.state.Size+n > l.opt.MaxSize {
		return true
	}
	return l.opt.MaxAge > 0 && !l.state.Start.IsZero() && now.Sub(l.state.Start) >= l.opt.MaxAge
}

// rotate renames the live file to its rotated name and starts a new live
// file whose first line will chain to the old file's last line (l.prev is
// kept), so the chain runs on across files. Called with l.mu held.
//
// Order matters for crashes: the rename is made durable (directory
// fsync) before the new seal is written; a crash in between leaves a
// seal that describes the newest rotated file exactly, which Open
// recognises.
func (l *Log) rotate(now time.Time) error {
	name, err := l.rotatedName(now)
	if err != nil {
		return err
	}
	if err := os.Rename(l.path, name); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		// Keep writing to the renamed file rather than lose records;
		// the chain is intact either way.
		return fmt.Errorf("opening a new audit log after rotation (records continue in %s): %w", name, err)
	}
	old := l.f
	l.f = f
	old.Close()
	if err := safeio.SyncDir(filepath.Dir(l.path)); err != nil {
		return err
	}
	l.state = FileState{FirstPrev: l.prev}
	l.log.Info("audit log rotated", "rotated", name, "prev", l.prev)
	return l.seal(now)
}

// rotatedName is the name for a file rotated at now, later than every
// existing rotated name even when the clock stepped back, so that name
// order stays chain order.
func (l *Log) rotatedName(now time.Time) (string, error) {
	rot, err := Rotated(l.path)
	if err != nil {
		return "", err
	}
	t := now.UTC().Truncate(time.Millisecond)
	if len(rot) > 0 {
		newest := rot[len(rot)-1]
		last, err := time.Parse(rotStamp, strings.TrimPrefix(filepath.Base(newest), filepath.Base(l.path)+"."))
		if err == nil && !t.After(last) {
			t = last.Add(time.Millisecond)
		}
	}
	return l.path + "." + t.Format(rotStamp), nil
}
