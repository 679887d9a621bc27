package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/queuectl"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// testSpool makes a spool with two deferred messages, as the relay leaves
// them, and returns its directory and their IDs.
func testSpool(t *testing.T) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var ids []string
	for _, to := range []string{"a@partner.test", "b@bank.test"} {
		env := &spool.Envelope{
			From: "alice@corp.test", MessageID: "<m-" + to + ">",
			Recipients: []spool.Recipient{{Address: to, Attempts: 1, LastReply: "451 4.4.1 no answer",
				NextAttempt: time.Now().Add(time.Hour)}},
		}
		if err := sp.Put(env, strings.NewReader("Subject: to "+to+"\r\n\r\nhello\r\n")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	return dir, ids
}

func listJSON(t *testing.T, dir string) []queuectl.Message {
	t.Helper()
	code, out, errs := run(t, "queue", "list", "--spool", dir, "--output", "json")
	if code != 0 {
		t.Fatalf("list: %d %s", code, errs)
	}
	var doc struct {
		SchemaVersion int                `json:"schema_version"`
		Messages      []queuectl.Message `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.SchemaVersion != 1 {
		t.Fatalf("list JSON: %v\n%s", err, out)
	}
	return doc.Messages
}

func TestQueueCLI(t *testing.T) {
	dir, ids := testSpool(t)

	msgs := listJSON(t, dir)
	if len(msgs) != 2 || msgs[0].ID != ids[0] || msgs[0].From != "alice@corp.test" ||
		msgs[0].Recipients[0].State != "pending" || msgs[0].Recipients[0].NextAttempt == nil ||
		msgs[0].Recipients[0].LastReply != "451 4.4.1 no answer" {
		t.Fatalf("list: %+v", msgs)
	}
	// The JSON field names are the documented schema.
	_, out, _ := run(t, "queue", "list", "--spool", dir, "--output", "json")
	for _, k := range []string{`"id"`, `"arrival"`, `"size"`, `"from"`, `"message_id"`, `"recipients"`, `"address"`, `"state"`, `"attempts"`, `"last_reply"`, `"next_attempt"`, `"delay_notified"`} {
		if !strings.Contains(out, k) {
			t.Errorf("list JSON lacks %s:\n%s", k, out)
		}
	}
	if code, out, _ := run(t, "queue", "list", "--spool", dir); code != 0 || !strings.Contains(out, ids[1]) ||
		!strings.Contains(out, "b@bank.test") || !strings.Contains(out, "2 message(s)") {
		t.Errorf("list table: %d\n%s", code, out)
	}

	code, out, _ := run(t, "queue", "show", ids[0], "--spool", dir, "--output", "json", "--body")
	var shown struct {
		queuectl.Message
		Body string `json:"body"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown.ID != ids[0] || !strings.Contains(shown.Body, "Subject: to a@partner.test") {
		t.Errorf("show: %d %s", code, out)
	}

	// retry --all: every pending recipient due now.
	if code, out, errs := run(t, "queue", "retry", "--all", "--spool", dir); code != 0 || strings.Count(out, "retried") != 2 {
		t.Errorf("retry --all: %d %s %s", code, out, errs)
	}
	for _, m := range listJSON(t, dir) {
		if m.Recipients[0].NextAttempt != nil {
			t.Errorf("after retry: %+v", m.Recipients[0])
		}
	}

	// delete, then the same again: the second names an ID not queued (exit 2).
	t.Setenv("SMGCTL_ACTOR", "env-admin")
	if code, out, _ := run(t, "queue", "delete", ids[0], "--spool", dir, "--output", "json", "--actor", "carol"); code != 0 || !strings.Contains(out, `"done": true`) {
		t.Errorf("delete: %d %s", code, out)
	}
	if code, _, errs := run(t, "queue", "delete", ids[0], "--spool", dir); code != 2 || !strings.Contains(errs, "not in the queue") {
		t.Errorf("delete again: %d %s", code, errs)
	}

	// bounce: the message leaves, a DSN with the null sender takes its place.
	code, out, errs := run(t, "queue", "bounce", ids[1], "--spool", dir, "--hostname", "relay.corp.test", "--output", "json")
	var doc struct {
		Results []queuectl.Result `json:"results"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Results) != 1 || doc.Results[0].DSN == "" {
		t.Fatalf("bounce: %d %s %s", code, out, errs)
	}
	res := doc.Results
	// Each removal left an admin-action record for the relay to audit:
	// --actor wins, else SMGCTL_ACTOR.
	acts, err := queuectl.ReadAdminActions(dir, nil)
	if err != nil || len(acts) != 2 {
		t.Fatalf("admin records: %+v %v", acts, err)
	}
	if a := acts[0]; a.Action != queuectl.ActionDeleted || a.QueueID != ids[0] || a.Actor != "carol" ||
		a.Sender != "alice@corp.test" || a.MessageID != "<m-a@partner.test>" || len(a.Recipients) != 1 ||
		a.Recipients[0].Address != "a@partner.test" || a.Recipients[0].DSN != "" {
		t.Errorf("delete record: %+v", a)
	}
	if a := acts[1]; a.Action != queuectl.ActionReturned || a.QueueID != ids[1] || a.Actor != "env-admin" ||
		len(a.Recipients) != 1 || a.Recipients[0].Address != "b@bank.test" || a.Recipients[0].DSN != res[0].DSN ||
		a.Recipients[0].Diagnostic != smtpreply.AdminReturn.String() {
		t.Errorf("bounce record: %+v", a)
	}
	msgs = listJSON(t, dir)
	if len(msgs) != 1 || msgs[0].ID != res[0].DSN || msgs[0].From != "" || msgs[0].DSNOf != ids[1] ||
		msgs[0].Recipients[0].Address != "alice@corp.test" {
		t.Errorf("after bounce: %+v", msgs)
	}
	code, out, _ = run(t, "queue", "show", res[0].DSN, "--spool", dir, "--body")
	if code != 0 || !strings.Contains(out, "From: MAILER-DAEMON@relay.corp.test") || !strings.Contains(out, smtpreply.AdminReturn.String()) {
		t.Errorf("DSN: %d\n%s", code, out)
	}
}

func TestQueueCLIErrors(t *testing.T) {
	dir, ids := testSpool(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"queue", "list", "--spool", filepath.Join(dir, "nope")}, 2, "no such file"},
		{[]string{"queue", "list", "--spool", dir, "--output", "xml"}, 2, "--output"},
		{[]string{"queue", "show", "not-an-id", "--spool", dir}, 2, "not a queue ID"},
		{[]string{"queue", "show", "0000000000000000", "--spool", dir}, 2, "not in the queue"},
		{[]string{"queue", "show", "--spool", dir}, 2, "accepts 1 arg"},
		{[]string{"queue", "retry", "--spool", dir}, 2, "give queue IDs or --all"},
		{[]string{"queue", "delete", "--all", ids[0], "--spool", dir}, 2, "give queue IDs or --all"},
		{[]string{"queue", "retry", "0000000000000000", ids[0], "--spool", dir}, 2, "not in the queue"},
	} {
		code, _, errs := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, want %d; stderr %q", tc.args, code, tc.code, errs)
		}
	}
	// The partly failed retry still retried the good ID.
	if m := listJSON(t, dir); m[0].Recipients[0].NextAttempt != nil {
		t.Errorf("good ID not retried: %+v", m[0])
	}
	// An empty queue says so.
	empty := filepath.Join(t.TempDir(), "spool")
	sp, _ := spool.Open(empty, nil)
	sp.Close()
	if code, out, _ := run(t, "queue", "list", "--spool", empty); code != 0 || !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("empty: %d %s", code, out)
	}
}

// A journal segment the relay kept in corrupt/ (it held less than was
// acknowledged) is a warning on every `queue list`, with what was lost,
// and exit 1, until the operator removes it.
func TestQueueListShowsJournalDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.OpenRelay(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		env := &spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{{Address: "bob@partner.test"}}}
		if err := sp.Put(env, strings.NewReader("Subject: x\r\n\r\n"+strings.Repeat("y", 300)+"\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "journal", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	st, _ := os.Stat(segs[0])
	if err := os.Truncate(segs[0], st.Size()/2); err != nil {
		t.Fatal(err)
	}

	// The first opener recovers: what is left is queued, the rest reported.
	code, out, errs := run(t, "queue", "list", "--spool", dir)
	if code != 1 || !strings.Contains(out, "message(s)") ||
		!regexp.MustCompile(`(?m)^smgctl: warning: damaged journal segment .*/corrupt/[0-9]+\.seg: segment cut short: [0-9]+ bytes, [0-9]+ were acknowledged; [0-9]+ record\(s\) recovered, [1-9][0-9]* acknowledged bytes unaccounted for`).MatchString(errs) {
		t.Errorf("list: exit %d\n%s\n%s", code, out, errs)
	}
	// The JSON carries the warning too, for a script that reads no stderr.
	code, out, errs = run(t, "queue", "list", "--spool", dir, "--output", "json")
	var doc struct {
		Warnings []struct {
			Kind             string `json:"kind"`
			Segment          string `json:"segment"`
			BytesUnaccounted *int64 `json:"bytes_unaccounted"`
		} `json:"warnings"`
	}
	if code != 1 || !strings.Contains(errs, "damaged journal segment") || json.Unmarshal([]byte(out), &doc) != nil ||
		len(doc.Warnings) != 1 || doc.Warnings[0].Kind != "damaged_journal" || !strings.HasSuffix(doc.Warnings[0].Segment, ".seg") ||
		doc.Warnings[0].BytesUnaccounted == nil || *doc.Warnings[0].BytesUnaccounted <= 0 {
		t.Errorf("list json: exit %d %s\n%s", code, errs, out)
	}
	corrupt, _ := filepath.Glob(filepath.Join(dir, "corrupt", "*.seg"))
	if len(corrupt) != 1 {
		t.Fatalf("corrupt/: %v", corrupt)
	}
	os.Remove(corrupt[0])
	if code, _, errs := run(t, "queue", "list", "--spool", dir); code != 0 || errs != "" {
		t.Errorf("after removing the segment: exit %d %s", code, errs)
	}
}

// "queue delete -" reads IDs as postsuper -d - does: one a line, the
// first word, comments and blank lines skipped.
func TestReadQueueIDs(t *testing.T) {
	ids, err := readQueueIDs(strings.NewReader("0CT4H1P9VGA2K3QF\n\n# held ones\n0CT4H1PA2N6M0S1B  1234 alice@corp.test\n  0CT4H1PA2N6M0S1C # trailing\n"))
	if err != nil || strings.Join(ids, ",") != "0CT4H1P9VGA2K3QF,0CT4H1PA2N6M0S1B,0CT4H1PA2N6M0S1C" {
		t.Errorf("ids %v, err %v", ids, err)
	}
}
