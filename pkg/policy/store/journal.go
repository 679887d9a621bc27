package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"
	"github.com/smgctl/smgctl/pkg/regularfile"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// Action names what a journal record did to its target.
type Action string

const (
	ActionAdd    Action = "add"    // a new entry
	ActionUpdate Action = "update" // an existing entry got new options or a new comment
	ActionRemove Action = "remove" // the entry was deleted
	ActionImport Action = "import" // added or updated by `policy import`
)

// Record is one line of the change journal, `<policy>.journal`: one JSON
// object per change, appended under the policy's lock and fsync'd before
// the change takes effect.
type Record struct {
	Time   time.Time `json:"time"` // UTC, RFC 3339 with nanoseconds
	Actor  string    `json:"actor"`
	Action Action    `json:"action"`
	Target string    `json:"target"` // the entry's key: "*", a domain (A-labels) or local@domain
	// Before and After hold every option (defaults included) as written
	// in a policy file, plus "comment" when the entry has one. Before is
	// null for an added entry, After for a removed one.
	Before map[string]string `json:"before"`
	After  map[string]string `json:"after"`
	// SHA256 is the lower-case hex SHA-256 of the whole policy file as
	// the edit this record belongs to left it (every record of one edit
	// carries the same). The relay compares it with the file it loads to
	// notice a change made outside `smgctl policy`. Absent on records
	// written before smgctl recorded it.
	SHA256 string `json:"sha256,omitempty"`
	// Prev is the lower-case hex SHA-256 of the previous journal line
	// (its bytes without the newline); "" on the first line. The chain
	// lets `smgctl audit verify` prove no line was altered, inserted or
	// deleted after the fact, short of rewriting everything after it.
	Prev string `json:"prev"`
}

// ErrTornJournal means the journal's last line has no newline: a write was
// cut short. Edits are refused until an operator has looked at it, since
// chaining onto a torn line would hide the damage.
var ErrTornJournal = errors.New("journal ends in a partial line")

// LineHash is the chain value of one journal line: hex SHA-256 of the
// line without its newline.
func LineHash(line []byte) string { return hashchain.Hash(line) }

// DefaultActor names who is editing when no --actor is given: the
// SMGCTL_ACTOR environment variable, else the OS user.
func DefaultActor() string {
	if a := os.Getenv("SMGCTL_ACTOR"); a != "" {
		return a
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid:" + strconv.Itoa(os.Getuid())
}

// appendJournal chains recs onto the journal at path and makes them
// durable. The caller holds the policy lock, so nobody else appends
// between reading the last line and writing. All records go out in one
// write(2); if it fails the journal is cut back to its old length.
func appendJournal(path string, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	_, statErr := os.Stat(path)
	created := os.IsNotExist(statErr)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	last, size, err := lastLine(f)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	prev := ""
	if last != nil {
		prev = LineHash(last)
	}
	cp, err := nextCheckpoint(f, last, size)
	if err != nil {
		return fmt.Errorf("journal %s: %w", path, err)
	}
	var buf bytes.Buffer
	for i := range recs {
		recs[i].Prev = prev
		line, err := json.Marshal(&recs[i])
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
		prev = LineHash(line)
	}
	// The checkpoint ends the change, in the same write: a journal that
	// ends with anything else was cut or appended to (docs/audit.md).
	cp.Time, cp.Seq, cp.Prev = recs[len(recs)-1].Time, cp.Seq+int64(len(recs)), prev
	line, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	buf.Write(line)
	buf.WriteByte('\n')
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Truncate(size)
		return fmt.Errorf("write journal: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync journal: %w", err)
	}
	if created {
		return safeio.SyncDir(filepath.Dir(path))
	}
	return nil
}

// nextCheckpoint starts the checkpoint that will end the next change: Seq
// is the number of lines already in the journal (the caller adds the
// change's records). The last line is normally a checkpoint, which says;
// otherwise (a journal from before checkpoints, or lines after the last
// one) the journal is counted once, and the checkpoint names the lines
// it covers that no checkpoint did.
func nextCheckpoint(f *os.File, last []byte, size int64) (hashchain.Mark, error) {
	cp := hashchain.Mark{Event: hashchain.Checkpoint}
	if last == nil {
		return cp, nil
	}
	if m, ok := hashchain.ParseMark(last); ok && m.Event == hashchain.Checkpoint {
		cp.Seq = m.Seq + 1
		return cp, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10)
	var lines, afterCP int64
	seen := false
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			lines++
			afterCP++
			if m, ok := hashchain.ParseMark(line); ok && m.Event == hashchain.Checkpoint {
				afterCP, seen = 0, true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return cp, err
		}
		if err == bufio.ErrBufferFull {
			lines-- // the rest of a long line follows
			afterCP--
		}
	}
	cp.Seq, cp.Uncovered = lines, afterCP
	cp.Reason = "first checkpoint of a journal written before checkpoints"
	if seen {
		cp.Reason = "lines after the last checkpoint: a crash mid-write, or added by someone else"
	}
	return cp, nil
}

// lastLine returns the journal's last line (nil when empty) and its size,
// reading backwards from the end so an edit costs the same however long
// the journal has grown.
func lastLine(f *os.File) ([]byte, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	line, torn, err := hashchain.LastLine(f, fi.Size())
	if err == nil && torn {
		err = ErrTornJournal
	}
	if err != nil {
		return nil, fi.Size(), err
	}
	return line, fi.Size(), nil
}

// ChainError says where a journal stops being trustworthy.
type ChainError = hashchain.Break

// VerifyChain reads a journal and checks that every line is a record
// whose prev is the hash of the line before it. It returns the number of
// good lines and, at the first break, a *ChainError.
func VerifyChain(r io.Reader) (int, error) { return hashchain.Verify(r) }

// ReadJournal returns every record of the journal at path, oldest first,
// without the journal's checkpoints.
// A missing journal has no records.
func ReadJournal(path string) ([]Record, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []Record
	br := bufio.NewReader(f)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if _, mark := hashchain.ParseMark(line); mark {
			// The journal's own checkpoints: no change.
		} else if len(bytes.TrimSpace(line)) > 0 {
			var rec Record
			if jerr := json.Unmarshal(line, &rec); jerr != nil {
				return recs, fmt.Errorf("%s:%d: not a journal record: %v", path, n, jerr)
			}
			recs = append(recs, rec)
		}
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
	}
}

// LastSHA256 returns the policy file hash (Record.SHA256) of the newest
// change record of the journal at path: what the last `smgctl policy`
// edit left in the file. It is "" when there is no journal or the newest
// change record carries no hash (written by an older smgctl). It reads
// backwards from the end, skipping lines that are not change records
// (a torn tail, a checkpoint), so the cost does not grow with the
// journal. The journal is opened non-blocking and must be a regular
// file: the relay calls this at each policy load, and a FIFO or device
// put in its place must not stall it.
func LastSHA256(path string) (string, error) {
	f, fi, err := regularfile.Open(path)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	for size := fi.Size(); size > 0; {
		line, torn, err := hashchain.LastLine(f, size)
		if err != nil {
			return "", fmt.Errorf("journal %s: %w", path, err)
		}
		size -= int64(len(line))
		if !torn {
			size-- // its newline
		}
		var rec struct {
			Action Action `json:"action"`
			SHA256 string `json:"sha256"`
		}
		if json.Unmarshal(line, &rec) != nil || rec.Action == "" {
			continue
		}
		return rec.SHA256, nil
	}
	return "", nil
}
