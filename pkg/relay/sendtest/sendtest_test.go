package sendtest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
)

func line(t testing.TB, r audit.Record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// Await reads appended records only once each, waits for a line being
// written, and starts over after a rotation.
func TestAwaitFollowsTheLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	sub := Submission{QueueID: "Q1", MessageID: "<m@x>", To: "B@p.test"}
	var off int64
	var partial []byte
	if _, found, err := scanFrom(path, &off, &partial, sub); found || err != nil {
		t.Fatalf("missing log: %v %v", found, err)
	}
	other := line(t, audit.Record{Event: audit.Delivered, QueueID: "Q0", Recipient: "b@p.test"})
	ours := line(t, audit.Record{Event: audit.Bounced, QueueID: "Q1", Recipient: "b@p.test", Diagnostic: "503 5.7.0 encryption too weak 0 less than 112"})
	os.WriteFile(path, append(append([]byte{}, other...), ours[:10]...), 0o600)
	if _, found, _ := scanFrom(path, &off, &partial, sub); found || off != int64(len(other)+10) {
		t.Fatalf("half a line: found %v off %d", found, off)
	}
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(ours[10:])
	f.Close()
	rec, found, err := scanFrom(path, &off, &partial, sub)
	if !found || err != nil || rec.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Fatalf("completed line: %+v %v %v", rec, found, err)
	}
	// Rotated: a new, shorter file is read from its start.
	os.WriteFile(path, ours, 0o600)
	off = int64(len(other) + len(ours) + 5)
	if _, found, _ := scanFrom(path, &off, &partial, sub); !found {
		t.Errorf("record in the rotated log not found")
	}
}

func TestAwaitMatchesByMessageIDWithoutQueueID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, line(t, audit.Record{Event: audit.Deferred, QueueID: "Q9", MessageID: "<m@x>", Recipient: "b@p.test"}), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := Await(ctx, path, Submission{MessageID: "<m@x>", To: "b@p.test"}, time.Millisecond)
	if err != nil || rec.Event != audit.Deferred || Went(rec) {
		t.Errorf("Await = %+v, %v", rec, err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := Await(ctx2, path, Submission{MessageID: "<other@x>", To: "b@p.test"}, time.Millisecond); err == nil {
		t.Errorf("Await found a record of another message")
	}
}

func TestQueuedAs(t *testing.T) {
	for in, want := range map[string]string{
		"2.0.0 Ok: queued as 0CT4H1P9VGA2K3QF": "0CT4H1P9VGA2K3QF",
		"Ok: queued as ABC123 (extra)":         "ABC123",
		"2.0.0 Ok":                             "",
	} {
		got := ""
		if m := queuedAs.FindStringSubmatch(in); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// FuzzScanFrom: whatever bytes the audit log holds, following it never
// panics and never reads past its end.
func FuzzScanFrom(f *testing.F) {
	f.Add([]byte(`{"event":"delivered","queue_id":"Q1","recipient":"b@p.test"}` + "\n"))
	f.Add([]byte("not json\n{\"event\":\n"))
	f.Add([]byte{0xff, '\n', '\n'})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "audit.log")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Skip()
		}
		var off int64
		var partial []byte
		scanFrom(path, &off, &partial, Submission{QueueID: "Q1", To: "b@p.test"})
		if off > int64(len(data)) {
			t.Errorf("offset %d past the end %d", off, len(data))
		}
	})
}

// The relay records a recipient in its canonical form (issue 10 point 3),
// so the test message goes to that form and its record is looked for
// under it; an address the relay would refuse is refused here first.
func TestSubmitCanonicalAddresses(t *testing.T) {
	ctx := context.Background()
	sub, err := Submit(ctx, Message{Via: "127.0.0.1:1", From: `"Ad Min"@Corp.Test.`, To: "User@ＰＬＡＩＮ.Test."})
	if err == nil {
		t.Fatal("Submit to a closed port succeeded")
	}
	if sub.To != "User@plain.test" || sub.From != `"Ad Min"@corp.test` {
		t.Errorf("submission %+v, want the canonical addresses", sub)
	}
	for _, bad := range []string{"user@plain.test..", "a b@plain.test", "user@[127.0.0.1"} {
		if _, err := Submit(ctx, Message{Via: "127.0.0.1:1", From: "a@corp.test", To: bad}); err == nil || !strings.Contains(err.Error(), "recipient") {
			t.Errorf("Submit to %q: %v, want a recipient error", bad, err)
		}
	}
}

// A hop-failed record (an MX passed over) is not the message's outcome:
// Await goes on to the attempt's outcome record after it.
func TestAwaitSkipsHopFailed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	hop := line(t, audit.Record{Event: audit.HopFailed, QueueID: "Q1", Recipient: "b@p.test", MX: "mx10.p.test"})
	out := line(t, audit.Record{Event: audit.Delivered, QueueID: "Q1", Recipient: "b@p.test", MX: "mx20.p.test"})
	os.WriteFile(path, append(hop, out...), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := Await(ctx, path, Submission{QueueID: "Q1", To: "b@p.test"}, time.Millisecond)
	if err != nil || rec.Event != audit.Delivered || rec.MX != "mx20.p.test" {
		t.Errorf("Await = %+v, %v; want the delivery via mx20", rec, err)
	}
}
