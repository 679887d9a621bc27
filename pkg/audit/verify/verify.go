// Package verify checks the hash chains smgctl keeps for tamper evidence:
// the relay's audit log (with its rotated files and its seal) and the
// policy change journal. Both are JSON lines whose "prev" is the hex
// SHA-256 of the line before (pkg/audit, pkg/policy/store); this
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
	"strconv"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"

	"github.com/smgctl/smgctl/pkg/audit"
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
	MidChain bool `json:"mid_chain"`
	// Count is the number of lines in the whole chain, those of files
	// removed by retention included, as its checkpoints count them; 0
	// when no checkpoint says. Count and Last are the head an auditor
	// keeps elsewhere (`smgctl audit head`) to check with an Anchor.
	Count int64 `json:"count"`
	// Legacy: the chain has lines but no checkpoint (written before
	// checkpoints existed); lines cut from its end show only against a
	// seal.
	Legacy bool `json:"legacy"`
	// Anchored: the Anchor given was found in the chain.
	Anchored bool `json:"anchored"`
	// Notes are things the writer recorded about the chain itself (cuts
	// after failed writes, lines found after a checkpoint at start) and
	// warnings that do not break it.
	Notes []string `json:"notes,omitempty"`
	Break *Break   `json:"break"` // nil when the chain is intact
}

// Head is the chain's head as an anchor: "COUNT:HASH".
func (r Report) Head() string {
	if r.Count == 0 {
		return ""
	}
	return Anchor{Count: r.Count, Hash: r.Last}.String()
}

// Anchor is a head recorded earlier (`smgctl audit head`): line Count of
// the chain (1-based, across rotated files) hashes to Hash. A chain that
// still holds it was not cut or rewritten at or before that line since.
type Anchor struct {
	Count int64
	Hash  string
}

func (a Anchor) String() string { return fmt.Sprintf("%d:%s", a.Count, a.Hash) }

// ParseAnchor reads "COUNT:HASH" as `smgctl audit head` prints it.
func ParseAnchor(s string) (Anchor, error) {
	c, h, ok := strings.Cut(strings.TrimSpace(s), ":")
	n, err := strconv.ParseInt(c, 10, 64)
	if !ok || err != nil || n < 1 || len(h) != 64 || strings.Trim(strings.ToLower(h), "0123456789abcdef") != "" {
		return Anchor{}, fmt.Errorf("anchor %q: want COUNT:HASH as `smgctl audit head` prints it (a line count and 64 hex digits)", s)
	}
	return Anchor{Count: n, Hash: strings.ToLower(h)}, nil
}

// Options tune a verification.
type Options struct {
	// Anchor, when set, must still be in the chain.
	Anchor *Anchor
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
	return PathWith(ctx, path, Options{})
}

// PathWith is Path with options.
func PathWith(ctx context.Context, path string, opt Options) (Report, error) {
	if Detect(path) == Journal {
		return JournalWith(ctx, path, opt)
	}
	return LogWith(ctx, path, opt)
}

// ErrNothing means there is no file to verify at the path given.
var ErrNothing = errors.New("no such log or journal")

// Log verifies an audit log as one chain: its rotated files oldest first
// (audit.Rotated), then the live file, then the seal. A rotated file given
// as path is verified on its own. It returns an error only when the files
// cannot be read; a broken chain is Report.Break.
func Log(ctx context.Context, path string) (Report, error) {
	return LogWith(ctx, path, Options{})
}

// LogWith is Log with options. A running relay appends while the log is
// read; when the chain's end looks cut or unfinished and the live file
// grew meanwhile, it is read again (a few times at most).
func LogWith(ctx context.Context, path string, opt Options) (Report, error) {
	for try := 0; ; try++ {
		before := fileSize(path)
		rep, err := logOnce(ctx, path, opt)
		if err != nil || rep.OK() || try == 3 || fileSize(path) == before {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return st.Size()
}

func logOnce(ctx context.Context, path string, opt Options) (Report, error) {
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
	w := newWalker(&rep, opt)
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
	if b := w.end(); b != nil {
		rep.Break = b
		return rep, nil
	}
	switch {
	case sealErr != nil:
		rep.Break = &Break{File: audit.SealPath(path), Msg: sealErr.Error()}
	case sealed:
		rep.Sealed = true
		rep.Break = checkSeal(path, seal, w)
	case w.checkpoints > 0 && !audit.IsRotated(path):
		// The relay writes the seal when it opens the log, before any
		// checkpoint: a log with checkpoints always had one.
		rep.Break = &Break{File: audit.SealPath(path), Msg: "missing: the log has checkpoints, so the relay kept a seal beside it; it was deleted (with lines cut from the end, perhaps)"}
	}
	if rep.Break == nil && len(evidence) > 0 {
		b, _ := os.ReadFile(evidence[0])
		rep.Break = &Break{File: evidence[0], Msg: fmt.Sprintf(
			"the relay found the log did not match this seal when it started (lines removed or changed while it was down): %s",
			strings.TrimSpace(string(b)))}
	}
	if rep.Break == nil {
		rep.Break = w.anchorMissing()
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

// JournalFile verifies a policy change journal: its chain, its
// checkpoints (pkg/policy/store ends every change with one) and, with
// JournalWith, an anchor. It has no rotation and no seal: a cut exactly
// at a checkpoint shows only against an anchor kept elsewhere.
func JournalFile(ctx context.Context, path string) (Report, error) {
	return JournalWith(ctx, path, Options{})
}

// JournalWith is JournalFile with options.
func JournalWith(ctx context.Context, path string, opt Options) (Report, error) {
	rep := Report{Kind: Journal, Path: path}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("%s: %w", path, ErrNothing)
		}
		return rep, err
	}
	if st.Size() == 0 {
		// The store creates the journal with its first change.
		rep.Break = &Break{File: path, Line: 1, Msg: "missing: the journal is empty, but it is created with its first change: it was emptied"}
		return rep, nil
	}
	w := newWalker(&rep, opt)
	if done, err := w.file(path); err != nil || done {
		return rep, err
	}
	if rep.Break = w.finish(); rep.Break == nil {
		rep.Break = w.end()
	}
	if rep.Break == nil {
		rep.Break = w.anchorMissing()
	}
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

	// Checkpoints: abs counts the good lines read; offset is how many
	// lines the chain had before the first one read (files removed by
	// retention), known once the chain starts at "" or a checkpoint says.
	abs, offset  int64
	offsetKnown  bool
	checkpoints  int
	afterCP      int64 // good lines after the last checkpoint
	firstAfterCP Break // where they start
	anchor       *Anchor
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

func newWalker(rep *Report, opt Options) *walker { return &walker{rep: rep, anchor: opt.Anchor} }

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
		if b := w.count(path, n, line, *rec.Prev, h); b != nil {
			w.rep.Break = b
			return true, nil
		}
	}
}

// count follows the checkpoints through a good line and checks the
// anchor against it.
func (w *walker) count(path string, n int64, line []byte, prev, h string) *Break {
	w.abs++
	if w.abs == 1 && prev == "" {
		w.offsetKnown = true // the chain's very first line
	}
	m, isMark := hashchain.ParseMark(line)
	switch {
	case !isMark:
		if w.afterCP == 0 {
			w.firstAfterCP = Break{File: path, Line: n}
		}
		w.afterCP++
	case m.Event == hashchain.Repaired:
		w.rep.Notes = append(w.rep.Notes, fmt.Sprintf("%s:%d: the writer cut %d bytes off the end: %s", path, n, m.CutBytes, m.Reason))
	case m.Event == hashchain.Checkpoint:
		if !w.offsetKnown {
			w.offset, w.offsetKnown = m.Seq-(w.abs-1), true
		} else if m.Seq != w.abs-1+w.offset {
			return &Break{File: path, Line: n, Msg: fmt.Sprintf(
				"checkpoint counts %d lines before it, the chain has %d: lines were removed or inserted, and the chain rewritten", m.Seq, w.abs-1+w.offset)}
		}
		if m.Uncovered > 0 {
			w.rep.Notes = append(w.rep.Notes, fmt.Sprintf("%s:%d: %s (%d lines)", path, n, m.Reason, m.Uncovered))
		}
		w.checkpoints++
		w.afterCP = 0
	}
	if w.offsetKnown {
		w.rep.Count = w.abs + w.offset
	}
	if a := w.anchor; a != nil && w.offsetKnown && w.abs+w.offset == a.Count && !w.rep.Anchored {
		if h != a.Hash {
			return &Break{File: path, Line: n, Msg: fmt.Sprintf(
				"does not match the anchor %s: line %d of the chain hashes to %s, so it and what follows were rewritten", a, a.Count, h)}
		}
		w.rep.Anchored = true
	}
	return nil
}

// end checks how the chain ends: with a checkpoint, since every write
// ends with one. A chain without any is a legacy one.
func (w *walker) end() *Break {
	switch {
	case w.checkpoints == 0 && w.abs > 0:
		w.rep.Legacy = true
		w.rep.Notes = append(w.rep.Notes, "no checkpoint: a legacy chain, written before checkpoints; lines cut from its end show only against a seal or an anchor")
	case w.afterCP > 0:
		b := w.firstAfterCP
		b.Msg = fmt.Sprintf("%d lines after the last checkpoint, which every write ends with: added by someone else, or the end of the chain was cut, or its writer crashed mid-write and has not run since (at start it covers them and says so)", w.afterCP)
		return &b
	}
	return nil
}

// anchorMissing reports an anchor the walk did not meet.
func (w *walker) anchorMissing() *Break {
	a := w.anchor
	if a == nil || w.rep.Anchored {
		return nil
	}
	if w.offsetKnown && a.Count > w.abs+w.offset {
		return &Break{File: w.lastFile, Line: w.lastLine, Msg: fmt.Sprintf(
			"the chain has %d lines, the anchor %s names line %d: lines were cut from its end", w.abs+w.offset, a, a.Count)}
	}
	return &Break{File: w.rep.Path, Msg: fmt.Sprintf(
		"the anchor %s cannot be checked: its line is not in the files kept (removed by retention, or before the first checkpoint of a chain whose start is gone)", a)}
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
