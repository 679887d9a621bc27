// Package logset reads an audit log the way an auditor finds it on disk:
// the live file plus its rotated siblings (audit.log.1, audit.log-20260101,
// audit.log.2.gz …), oldest first, line by line, into audit.Record.
//
// It reads rather than verifies: a line that is not a record (the torn
// last line a crash leaves, docs/audit.md) is reported to the caller and
// skipped, so one bad line does not hide a year of records. The hash chain
// is `smgctl audit verify`'s job.
package logset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
)

// File is one file of the set.
type File struct {
	Path string
	// First is the time of its first record; zero when it has none.
	First time.Time
}

// maxLine bounds one line; the relay's own reader uses the same bound.
const maxLine = 1 << 20

// Files returns the audit log at path and every rotated sibling — the
// files matching path* — oldest first. Order is by each file's first
// record, so it holds whatever naming the rotation uses (numbered,
// dated, compressed); files without a record sort by name. A missing
// live file is fine as long as something matches.
func Files(path string) ([]File, error) {
	matches, err := filepath.Glob(globEscape(path) + "*")
	if err != nil {
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	var files []File
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || !st.Mode().IsRegular() || !sibling(path, m) {
			continue
		}
		first, err := firstTime(m)
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: m, First: first})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("audit log %s: %w", path, fs.ErrNotExist)
	}
	slices.SortStableFunc(files, func(a, b File) int {
		if c := a.First.Compare(b.First); c != 0 && !a.First.IsZero() && !b.First.IsZero() {
			return c
		}
		return strings.Compare(a.Path, b.Path)
	})
	return files, nil
}

// sibling keeps path itself and names that extend it after a separator
// (audit.log.1, audit.log-2026…), not audit.logger or a lock file.
func sibling(path, m string) bool {
	if m == path {
		return true
	}
	rest := m[len(path):]
	if rest == "" || (rest[0] != '.' && rest[0] != '-' && rest[0] != '_') {
		return false
	}
	// The relay's seal (audit.SealPath, and the .seal.mismatch-… copies
	// it keeps) describes the log; it is not part of it.
	if strings.Contains(rest, ".seal") {
		return false
	}
	for _, skip := range []string{".lock", ".tmp", ".swp", ".journal"} {
		if strings.HasSuffix(rest, skip) {
			return false
		}
	}
	return true
}

// globEscape quotes the glob metacharacters of a literal path.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// firstTime reads the time of a file's first readable record.
func firstTime(path string) (time.Time, error) {
	var first time.Time
	stop := errors.New("stop")
	err := eachLine(context.Background(), path, func(line []byte, _ int) error {
		var rec audit.Record
		if Decode(line, &rec) == nil {
			first = rec.Time
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		return time.Time{}, err
	}
	return first, nil
}

// Open opens one file of the set, decompressing a .gz (logrotate's
// compress) on the fly.
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	z, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return gzipFile{z, f}, nil
}

type gzipFile struct {
	*gzip.Reader
	f *os.File
}

func (g gzipFile) Close() error {
	g.Reader.Close()
	return g.f.Close()
}

// Lines calls fn with every line of every file, in order, with the file
// and the 1-based line number. The line's bytes are only valid during the
// call. A non-nil error from fn stops the walk and is returned.
func Lines(ctx context.Context, files []File, fn func(file string, n int, line []byte) error) error {
	for _, f := range files {
		if err := eachLine(ctx, f.Path, func(line []byte, n int) error { return fn(f.Path, n, line) }); err != nil {
			return err
		}
	}
	return nil
}

func eachLine(ctx context.Context, path string, fn func([]byte, int) error) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 256<<10), maxLine)
	for n := 1; sc.Scan(); n++ {
		if n&0xfff == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		line := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if len(line) == 0 {
			continue
		}
		if err := fn(line, n); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Log is one relay's audit log: the path it was named by and its files,
// oldest first. In a fleet each relay keeps its own log, so the path is
// what tells the relays apart (the records do not name their relay).
type Log struct {
	Path  string
	Files []File
}

// Logs finds the files of each path (Files). Two paths that share a file
// are refused: the same log named twice, or two relays' logs in one
// directory where one's name extends the other's (audit.log and
// audit.log-b: the second would be read as a rotated file of the first).
// Either way its records would be counted twice.
func Logs(paths []string) ([]Log, error) {
	owner := map[string]string{}
	var logs []Log
	for _, p := range paths {
		files, err := Files(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if other, dup := owner[f.Path]; dup {
				return nil, fmt.Errorf("audit logs %s and %s both hold %s: name each log once, and keep each relay's log where no other log's name extends it (a directory per relay)", other, p, f.Path)
			}
			owner[f.Path] = p
		}
		logs = append(logs, Log{Path: p, Files: files})
	}
	return logs, nil
}

// AllFiles is the files of every log, log after log.
func AllFiles(logs []Log) []File {
	var all []File
	for _, l := range logs {
		all = append(all, l.Files...)
	}
	return all
}
