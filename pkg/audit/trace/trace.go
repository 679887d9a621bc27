// Package trace answers "how did this message leave?" from the audit log
// alone: every attempt for every recipient of one message, found by queue
// ID or Message-ID, and each recipient's final outcome.
package trace

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
)

// Attempt is one audit record of the message, with where it was read.
type Attempt struct {
	audit.Record
	// Relay is the audit log the record was read from, set when several
	// relays' logs are read at once (FindLogs): the path it was named by.
	Relay string `json:"relay,omitempty"`
	File  string `json:"file"`
	Line  int    `json:"line"`
}

// Recipient is one recipient's history.
type Recipient struct {
	Address  string    `json:"recipient"`
	Attempts []Attempt `json:"attempts"`
	// Final is the recipient's last event: delivered, would-bounce,
	// handed-off, bounced, dropped, or deleted or returned by an administrator
	// (`smgctl queue delete/bounce`); "pending" when the last attempt was
	// a deferral (the message is still queued, or the log ends before
	// its fate). hop-failed records (an MX passed over within an
	// attempt) are listed among the attempts but never final.
	Final string `json:"final"`
	// By names the administrator when Final is deleted or returned.
	By string `json:"by,omitempty"`
}

// Pending is Recipient.Final while only deferrals are recorded.
const Pending = "pending"

// Trace is the history of one message.
type Trace struct {
	ID         string      `json:"id"`
	QueueIDs   []string    `json:"queue_ids"`
	MessageIDs []string    `json:"message_ids"`
	Recipients []Recipient `json:"recipients"`
}

// Matches reports whether a record belongs to the message id names: its
// queue ID, or its Message-ID with or without the angle brackets.
func Matches(rec *audit.Record, id string) bool {
	if rec.QueueID == id || rec.MessageID == id {
		return true
	}
	bare := strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	return bare != "" && strings.TrimSuffix(strings.TrimPrefix(rec.MessageID, "<"), ">") == bare
}

// Find reads the log set and collects the message's records in log
// order. It returns nil when no record matches.
func Find(ctx context.Context, files []logset.File, id string) (*Trace, error) {
	return FindLogs(ctx, []logset.Log{{Files: files}}, id)
}

// FindLogs is Find over the logs of several relays. Each log is read on
// its own; a recipient's attempts from all of them are put in time order
// (stable, so one log's order holds for records of the same instant), as
// the smarthost may hand one message's recipients, or its retries, to
// different relays. With more than one log each attempt names its Relay.
func FindLogs(ctx context.Context, logs []logset.Log, id string) (*Trace, error) {
	id = strings.TrimSpace(id)
	if id == "" {
		return nil, fmt.Errorf("empty queue ID or Message-ID")
	}
	// A cheap byte search skips the lines that cannot match before any
	// JSON is decoded. encoding/json writes <, > and & as \u003c …, so
	// the needle is the bare ID, and only when it has none of those.
	needle := []byte(strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">"))
	if bytes.ContainsAny(needle, `<>&"\`) || len(needle) == 0 {
		needle = nil
	}
	t := &Trace{ID: id}
	byRcpt := map[string]int{}
	for _, l := range logs {
		relay := ""
		if len(logs) > 1 {
			relay = l.Path
		}
		err := logset.Lines(ctx, l.Files, func(file string, n int, line []byte) error {
			if needle != nil && !bytes.Contains(line, needle) {
				return nil
			}
			var rec audit.Record
			if logset.Decode(line, &rec) != nil || audit.IsMark(rec.Event) || !Matches(&rec, id) {
				return nil
			}
			if !slices.Contains(t.QueueIDs, rec.QueueID) {
				t.QueueIDs = append(t.QueueIDs, rec.QueueID)
			}
			if rec.MessageID != "" && !slices.Contains(t.MessageIDs, rec.MessageID) {
				t.MessageIDs = append(t.MessageIDs, rec.MessageID)
			}
			i, ok := byRcpt[rec.Recipient]
			if !ok {
				i = len(t.Recipients)
				byRcpt[rec.Recipient] = i
				t.Recipients = append(t.Recipients, Recipient{Address: rec.Recipient})
			}
			r := &t.Recipients[i]
			r.Attempts = append(r.Attempts, Attempt{Record: rec, Relay: relay, File: file, Line: n})
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(t.Recipients) == 0 {
		return nil, nil
	}
	for i := range t.Recipients {
		r := &t.Recipients[i]
		if len(logs) > 1 {
			slices.SortStableFunc(r.Attempts, func(a, b Attempt) int { return a.Time.Compare(b.Time) })
		}
		// The last outcome decides; a hop-failed record is one hop of
		// an attempt whose outcome is recorded after it.
		r.Final = Pending
		for _, a := range slices.Backward(r.Attempts) {
			if audit.Outcome(a.Event) {
				if a.Event != audit.Deferred {
					r.Final = string(a.Event)
				}
				r.By = a.Actor
				break
			}
		}
	}
	if len(logs) > 1 {
		slices.SortStableFunc(t.Recipients, func(a, b Recipient) int { return a.Attempts[0].Time.Compare(b.Attempts[0].Time) })
	}
	return t, nil
}
