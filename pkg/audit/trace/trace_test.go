package trace

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
)

func TestMatches(t *testing.T) {
	rec := &audit.Record{QueueID: "0PGL79KC2VKGDR15", MessageID: "<m1@corp.example>"}
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"0PGL79KC2VKGDR15", true},
		{"<m1@corp.example>", true},
		{"m1@corp.example", true},
		{"<m1@corp.example", true},
		{"0pgl79kc2vkgdr15", false}, // queue IDs are exact
		{"m1@corp", false},
		{"<>", false},
		{"", false},
	} {
		if got := Matches(rec, tc.id); got != tc.want {
			t.Errorf("Matches(%q) = %v", tc.id, got)
		}
	}
}

// TestFind follows one message across a rotation and a torn line: two
// recipients, one deferred then delivered, one still pending.
func TestFind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(p string, recs ...audit.Record) {
		l, err := audit.Open(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(recs...); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	base := audit.Record{QueueID: "Q1", MessageID: "<m&1@corp.test>", Sender: "a@corp.test"}
	rec := func(d time.Duration, rcpt string, ev audit.Event, attempt int) audit.Record {
		r := base
		r.Time, r.Recipient, r.Event, r.Attempt = t0.Add(d), rcpt, ev, attempt
		return r
	}
	write(path+".1", rec(0, "b@x.test", audit.Deferred, 1), rec(0, "c@y.test", audit.Deferred, 1),
		audit.Record{Time: t0, QueueID: "Q2", Recipient: "z@x.test", Event: audit.Delivered})
	f, _ := os.OpenFile(path+".1", os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-01-02T03`) // torn
	f.Close()
	write(path, rec(time.Hour, "b@x.test", audit.Delivered, 2))
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"Q1", "<m&1@corp.test>", "m&1@corp.test"} {
		tr, err := Find(context.Background(), files, id)
		if err != nil || tr == nil {
			t.Fatalf("%s: %v %v", id, tr, err)
		}
		if len(tr.Recipients) != 2 || tr.QueueIDs[0] != "Q1" || tr.MessageIDs[0] != "<m&1@corp.test>" {
			t.Fatalf("%s: %+v", id, tr)
		}
		b, c := tr.Recipients[0], tr.Recipients[1]
		if b.Address != "b@x.test" || b.Final != "delivered" || len(b.Attempts) != 2 || b.Attempts[1].Attempt != 2 ||
			b.Attempts[0].File != path+".1" || b.Attempts[1].File != path || b.Attempts[1].Line != 1 {
			t.Errorf("%s: b: %+v", id, b)
		}
		if c.Address != "c@y.test" || c.Final != Pending || len(c.Attempts) != 1 {
			t.Errorf("%s: c: %+v", id, c)
		}
	}
	if tr, err := Find(context.Background(), files, "Q3"); tr != nil || err != nil {
		t.Errorf("Q3: %+v %v", tr, err)
	}
	if _, err := Find(context.Background(), files, " "); err == nil {
		t.Error("an empty ID was accepted")
	}
}

// An administrator's deletion or return is the recipient's final outcome,
// naming who did it.
func TestFindAdminActions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Write(
		audit.Record{Time: t0, QueueID: "Q1", Recipient: "a@x.test", Event: audit.Deferred, Attempt: 1},
		audit.Record{Time: t0, QueueID: "Q1", Recipient: "b@x.test", Event: audit.Deferred, Attempt: 1},
		audit.Record{Time: t0.Add(time.Hour), QueueID: "Q1", Recipient: "a@x.test", Event: audit.Deleted, Actor: "carol"},
		audit.Record{Time: t0.Add(time.Hour), QueueID: "Q2", Recipient: "c@x.test", Event: audit.Returned, Actor: "dave",
			Diagnostic: "550 5.0.0 delivery cancelled by the administrator"},
	)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Find(context.Background(), files, "Q1")
	if err != nil || tr == nil || len(tr.Recipients) != 2 {
		t.Fatalf("Q1: %+v %v", tr, err)
	}
	if a := tr.Recipients[0]; a.Final != string(audit.Deleted) || a.By != "carol" || len(a.Attempts) != 2 || a.Attempts[1].Actor != "carol" {
		t.Errorf("a: %+v", a)
	}
	if b := tr.Recipients[1]; b.Final != Pending || b.By != "" {
		t.Errorf("b: %+v", b)
	}
	tr, err = Find(context.Background(), files, "Q2")
	if err != nil || tr == nil || tr.Recipients[0].Final != string(audit.Returned) || tr.Recipients[0].By != "dave" {
		t.Errorf("Q2: %+v %v", tr, err)
	}
}

// Two relays' logs: a message whose recipients the smarthost split
// between them, one deferred on relay A and delivered on its retry
// through relay B. Attempts merge in time order and name their relay.
func TestFindLogs(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write := func(p string, recs ...audit.Record) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		l, err := audit.Open(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Write(recs...); err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	a, b := filepath.Join(dir, "a", "audit.log"), filepath.Join(dir, "b", "audit.log")
	msg := "<m1@corp.test>"
	// B's log is written first and holds the later record: file order is
	// not time order.
	write(b, audit.Record{Time: t0.Add(time.Hour), QueueID: "QB", MessageID: msg, Recipient: "x@p.test", Event: audit.Delivered, Attempt: 1},
		audit.Record{Time: t0.Add(time.Minute), QueueID: "QB2", MessageID: msg, Recipient: "y@p.test", Event: audit.Delivered, Attempt: 1})
	write(a, audit.Record{Time: t0, QueueID: "QA", MessageID: msg, Recipient: "x@p.test", Event: audit.Deferred, Attempt: 1})
	logs, err := logset.Logs([]string{b, a})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := FindLogs(context.Background(), logs, msg)
	if err != nil || tr == nil || len(tr.Recipients) != 2 {
		t.Fatalf("%+v %v", tr, err)
	}
	x, y := tr.Recipients[0], tr.Recipients[1]
	if x.Address != "x@p.test" || x.Final != "delivered" || len(x.Attempts) != 2 ||
		x.Attempts[0].Relay != a || x.Attempts[0].QueueID != "QA" || x.Attempts[1].Relay != b {
		t.Errorf("x: %+v", x)
	}
	if y.Address != "y@p.test" || y.Final != "delivered" || y.Attempts[0].Relay != b {
		t.Errorf("y: %+v", y)
	}
	if tr, err := FindLogs(context.Background(), logs, "QA"); err != nil || tr == nil || tr.Recipients[0].Final != Pending {
		t.Errorf("QA: %+v %v", tr, err)
	}
	// One log: no relay named, as before.
	if tr, err := FindLogs(context.Background(), logs[1:], msg); err != nil || tr == nil || tr.Recipients[0].Attempts[0].Relay != "" {
		t.Errorf("one log: %+v %v", tr, err)
	}
}

// A hop-failed record (an MX host passed over within an attempt) is
// listed among the recipient's attempts but is never its final outcome.
func TestFindHopFailedNeverFinal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = l.Write(
		audit.Record{Time: t0, QueueID: "Q1", Recipient: "a@x.test", Event: audit.HopFailed, MX: "mx10.x.test", Attempt: 1},
		audit.Record{Time: t0, QueueID: "Q1", Recipient: "a@x.test", Event: audit.Delivered, MX: "mx20.x.test", Attempt: 1},
		audit.Record{Time: t0, QueueID: "Q1", Recipient: "b@x.test", Event: audit.Deferred, MX: "mx20.x.test", Attempt: 1},
		audit.Record{Time: t0.Add(time.Hour), QueueID: "Q1", Recipient: "b@x.test", Event: audit.HopFailed, MX: "mx10.x.test", Attempt: 2},
	)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Find(context.Background(), files, "Q1")
	if err != nil || tr == nil || len(tr.Recipients) != 2 {
		t.Fatalf("Q1: %+v %v", tr, err)
	}
	if a := tr.Recipients[0]; a.Final != string(audit.Delivered) || len(a.Attempts) != 2 || a.Attempts[0].Event != audit.HopFailed {
		t.Errorf("a: %+v", a)
	}
	if b := tr.Recipients[1]; b.Final != Pending || len(b.Attempts) != 2 {
		t.Errorf("b: %+v", b)
	}
}
