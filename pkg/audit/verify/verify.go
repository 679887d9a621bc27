// Package verify checks the hash chains smgctl keeps for tamper evidence:
// the relay's audit log (with its rotated files and its seal) and the
// policy change journal. Both are JSON lines whose "prev" is the hex
// SHA-256 of the line before (pkg/relay/audit, pkg/policy/store); this
// package walks a chain and names the first line that cannot be trusted:
// altered, inserted, or followed by missing lines.
//
// What is and is not detectable is documented in docs/audit.md.
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/smgctl/smgctl/pkg/hashchain"

	"github.com/smgctl/smgctl/pkg/relay/audit"
)

// Kind is what a chain records.
type Kind string

const (
	AuditLog Kind = "audit-log"
	Journal  Kind = "policy-journal"
)

// Break is where a chain stops being trustworthy: the first line that was
// altered or inserted, or after which lines are missing.
type Break struct {
	File string `json:"file"`
	Line int64  `json:"line"` // 1-based; 0 when the finding is about a whole file
	Msg  string `json:"message"`
}

func (b *Break) Error() string {
	if b.Line == 0 {
		return fmt.Sprintf("%s: %s", b.File, b.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", b.File, b.Line, b.Msg)
}

// FileResult is one file of a chain.
type FileResult struct {
	Path  string `json:"path"`
	Lines int64  `json:"lines"`
}

// Report is the outcome of verifying one chain.
type Report struct {
	Kind  Kind         `json:"kind"`
	Path  string       `json:"path"` // the log or journal asked for
	Files []FileResult `json:"files"`
	Lines int64        `json:"lines"` // lines read in all files
	// Last is the hash of the chain's last line: record it elsewhere to
	// extend the evidence beyond this host.
	Last string `json:"last"`
	// Sealed: an audit log seal was found and checked.
	Sealed bool `json:"sealed"`
	// MidChain: the oldest file does not start a chain (its first line
	// chains to a file that is no longer there, e.g. removed by
	// retention). Its first line cannot be checked.
	MidChain bool   `json:"mid_chain"`
	Break    *Break `json:"break"` // nil when the chain is intact
}

// OK says the chain verified.
func (r Report) OK() bool { return r.Break == nil }

// Detect says what the file at path is: a policy journal when its name
// ends in ".journal" or its first record has an "action", else an audit
// log.
func Detect(path string) Kind {
	if strings.HasSuffix(path, ".journal") {
		return Journal
	}
	f, err := os.Open(path)
	if err != nil {
		return AuditLog
	}
	defer f.Close()
	var buf [4096]byte
	n, _ := io.ReadFull(f, buf[:])
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	var probe struct {
		Action *string `json:"action"`
		Event  *string `json:"event"`
	}
	if json.Unmarshal(line, &probe) == nil && probe.Action != nil && probe.Event == nil {
		return Journal
	}
	return AuditLog
}

// Path verifies the chain at path as Detect classifies it.
func Path(ctx context.Context, path string) (Report, error) {
	if Detect(path) == Journal {
		return JournalFile(ctx, path)
	}
	return Log(ctx, path)
}

// ErrNothing means there is no file to verify at the path given.
var ErrNothing = errors.New("no such log or journal")

// Log verifies an audit log as one chain: its rotated files oldest first
// (audit.Rotated), then the live file, then the seal. A rotated file given
// as path is verified on its own. It returns an error only when the files
// cannot be read; a broken chain is Report.Break.
func Log(ctx context.Context, path string) (Report, error) {
	rep := Report{Kind: AuditLog, Path: path}
	seal, sealed, sealErr := audit.ReadSeal(path)
	rot, err := audit.Rotated(path)
	if err != nil {
		return rep, err
	}
	_, statErr := os.Stat(path)
	live := statErr == nil
	if statErr != nil && !errors.Is(statErr, os.ErrNotExist) {
		return rep, statErr
	}
	evidence, _ := filepath.Glob(audit.MismatchPrefix(path) + "*")
	if !live && !sealed && len(rot) == 0 {
		return rep, fmt.Errorf("%s: %w", path, ErrNothing)
	}
	files := append(rot, path)
	w := newWalker(&rep)
	// The first file starts the chain ("") unless it is a rotated file
	// whose predecessors were removed, or the live file whose seal says
	// what it follows.
	switch {
	case len(rot) > 0 || audit.IsRotated(path):
		w.anyStart = true
	case sealed && sealErr == nil:
		w.expect = seal.FirstPrev
	}
	if sealed && sealErr == nil {
		w.sealFor, w.sealLine = path, seal.Lines
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if f == path && !live {
			rep.Break = &Break{File: path, Msg: "the live audit log is missing"}
			if sealed {
				rep.Break.Msg += fmt.Sprintf("; its seal records %d lines", seal.Lines)
			}
			return rep, nil
		}
		if done, err := w.file(f); err != nil || done {
			return rep, err
		}
	}
	if b := w.finish(); b != nil {
		rep.Break = b
		return rep, nil
	}
	switch {
	case sealErr != nil:
		rep.Break = &Break{File: audit.SealPath(path), Msg: sealErr.Error()}
	case sealed:
		rep.Sealed = true
		rep.Break = checkSeal(path, seal, w)
	}
	if rep.Break == nil && len(evidence) > 0 {
		b, _ := os.ReadFile(evidence[0])
		rep.Break = &Break{File: evidence[0], Msg: fmt.Sprintf(
			"the relay found the log did not match this seal when it started (lines removed or changed while it was down): %s",
			strings.TrimSpace(string(b)))}
	}
	return rep, nil
}

// checkSeal compares the live file with its seal. The seal may lag the
// file (it is written after each batch), never lead it.
func checkSeal(path string, s audit.Seal, w *walker) *Break {
	fileLines := w.fileLines
	if w.firstPrevOfLive != nil && *w.firstPrevOfLive != s.FirstPrev {
		return &Break{File: path, Line: 1, Msg: fmt.Sprintf("does not start where its seal says: prev is %q, the seal says %q", *w.firstPrevOfLive, s.FirstPrev)}
	}
	switch {
	case s.Lines == 0:
		if fileLines == 0 && w.lastHash != s.FirstPrev {
			return &Break{File: path, Line: 1, Msg: fmt.Sprintf("missing: the seal says the chain continues from %s, but the last line before hashes to %q", s.FirstPrev, w.lastHash)}
		}
	case fileLines < s.Lines:
		return &Break{File: path, Line: fileLines + 1, Msg: fmt.Sprintf(
			"missing: the seal records %d lines, the file ends after line %d (truncated)", s.Lines, fileLines)}
	case w.sealHash != s.Last:
		return &Break{File: path, Line: s.Lines, Msg: fmt.Sprintf(
			"altered after it was sealed: it hashes to %s, the seal records %s", w.sealHash, s.Last)}
	}
	return nil
}

// JournalFile verifies a policy change journal. It has no rotation and no
// seal: lines removed from its end are not detectable here.
func JournalFile(ctx context.Context, path string) (Report, error) {
	rep := Report{Kind: Journal, Path: path}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("%s: %w", path, ErrNothing)
		}
		return rep, err
	}
	w := newWalker(&rep)
	if done, err := w.file(path); err != nil || done {
		return rep, err
	}
	rep.Break = w.finish()
	return rep, nil
}

// walker follows one chain through its files with one line of lookahead,
// which is what tells an altered line from an inserted one.
type walker struct {
	rep      *Report
	expect   string // what the next line's prev must be
	anyStart bool   // the first line's prev is not checked (mid-chain)
	started  bool

	// The last good line, and what it chained to.
	lastFile   string
	lastLine   int64
	lastHash   string
	lastExpect string

	// pending is a break waiting for the next line to classify it.
	pending *pendingBreak

	// For the seal: the current file's count, first prev and the hash of
	// the line the seal names.
	fileLines       int64
	firstPrevOfLive *string
	sealFor         string // the live file, whose line sealLine is hashed
	sealLine        int64
	sealHash        string
}

type pendingBreak struct {
	file       string
	line       int64
	prev, hash string
	// before is the last good line at the break.
	beforeFile string
	beforeLine int64
	beforeHash string
	first      bool // the break is at the very first line of the chain
}

func newWalker(rep *Report) *walker { return &walker{rep: rep} }

func hashLine(b []byte) string { return hashchain.Hash(b) }

// file walks one file; done is true when a break was decided.
func (w *walker) file(path string) (done bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fr := FileResult{Path: path}
	w.fileLines = 0
	w.firstPrevOfLive = nil
	sealLine := int64(0)
	if path == w.sealFor {
		sealLine = w.sealLine
	}
	defer func() { w.rep.Files = append(w.rep.Files, fr) }()
	data := newLines(f)
	for {
		line, complete, err := data.next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		fr.Lines++
		w.fileLines++
		w.rep.Lines++
		n := fr.Lines
		h := hashLine(line)
		if n == sealLine {
			w.sealHash = h
		}
		var rec struct {
			Prev *string `json:"prev"`
		}
		jerr := json.Unmarshal(line, &rec)
		if n == 1 && rec.Prev != nil {
			p := *rec.Prev
			w.firstPrevOfLive = &p
		}
		if w.pending != nil {
			w.rep.Break = w.classify(rec.Prev, h)
			return true, nil
		}
		switch {
		case !complete:
			w.rep.Break = &Break{File: path, Line: n, Msg: "incomplete line (no newline): the file was cut mid-line, or a write was torn"}
			return true, nil
		case jerr != nil:
			w.rep.Break = &Break{File: path, Line: n, Msg: "not a JSON record: " + jerr.Error()}
			return true, nil
		case rec.Prev == nil:
			w.rep.Break = &Break{File: path, Line: n, Msg: "no prev field: not part of a chain"}
			return true, nil
		}
		ok := *rec.Prev == w.expect || (!w.started && w.anyStart)
		if !w.started && w.anyStart && *rec.Prev != "" {
			w.rep.MidChain = true
		}
		if !ok {
			w.pending = &pendingBreak{file: path, line: n, prev: *rec.Prev, hash: h,
				beforeFile: w.lastFile, beforeLine: w.lastLine, beforeHash: w.lastHash, first: !w.started}
			// Inserted at this line's predecessor: this line chains to
			// what the line before it chained to.
			if w.started && *rec.Prev == w.lastExpect {
				w.rep.Break = &Break{File: w.lastFile, Line: w.lastLine, Msg: fmt.Sprintf(
					"inserted: the next line (%s:%d) chains past it to the line before", path, n)}
				return true, nil
			}
			continue
		}
		w.started = true
		w.lastExpect = w.expect
		w.lastFile, w.lastLine, w.lastHash = path, n, h
		w.expect = h
		w.rep.Last = h
	}
}

// classify decides a pending break at line q (prev does not match line
// q-1) from line q+1's prev.
func (w *walker) classify(nextPrev *string, _ string) *Break {
	p := w.pending
	switch {
	case nextPrev != nil && *nextPrev == w.expect && !p.first:
		// q+1 chains to q-1: q is foreign.
		return &Break{File: p.file, Line: p.line, Msg: "inserted: the line after it chains to the line before it"}
	case nextPrev != nil && *nextPrev == p.hash:
		// q is intact and chains on: the damage is before it.
		return w.before(p)
	default:
		return &Break{File: p.file, Line: p.line, Msg: "altered: its prev matches neither neighbour"}
	}
}

// before reports damage between the last good line and line q.
func (w *walker) before(p *pendingBreak) *Break {
	if p.first {
		want := `""`
		if w.expect != "" {
			want = w.expect
		}
		return &Break{File: p.file, Line: p.line, Msg: fmt.Sprintf(
			"does not start the chain: prev is %s, want %s — lines before it were removed, or it was altered", p.prev, want)}
	}
	return &Break{File: p.beforeFile, Line: p.beforeLine, Msg: fmt.Sprintf(
		"altered, or lines are missing after it: the next line (%s:%d) does not chain to it", p.file, p.line)}
}

// finish decides a break still pending at the end of the chain: the last
// line's prev is wrong and nothing follows to tell why.
func (w *walker) finish() *Break {
	if w.rep.Break != nil {
		return w.rep.Break
	}
	if w.pending != nil {
		return w.before(w.pending)
	}
	return nil
}

// lines splits on '\n' and says whether each line had one.
type lines struct {
	r   io.Reader
	buf []byte
	eof bool
}

const maxLine = 1 << 20

func newLines(r io.Reader) *lines { return &lines{r: r} }

func (l *lines) next() ([]byte, bool, error) {
	for {
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			line := l.buf[:i:i]
			l.buf = l.buf[i+1:]
			return line, true, nil
		}
		if l.eof {
			if len(l.buf) > 0 {
				line := l.buf
				l.buf = nil
				return line, false, nil
			}
			return nil, false, io.EOF
		}
		if len(l.buf) > maxLine {
			return nil, false, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		chunk := make([]byte, 64<<10)
		n, err := l.r.Read(chunk)
		l.buf = append(l.buf, chunk[:n]...)
		if err == io.EOF {
			l.eof = true
		} else if err != nil {
			return nil, false, err
		}
	}
}
