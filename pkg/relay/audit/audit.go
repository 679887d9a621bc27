// Package audit writes the relay's audit log: one JSON line per recipient
// outcome, so an auditor can see how every message left (SPEC §4), chained
// by SHA-256 so that a removed or edited line is detectable.
//
// The schema is documented in docs/audit.md; field names are a stable
// interface for `smgctl audit` and for log shippers.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"
)

// Event is what happened to one recipient on one attempt.
type Event string

const (
	Delivered Event = "delivered"
	Deferred  Event = "deferred"
	Bounced   Event = "bounced"
	// WouldBounce: a mode=testing recipient was delivered although its
	// requirement was not met; in enforce mode it would have bounced.
	WouldBounce Event = "would-bounce"
	// Dropped: a failed message with the null sender (a DSN itself); it
	// is never bounced, so the audit log is where its fate is recorded.
	Dropped Event = "dropped"
	// Deleted: an administrator removed the recipient's message from the
	// queue (`smgctl queue delete`); nobody was notified.
	Deleted Event = "deleted"
	// Returned: an administrator returned the message to its sender
	// (`smgctl queue bounce`); a DSN with the Diagnostic was queued.
	Returned Event = "returned"
	// PolicyOutsideJournal: the relay loaded a policy file whose content
	// is not what the last `smgctl policy` edit left (its journal's
	// sha256): the file was changed by other means. A relay event, not
	// a recipient's: the Policy* fields are set, the recipient ones empty.
	PolicyOutsideJournal Event = "policy-changed-outside-journal"
)

// Requirement is the policy demand that applied, as written in the
// policy file.
type Requirement struct {
	Bits   int    `json:"bits"`
	MinTLS string `json:"min_tls"`
	Verify string `json:"verify"`
	Mode   string `json:"mode"`
	OnFail string `json:"on_fail"`
}

// Record is one line of the audit log.
type Record struct {
	Time      time.Time `json:"time"`
	Event     Event     `json:"event"`
	QueueID   string    `json:"queue_id"`
	MessageID string    `json:"message_id,omitempty"`
	Sender    string    `json:"sender"` // "" for the null sender
	Recipient string    `json:"recipient"`
	// PolicyTarget and PolicyLine name the entry that decided; "" and 0
	// when no entry applied (opportunistic TLS).
	PolicyTarget string       `json:"policy_target"`
	PolicyLine   int          `json:"policy_line"`
	Requirement  *Requirement `json:"requirement"` // nil when no entry applied
	MX           string       `json:"mx,omitempty"`
	IP           string       `json:"ip,omitempty"`
	// TLS is what the connection the outcome came from achieved.
	TLS          bool   `json:"tls"`
	TLSVersion   string `json:"tls_version,omitempty"`
	Cipher       string `json:"cipher,omitempty"`
	Bits         int    `json:"bits"`
	CertVerified bool   `json:"cert_verified"`
	// Reply is the remote SMTP reply to this recipient (RCPT or DATA).
	Reply string `json:"reply,omitempty"`
	// Diagnostic is the text the sender's DSN carries or would carry,
	// e.g. "503 5.7.0 encryption too weak 0 less than 112".
	Diagnostic string `json:"diagnostic,omitempty"`
	Attempt    int    `json:"attempt"`
	// Actor is who took an administrator's action (deleted, returned);
	// absent on the relay's own decisions.
	Actor string `json:"actor,omitempty"`
	// PolicyFile, PolicySHA256 (the content loaded), PolicyPrevSHA256
	// (the content in force before; absent at start) and JournalSHA256
	// (what the journal's last edit left; absent when it records none)
	// describe a PolicyOutsideJournal event.
	PolicyFile       string `json:"policy_file,omitempty"`
	PolicySHA256     string `json:"policy_sha256,omitempty"`
	PolicyPrevSHA256 string `json:"policy_prev_sha256,omitempty"`
	JournalSHA256    string `json:"journal_sha256,omitempty"`
	// Prev is the hex SHA-256 of the previous line's bytes (without its
	// newline); "" on the first line of a log.
	Prev string `json:"prev"`
}

// Log appends records to an audit log file. It is safe for concurrent use.
type Log struct {
	log  *slog.Logger
	mu   sync.Mutex
	f    *os.File
	prev string
	// path, opt and state serve rotation (rotate.go) and the seal
	// (seal.go); state describes the live file.
	path     string
	opt      Options
	state    FileState
	sealFile *os.File
}

// maxLine bounds one audit line, as the chain verifier does.
const maxLine = hashchain.MaxLine

// Open opens (creating it and its directory if needed) the audit log at
// path and reads its last line to continue the hash chain. It never
// rotates; see OpenWith.
func Open(path string, log *slog.Logger) (*Log, error) {
	return OpenWith(path, Options{}, log)
}

// OpenWith is Open with rotation options. It also checks the log against
// its seal (seal.go) and continues the chain from the newest rotated
// file when the live file is empty.
func OpenWith(path string, opt Options, log *slog.Logger) (*Log, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	// O_APPEND: every write lands at the end, whoever else appends.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	l := &Log{log: log, f: f, path: path, opt: opt}
	last, torn, err := lastLine(path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if torn {
		// A crash mid-write left a line without its newline. It stays
		// (an audit log is never rewritten); it is ended so the next
		// record starts on its own line, and the chain covers it, so
		// verify reports exactly that line as unreadable.
		log.Warn("audit log ends in an incomplete line; keeping it and continuing the chain", "path", path, "bytes", len(last))
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit log: %w", err)
		}
	}
	if last != nil {
		l.prev = hashLine(last)
	} else if rot, err := Rotated(path); err == nil && len(rot) > 0 {
		// A fresh live file after rotation chains to the rotated one.
		if rl, _, err := lastLine(rot[len(rot)-1]); err == nil && rl != nil {
			l.prev = hashLine(rl)
		}
	}
	if err := l.reconcileSeal(opt.Now()); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log seal %s: %w", SealPath(path), err)
	}
	return l, nil
}

// lastLine returns the file's last line without its newline, and whether
// the file ended without one.
func lastLine(path string) ([]byte, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	return hashchain.LastLine(f, st.Size())
}

func hashLine(b []byte) string { return hashchain.Hash(b) }

// Write appends records as one line each, in order, then makes them
// durable with one fsync for the whole batch. Each line is one write(2)
// so a concurrent reader never sees half a record.
func (l *Log) Write(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit log is closed")
	}
	now := l.opt.Now()
	// Marshal first: the chain does not depend on the file, and the
	// batch's size decides whether to rotate before it.
	lines := make([][]byte, len(recs))
	hashes := make([]string, len(recs))
	var size int64
	prev := l.prev
	for i := range recs {
		r := recs[i]
		if r.Time.IsZero() {
			r.Time = now
		}
		r.Time = r.Time.UTC()
		r.Prev = prev
		line, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		prev = hashLine(line)
		hashes[i] = prev
		lines[i] = append(line, '\n')
		size += int64(len(lines[i]))
	}
	if l.rotationDue(size, now) {
		if err := l.rotate(now); err != nil {
			// Mail flow matters more than file size: keep appending.
			l.log.Error("rotating the audit log", "path", l.path, "err", err)
		}
	}
	for i, line := range lines {
		if _, err := l.f.Write(line); err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		if l.state.Lines == 0 {
			l.state.Start = recs[i].Time
			if l.state.Start.IsZero() {
				l.state.Start = now
			}
		}
		l.state.Lines++
		l.state.Size += int64(len(line))
		l.state.Last = hashes[i]
		l.prev = l.state.Last
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	if err := l.seal(now); err != nil {
		return fmt.Errorf("audit log seal: %w", err)
	}
	return nil
}

// Close closes the file. Records written before are durable.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if l.sealFile != nil {
		if cerr := l.sealFile.Close(); err == nil {
			err = cerr
		}
		l.sealFile = nil
	}
	return err
}

// ChainError says where a hash chain breaks.
type ChainError = hashchain.Break

// Verify reads an audit log and checks every line's prev against the
// hash of the line before it. It returns the number of good lines and, at
// the first break, a *ChainError. Rotation and the seal are checked by
// pkg/audit/verify, which the CLI uses.
func Verify(r io.Reader) (int, error) { return hashchain.Verify(r) }

// lineReader splits on '\n' without a line length limit below maxLine.
type lineReader struct {
	r   io.Reader
	buf []byte
	eof bool
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: r} }

func (lr *lineReader) next() ([]byte, error) {
	for {
		if i := bytes.IndexByte(lr.buf, '\n'); i >= 0 {
			line := lr.buf[:i:i]
			lr.buf = lr.buf[i+1:]
			return line, nil
		}
		if lr.eof {
			if len(lr.buf) > 0 {
				line := lr.buf
				lr.buf = nil
				return line, nil
			}
			return nil, io.EOF
		}
		if len(lr.buf) > maxLine {
			return nil, fmt.Errorf("audit: line longer than %d bytes", maxLine)
		}
		chunk := make([]byte, 64<<10)
		n, err := lr.r.Read(chunk)
		lr.buf = append(lr.buf, chunk[:n]...)
		if err == io.EOF {
			lr.eof = true
		} else if err != nil {
			return nil, err
		}
	}
}

// Scan calls fn for each record of an audit log, in order. Lines that are
// not records stop the scan with an error naming the line.
func Scan(r io.Reader, fn func(Record) error) error {
	lr := newLineReader(r)
	for n := 1; ; n++ {
		line, err := lr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil {
			return &ChainError{Line: n, Msg: "not a JSON record: " + err.Error()}
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
