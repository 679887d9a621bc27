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
	// HandedOff: no MX of the recipient's domain met its entry's
	// requirement and the message was delivered instead to the entry's
	// hand-off route (on-fail=route:HOST[:PORT], an encryption gateway)
	// over verified TLS. Route names it, MX and IP are the route's host
	// and address, Diagnostic says why the partner's MX hosts were
	// refused. A final outcome: the sender gets no bounce.
	HandedOff Event = "handed-off"
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
	// TLSRPTSent: the relay sent a TLS-RPT report (RFC 8460) to one
	// rua of a policy domain; ReportDomain, RUA and ReportID are set,
	// the recipient fields empty. TLSRPTFailed: sending it failed
	// (Diagnostic says why); it is not tried again for that day.
	TLSRPTSent   Event = "tlsrpt-sent"
	TLSRPTFailed Event = "tlsrpt-failed"
	// HopFailed: one MX host (one address) an attempt tried, or ruled
	// out before connecting, that did not carry the mail; the attempt's
	// outcome is the recipient's other record of that attempt. The
	// connection fields, sources and TLS-RPT fields are that hop's;
	// Reply and Diagnostic say why it was not used. Not an outcome:
	// readers that count recipients leave it out (Outcome), TLS-RPT
	// counts it as a session (RFC 8460 §4).
	HopFailed Event = "hop-failed"
)

// Outcome says whether e is a recipient's outcome of an attempt or an
// administrator's action on it — what counts toward a recipient's fate —
// rather than the relay's own event or one hop of an attempt.
func Outcome(e Event) bool {
	return !RelayEvent(e) && e != HopFailed && !IsMark(e)
}

// RelayEvent says whether e is the relay's own event (a policy change,
// a TLS-RPT sending), not a recipient's outcome: readers that count
// recipients leave it out.
func RelayEvent(e Event) bool {
	return e == PolicyOutsideJournal || e == TLSRPTSent || e == TLSRPTFailed
}

// SourceKind names what set (part of) a recipient's requirement.
type SourceKind string

const (
	SourceList       SourceKind = "list"       // a policy file entry
	SourceMTASTS     SourceKind = "mta-sts"    // the domain's MTA-STS policy (RFC 8461)
	SourceDANE       SourceKind = "dane"       // the MX host's TLSA records (RFC 7672)
	SourceREQUIRETLS SourceKind = "requiretls" // the message's REQUIRETLS (RFC 8689)
)

// Source is one thing that set the requirement, with a detail an
// auditor can check: the entry and line, the MTA-STS policy id and
// mode, the TLSA record set's owner name.
type Source struct {
	Kind   SourceKind `json:"kind"`
	Detail string     `json:"detail,omitempty"`
}

// TLS-RPT policy types (RFC 8460 §4.4): which published policy applied
// to the session.
const (
	PolicySTS      = "sts"
	PolicyTLSA     = "tlsa"
	PolicyNotFound = "no-policy-found"
)

// TLS-RPT result types (RFC 8460 §4.3) a failed session is recorded
// with in Record.ResultType.
const (
	ResultSTARTTLSNotSupported = "starttls-not-supported"
	ResultCertHostMismatch     = "certificate-host-mismatch"
	ResultCertExpired          = "certificate-expired"
	ResultCertNotTrusted       = "certificate-not-trusted"
	ResultValidationFailure    = "validation-failure"
	ResultTLSAInvalid          = "tlsa-invalid"
	ResultDNSSECInvalid        = "dnssec-invalid"
	ResultDANERequired         = "dane-required"
	ResultSTSPolicyFetchError  = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid     = "sts-policy-invalid"
	ResultSTSWebPKIInvalid     = "sts-webpki-invalid"
)

// ResultTypes lists every RFC 8460 §4.3 result type, in the RFC's order.
var ResultTypes = []string{
	ResultSTARTTLSNotSupported, ResultCertHostMismatch, ResultCertExpired,
	ResultCertNotTrusted, ResultValidationFailure, ResultTLSAInvalid,
	ResultDNSSECInvalid, ResultDANERequired, ResultSTSPolicyFetchError,
	ResultSTSPolicyInvalid, ResultSTSWebPKIInvalid,
}

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
	// Sources names what set the requirement (list entry, MTA-STS,
	// DANE, REQUIRETLS); absent in logs written before it existed.
	Sources []Source `json:"sources,omitempty"`
	// Auth is how the peer was authenticated: pkix, dane or none
	// (policy.Auth); TLSA the matched record ("3 1 1 ab12…") when dane.
	Auth string `json:"auth,omitempty"`
	TLSA string `json:"tlsa,omitempty"`
	// STSPolicyID, STSMode and STSMX describe the domain's MTA-STS
	// policy in force (RFC 8461 §3.1 id, §3.2 mode and mx patterns).
	STSPolicyID string   `json:"sts_policy_id,omitempty"`
	STSMode     string   `json:"sts_mode,omitempty"`
	STSMX       []string `json:"sts_mx,omitempty"`
	// PolicyType (sts, tlsa, no-policy-found) and PolicyStrings are the
	// TLS-RPT policy of the session (RFC 8460 §4.4): the MTA-STS policy
	// lines, or the TLSA records in presentation form.
	PolicyType    string   `json:"policy_type,omitempty"`
	PolicyStrings []string `json:"policy_strings,omitempty"`
	// ResultType is the RFC 8460 §4.3 result type of a session whose TLS
	// failed the published policy; absent when it did not fail.
	ResultType string `json:"result_type,omitempty"`
	// PublishedIgnored: a published policy was known but not enforced
	// (MTA-STS mode testing, TLS-Required: No, or the relay's
	// published-policies setting off).
	PublishedIgnored bool `json:"published_ignored,omitempty"`
	// SendingIP is the relay's own address on the session (TLS-RPT's
	// sending-mta-ip).
	SendingIP string `json:"sending_ip,omitempty"`
	// Route is the entry's hand-off route (HOST[:PORT]) when the
	// outcome came from it: handed-off, or bounced or deferred because
	// the route failed too.
	Route string `json:"route,omitempty"`
	// ReportDomain, RUA and ReportID describe a tlsrpt-sent or
	// tlsrpt-failed event: the policy domain, the address the report
	// went to, and its report-id.
	ReportDomain string `json:"report_domain,omitempty"`
	RUA          string `json:"rua,omitempty"`
	ReportID     string `json:"report_id,omitempty"`
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
	// seq is the number of lines in the whole chain (checkpoint.go).
	seq int64
	// marks wait to go out at the head of the next batch: the record of
	// a cut, or the checkpoint that covers lines found at open.
	marks []Mark
	// cutTo, when >= 0, is the size the live file must be cut back to
	// before anything else is appended: a failed write left bytes after
	// it that could not be removed yet.
	cutTo int64
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
	l := &Log{log: log, f: f, path: path, opt: opt, cutTo: -1}
	last, torn, err := lastLine(path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if torn {
		// A crash mid-write left a line without its newline: it was
		// never acknowledged, so it is cut off, and the cut is recorded
		// in the chain (the next batch starts with a log-repaired line).
		if err := l.cutTornTail(len(last), opt.Now()); err != nil {
			f.Close()
			return nil, err
		}
		if last, _, err = lastLine(path); err != nil {
			f.Close()
			return nil, fmt.Errorf("audit log %s: %w", path, err)
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
	if err := l.startCount(opt.Now()); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if len(l.marks) > 0 {
		// Best effort: a full disk at start must not stop the relay; the
		// marks then lead the first batch that can be written.
		if err := l.writeBatch(nil, opt.Now()); err != nil {
			log.Error("writing the audit log's checkpoint at start; it will lead the next batch", "path", path, "err", err)
		}
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

// Write appends records as one line each, in order, followed by a
// checkpoint, and makes them durable with one fsync for the whole batch.
// The batch is one write(2). When the write or the fsync fails (disk
// full), the file is cut back to where the batch began, so no torn
// fragment stays for the next record to be glued to, and the error is
// returned: none of the batch is in the log. The cut is recorded at the
// head of the next batch that succeeds.
func (l *Log) Write(recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("audit log is closed")
	}
	return l.writeBatch(recs, l.opt.Now())
}

// writeBatch writes the waiting marks, recs and a checkpoint; called with
// l.mu held (or before l is shared).
func (l *Log) writeBatch(recs []Record, now time.Time) error {
	if err := l.finishCut(now); err != nil {
		return err
	}
	// Marshal first: the chain does not depend on the file, and the
	// batch's size decides whether to rotate before it.
	var buf []byte
	var hashes []string
	var starts []time.Time
	prev, seq := l.prev, l.seq
	add := func(line []byte, t time.Time) {
		prev = hashLine(line)
		hashes = append(hashes, prev)
		starts = append(starts, t)
		buf = append(append(buf, line...), '\n')
		seq++
	}
	for _, m := range l.marks {
		m.Seq, m.Prev = seq, prev
		line, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		add(line, m.Time)
	}
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
		add(line, r.Time)
	}
	if len(recs) > 0 || len(l.marks) == 0 || l.marks[len(l.marks)-1].Event != hashchain.Checkpoint {
		line, err := json.Marshal(Mark{Time: now.UTC(), Event: hashchain.Checkpoint, Seq: seq, Prev: prev})
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		add(line, now.UTC())
	}
	if l.rotationDue(int64(len(buf)), now) {
		if err := l.rotate(now); err != nil {
			// Mail flow matters more than file size: keep appending.
			l.log.Error("rotating the audit log", "path", l.path, "err", err)
		}
	}
	start := l.state.Size
	_, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err != nil {
		l.cutTo = start
		if cerr := l.finishCut(now); cerr != nil {
			l.log.Error("cutting a failed batch off the audit log; retried before the next write", "path", l.path, "err", cerr)
		}
		return fmt.Errorf("audit log: %w", err)
	}
	for i, h := range hashes {
		if l.state.Lines == 0 {
			l.state.Start = starts[i]
		}
		l.state.Lines++
		l.state.Last = h
	}
	l.state.Size += int64(len(buf))
	l.prev, l.seq, l.marks = prev, seq, nil
	if err := l.seal(now); err != nil {
		// The batch is durable and chained, with its checkpoint; a seal
		// that lags is what a crash leaves too, and verify accepts it.
		l.log.Error("updating the audit log seal; it lags behind the log", "path", l.path, "err", err)
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

// Scan calls fn for each record of an audit log, in order, skipping the
// log's own lines (checkpoints, repairs). Lines that are
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
		if IsMark(rec.Event) {
			continue
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
