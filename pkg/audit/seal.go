package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// Seal anchors the end of the hash chain. The chain alone proves that no
// line was edited, inserted or removed *before* the last line, but a log
// cut back by whole lines at its end is still a valid chain. The seal, a
// small file beside the log (`<log>.seal`), records how many lines the live
// file had and the hash of its last line after every fsync'd batch, so a
// verifier can tell that lines are missing at the end, or that the last
// line was changed.
//
// The seal is written after the batch it describes is durable, so after a
// crash it can only lag behind the log, never run ahead of it: a lagging
// seal is still a correct lower bound ("the log had at least these
// lines"). Someone who can rewrite both the log and the seal defeats it;
// ship the log, or `smgctl audit verify`'s last hash, off the host when
// that matters (docs/audit.md).
type Seal struct {
	File  string `json:"file"`  // base name of the live log it describes
	Lines int64  `json:"lines"` // lines in the live file
	Last  string `json:"last"`  // hash of its last line; FirstPrev when Lines is 0
	// FirstPrev is what the live file's first line chains to: "" for a
	// log's very first file, else the hash of the last line of the file
	// rotated away before it. It anchors the live file when the rotated
	// files have been deleted.
	FirstPrev string    `json:"first_prev"`
	Time      time.Time `json:"time"`
}

// SealPath is where the seal of the log at path lives.
func SealPath(path string) string { return path + ".seal" }

// MismatchPrefix starts the names of seals kept as evidence: when the relay
// opens a log that does not match its seal, it renames the seal to
// `<log>.seal.mismatch-<UTC time>` instead of overwriting it, logs an
// error, and starts a new seal. `smgctl audit verify` fails while such a
// file exists.
func MismatchPrefix(path string) string { return SealPath(path) + ".mismatch-" }

// ReadSeal reads the seal of the log at path; ok is false when there is
// none.
func ReadSeal(path string) (s Seal, ok bool, err error) {
	b, err := os.ReadFile(SealPath(path))
	if errors.Is(err, os.ErrNotExist) {
		return Seal{}, false, nil
	}
	if err != nil {
		return Seal{}, false, err
	}
	if err := json.Unmarshal(bytes.TrimSpace(b), &s); err != nil {
		return Seal{}, true, fmt.Errorf("%s: not a seal: %v", SealPath(path), err)
	}
	if s.Lines < 0 {
		return Seal{}, true, fmt.Errorf("%s: negative line count", SealPath(path))
	}
	return s, true, nil
}

// sealSize is the seal's fixed on-disk size: it is overwritten in place,
// within one 512-byte sector, so an update is a single-sector write that
// lands whole or not at all, and fdatasync need not touch metadata (no
// rename, no size change). That keeps the per-batch cost near one extra
// data flush. Padding is spaces before the final newline.
const sealSize = 512

// writeSeal overwrites the seal in place and makes it durable. After a
// crash the seal holds either the previous state (it lags, see Seal) or
// the new one.
func (l *Log) writeSeal(s Seal) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if l.sealFile == nil {
		f, err := os.OpenFile(SealPath(l.path), os.O_RDWR|os.O_CREATE, 0o640)
		if err != nil {
			return err
		}
		l.sealFile = f
	}
	n := max(sealSize, len(b)+1)
	buf := bytes.Repeat([]byte(" "), n)
	copy(buf, b)
	buf[n-1] = '\n'
	if _, err := l.sealFile.WriteAt(buf, 0); err != nil {
		return err
	}
	if st, err := l.sealFile.Stat(); err == nil && st.Size() > int64(n) {
		// Only after an unusually long name shrank back: rare.
		if err := l.sealFile.Truncate(int64(n)); err != nil {
			return err
		}
	}
	return safeio.Datasync(l.sealFile)
}

// FileState is what one pass over a log file finds.
type FileState struct {
	Lines     int64
	Size      int64
	Start     time.Time // time of the first record; zero when none
	FirstPrev string    // prev of the first line
	Last      string    // hash of the last line; "" when empty
	// At is the hash of line AtLine when the caller asked for it.
	AtLine int64
	At     string
	// CheckpointLine is the line of the file's last checkpoint (0: none)
	// and CheckpointSeq its seq.
	CheckpointLine int64
	CheckpointSeq  int64
}

// ScanFile reads the log at path once, hashing every line, and records
// the hash of line atLine (0: none). A missing file is empty.
func ScanFile(path string, atLine int64) (FileState, error) {
	st := FileState{AtLine: atLine}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	lr := newLineReader(f)
	for {
		line, err := lr.next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		st.Lines++
		st.Size += int64(len(line)) + 1
		h := hashLine(line)
		if st.Lines == 1 {
			var r struct {
				Time time.Time `json:"time"`
				Prev string    `json:"prev"`
			}
			if json.Unmarshal(line, &r) == nil {
				st.Start, st.FirstPrev = r.Time, r.Prev
			}
		}
		if st.Lines == atLine {
			st.At = h
		}
		if m, ok := ParseMark(line); ok && m.Event == hashchain.Checkpoint {
			st.CheckpointLine, st.CheckpointSeq = st.Lines, m.Seq
		}
		st.Last = h
	}
}

// matches says whether the seal describes a file in state st: the seal
// may lag, so the file may have more lines, but line s.Lines must hash to
// s.Last.
func (s Seal) matches(st FileState) bool {
	if s.Lines == 0 {
		return st.Lines == 0 || st.FirstPrev == s.FirstPrev
	}
	return st.Lines >= s.Lines && st.At == s.Last
}

// reconcileSeal checks the existing seal against the live file when the
// log is opened. A seal that does not match is evidence of truncation or
// tampering while the relay was down: it is kept under a mismatch name and
// logged, and a new seal is started, so the relay keeps running and the
// evidence stays for `audit verify`.
func (l *Log) reconcileSeal(now time.Time) error {
	s, ok, err := ReadSeal(l.path)
	var st FileState
	if err == nil {
		st, err = ScanFile(l.path, s.Lines)
	}
	if err != nil && !ok {
		return err
	}
	match := !ok
	if ok && err == nil {
		match = s.matches(st)
		if !match && (st.Lines == 0 || st.FirstPrev == s.Last) {
			// A rotation that crashed before the new seal was written:
			// the seal describes the newest rotated file exactly.
			if rot, rerr := Rotated(l.path); rerr == nil && len(rot) > 0 {
				if rst, rerr := ScanFile(rot[len(rot)-1], s.Lines); rerr == nil && rst.Lines == s.Lines && rst.Last == s.Last {
					match = true
				}
			}
		}
	}
	if !match {
		keep := MismatchPrefix(l.path) + now.UTC().Format(rotStamp)
		l.log.Error("the audit log does not match its seal: lines were removed or changed while the relay was down; keeping the old seal as evidence",
			"path", l.path, "seal_lines", s.Lines, "file_lines", st.Lines, "kept", keep, "err", err)
		if rerr := os.Rename(SealPath(l.path), keep); rerr != nil {
			return fmt.Errorf("keeping the mismatched seal: %w", rerr)
		}
		if err != nil {
			// An unreadable seal was kept; the file still needs a scan.
			if st, err = ScanFile(l.path, 0); err != nil {
				return err
			}
		}
	}
	l.state = st
	if st.Lines == 0 {
		// An empty live file follows the newest rotated one, if any.
		st.FirstPrev = l.prev
		l.state.FirstPrev = l.prev
	}
	return l.seal(now)
}

// seal records the current state; called with l.mu held (or before l is
// shared) after the lines it covers are durable.
func (l *Log) seal(now time.Time) error {
	last := l.state.Last
	if l.state.Lines == 0 {
		last = l.state.FirstPrev
	}
	return l.writeSeal(Seal{
		File: filepath.Base(l.path), Lines: l.state.Lines, Last: last,
		FirstPrev: l.state.FirstPrev, Time: now.UTC(),
	})
}
