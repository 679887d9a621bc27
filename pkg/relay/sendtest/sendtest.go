// Package sendtest is B9: after adding a partner, the admin submits a test
// message through the relay and learns its fate — delivered over which TLS
// to which MX, or why not, in the relay's exact words — from the audit log,
// the same record an auditor would read.
package sendtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Submission is a test message the relay accepted.
type Submission struct {
	QueueID   string `json:"queue_id"`
	MessageID string `json:"message_id"`
	From      string `json:"from"`
	To        string `json:"to"`
}

// Message is what Submit sends.
type Message struct {
	Via  string // the relay's SMTP address, host:port
	From string
	To   string
	Helo string // EHLO name and the Message-ID's domain
}

// queuedAs finds the queue ID in the relay's "250 2.0.0 Ok: queued as ID"
// (the Postfix wording, which the relay uses too).
var queuedAs = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// Submit sends one test message through the relay at m.Via. The relay is
// on the operator's own network (loopback by default), so no STARTTLS:
// what is being tested is the relay's outbound leg.
func Submit(ctx context.Context, m Message) (Submission, error) {
	if m.Helo == "" {
		m.Helo = "localhost"
	}
	// The relay keeps and records addresses in their canonical form
	// (package address): send that form, so the audit record is found.
	to, err := address.Parse(m.To)
	if err != nil {
		return Submission{}, fmt.Errorf("recipient %q: %w", m.To, err)
	}
	m.To = to.String()
	if m.From != "" {
		from, err := address.Parse(m.From)
		if err != nil {
			return Submission{}, fmt.Errorf("sender %q: %w", m.From, err)
		}
		m.From = from.String()
	}
	var token [8]byte
	rand.Read(token[:])
	sub := Submission{
		MessageID: fmt.Sprintf("<sendtest.%s@%s>", hex.EncodeToString(token[:]), m.Helo),
		From:      m.From, To: m.To,
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Minute)
	}
	c, err := smtpclient.Dial(ctx, m.Via, smtpclient.Options{
		HeloName: m.Helo,
		Timeouts: smtpclient.UniformTimeouts(time.Until(deadline)),
	})
	if err != nil {
		return sub, fmt.Errorf("connect to the relay at %s: %w", m.Via, err)
	}
	defer c.Close()
	if err := c.Hello(ctx); err != nil {
		return sub, fmt.Errorf("relay %s: %w", m.Via, err)
	}
	if _, err := c.Mail(ctx, m.From, smtpclient.MailOptions{}); err != nil {
		return sub, fmt.Errorf("relay %s: %w", m.Via, err)
	}
	if rep, err := c.Rcpt(ctx, m.To); err != nil {
		return sub, fmt.Errorf("relay %s: %w", m.Via, err)
	} else if rep.Code != 250 && rep.Code != 251 {
		return sub, fmt.Errorf("relay %s: RCPT: %s", m.Via, rep)
	}
	rep, err := c.Data(ctx, bytes.NewReader(body(m, sub.MessageID)))
	if err != nil {
		return sub, fmt.Errorf("relay %s: %w", m.Via, err)
	}
	if mm := queuedAs.FindStringSubmatch(rep.Text()); mm != nil {
		sub.QueueID = mm[1]
	}
	c.Quit(ctx)
	return sub, nil
}

func body(m Message, msgID string) []byte {
	var b bytes.Buffer
	now := time.Now()
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: smgctl sendtest %s\r\nDate: %s\r\nMessage-ID: %s\r\n",
		m.From, m.To, now.UTC().Format(time.RFC3339), now.Format(time.RFC1123Z), msgID)
	b.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString("This is a test message sent with `smgctl sendtest` to check that mail\r\n")
	b.WriteString("to this address leaves the gateway encrypted as the TLS policy requires.\r\n")
	b.WriteString("No action is needed.\r\n")
	return b.Bytes()
}

// ErrNoOutcome is returned by Await when the audit log has no outcome for
// the message before ctx ends.
var ErrNoOutcome = errors.New("no outcome in the audit log yet")

// Await follows the audit log at path until it holds an outcome for the
// submission's recipient and returns it: delivered or would-bounce (it
// went out), bounced or dropped (returned), or deferred (the relay keeps
// trying; the record says why the first attempt failed). It reads only
// what is appended after the bytes already seen, and starts over when the
// log was rotated (shorter than what was read).
func Await(ctx context.Context, path string, sub Submission, poll time.Duration) (audit.Record, error) {
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	var off int64
	var partial []byte
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		rec, found, err := scanFrom(path, &off, &partial, sub)
		if err != nil {
			return audit.Record{}, err
		}
		if found {
			return rec, nil
		}
		select {
		case <-ctx.Done():
			return audit.Record{}, fmt.Errorf("%w (%s)", ErrNoOutcome, path)
		case <-tick.C:
		}
	}
}

func scanFrom(path string, off *int64, partial *[]byte, sub Submission) (audit.Record, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return audit.Record{}, false, nil // the relay writes it at its first outcome
	}
	if err != nil {
		return audit.Record{}, false, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() < *off {
		*off, *partial = 0, nil // rotated
	}
	if _, err := f.Seek(*off, io.SeekStart); err != nil {
		return audit.Record{}, false, fmt.Errorf("audit log: %w", err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		*off += int64(len(line))
		if err != nil {
			// An unterminated last line is being written: keep it for the
			// next read.
			*partial = append(*partial, line...)
			return audit.Record{}, false, nil
		}
		if len(*partial) > 0 {
			line = append(*partial, line...)
			*partial = nil
		}
		var rec audit.Record
		if json.Unmarshal(line, &rec) != nil {
			continue // not ours to judge; `smgctl audit verify` does
		}
		if matches(rec, sub) {
			return rec, true, nil
		}
	}
}

func matches(rec audit.Record, sub Submission) bool {
	if !audit.Outcome(rec.Event) || !strings.EqualFold(rec.Recipient, sub.To) {
		// hop-failed: an MX passed over; the attempt's outcome follows.
		return false
	}
	if sub.QueueID != "" && rec.QueueID == sub.QueueID {
		return true
	}
	return sub.MessageID != "" && rec.MessageID == sub.MessageID
}

// Went reports whether the record says the message left the relay
// (handed off to the entry's route included).
func Went(rec audit.Record) bool {
	return rec.Event == audit.Delivered || rec.Event == audit.WouldBounce || rec.Event == audit.HandedOff
}
