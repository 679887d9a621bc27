package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Each journal record carries the hash of the file its edit left, and
// LastSHA256 finds the newest one: what the relay compares the file it
// loads with to notice an edit made outside `smgctl policy`.
func TestJournalRecordsFileHash(t *testing.T) {
	s := newStore(t)
	sumOf := func() string {
		b, err := os.ReadFile(s.Path)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	if got, err := LastSHA256(s.JournalPath()); got != "" || err != nil {
		t.Fatalf("no journal: %q, %v", got, err)
	}
	ctx := context.Background()
	if _, err := s.Add(ctx, "tester", target(t, "a.example"), nil, ""); err != nil {
		t.Fatal(err)
	}
	first := sumOf()
	if _, err := s.Import(ctx, "tester", []policy.Entry{
		{Target: target(t, "b.example"), Options: policy.DefaultOptions()},
		{Target: target(t, "c.example"), Options: policy.DefaultOptions()},
	}, false); err != nil {
		t.Fatal(err)
	}
	second := sumOf()
	recs := journal(t, s)
	if len(recs) != 3 || recs[0].SHA256 != first || recs[1].SHA256 != second || recs[2].SHA256 != second {
		t.Fatalf("journal hashes %+v, want %s then %s twice", recs, first, second)
	}
	if got, err := LastSHA256(s.JournalPath()); got != second || err != nil {
		t.Fatalf("LastSHA256 = %q, %v; want %s", got, err, second)
	}

	// A torn tail or a line that is not a change record is skipped.
	f, _ := os.OpenFile(s.JournalPath(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"checkpoint":3}` + "\n" + `{"time":"2026`)
	f.Close()
	if got, err := LastSHA256(s.JournalPath()); got != second || err != nil {
		t.Fatalf("after a torn tail: %q, %v", got, err)
	}

	// A record from before the hash existed vouches for nothing.
	os.WriteFile(s.JournalPath(), []byte(`{"action":"add","target":"a.example","prev":""}`+"\n"), 0o644)
	if got, err := LastSHA256(s.JournalPath()); got != "" || err != nil {
		t.Fatalf("old record: %q, %v", got, err)
	}

	// A FIFO in the journal's place is refused, not waited on.
	os.Remove(s.JournalPath())
	if err := syscall.Mkfifo(s.JournalPath(), 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	if _, err := LastSHA256(s.JournalPath()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO journal: %v", err)
	}
}
