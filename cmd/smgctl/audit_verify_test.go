package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
)

func writeAuditLog(t *testing.T, path string, opt audit.Options, n int) {
	t.Helper()
	l, err := audit.OpenWith(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := l.Write(audit.Record{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Event: audit.Delivered,
			QueueID: fmt.Sprintf("Q%03d", i), Sender: "a@corp.example", Recipient: "b@partner.example", Attempt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
}

func runSmgctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestAuditVerifyCLI(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	writeAuditLog(t, log, audit.Options{MaxSize: 2000}, 22)
	policyPath := filepath.Join(dir, "policy.conf")
	t.Setenv("SMGCTL_POLICY", policyPath)
	t.Setenv("SMGCTL_ACTOR", "tester")
	t.Setenv("NO_COLOR", "1")
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		if code, _, stderr := runSmgctl(t, "policy", "add", d); code != 0 {
			t.Fatalf("policy add: %d %s", code, stderr)
		}
	}
	journal := policyPath + ".journal"

	code, stdout, stderr := runSmgctl(t, "audit", "verify", log, journal)
	if code != 0 || !strings.Contains(stdout, "ok audit log "+log+": 44 lines in") || !strings.Contains(stdout, "sealed") ||
		!strings.Contains(stdout, "ok policy journal "+journal+": 6 lines") {
		t.Fatalf("clean: exit %d\n%s%s", code, stdout, stderr)
	}

	// No arguments: SMGCTL_AUDIT_LOG and the policy's journal.
	t.Setenv("SMGCTL_AUDIT_LOG", log)
	if code, stdout, _ := runSmgctl(t, "audit", "verify", "--output", "json"); code != 0 {
		t.Fatalf("no args: exit %d\n%s", code, stdout)
	} else {
		var res struct {
			OK     bool `json:"ok"`
			Chains []struct {
				Kind  string `json:"kind"`
				Lines int    `json:"lines"`
				Break any    `json:"break"`
			} `json:"chains"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil || !res.OK || len(res.Chains) != 2 ||
			res.Chains[0].Kind != "audit-log" || res.Chains[0].Lines != 44 || res.Chains[1].Kind != "policy-journal" {
			t.Fatalf("json: %v\n%s", err, stdout)
		}
	}

	// Tampering: one field of the live file's second record (line 3,
	// after the first record's checkpoint).
	live, _ := os.ReadFile(log)
	lines := strings.SplitAfter(string(live), "\n")
	if len(lines) < 4 {
		t.Fatalf("live file too short for the test: %q", live)
	}
	edited := append([]string{}, lines...)
	edited[2] = strings.Replace(edited[2], `"delivered"`, `"bounced"`, 1)
	os.WriteFile(log, []byte(strings.Join(edited, "")), 0o640)
	code, stdout, _ = runSmgctl(t, "audit", "verify")
	if code != 1 || !strings.Contains(stdout, "BROKEN audit log "+log+": "+log+":3: altered") {
		t.Fatalf("edited line: exit %d\n%s", code, stdout)
	}
	os.WriteFile(log, live, 0o640)

	// Truncation of whole lines at the end: only the seal can tell.
	os.WriteFile(log, []byte(strings.Join(lines[:2], "")), 0o640)
	code, stdout, _ = runSmgctl(t, "audit", "verify", log)
	if code != 1 || !strings.Contains(stdout, log+":3: missing: the seal records") {
		t.Fatalf("truncated: exit %d\n%s", code, stdout)
	}
	os.WriteFile(log, live, 0o640)

	// A forged journal.
	j, _ := os.ReadFile(journal)
	os.WriteFile(journal, bytes.Replace(j, []byte(`"actor":"tester"`), []byte(`"actor":"nobody"`), 1), 0o644)
	code, stdout, _ = runSmgctl(t, "audit", "verify", journal)
	if code != 1 || !strings.Contains(stdout, "BROKEN policy journal "+journal+": "+journal+":1: altered") {
		t.Fatalf("forged journal: exit %d\n%s", code, stdout)
	}

	// Input errors: exit 2.
	if code, _, stderr := runSmgctl(t, "audit", "verify", filepath.Join(dir, "nope.log")); code != 2 || !strings.Contains(stderr, "no such log") {
		t.Errorf("missing file: exit %d %s", code, stderr)
	}
	t.Setenv("SMGCTL_AUDIT_LOG", filepath.Join(dir, "none.log"))
	t.Setenv("SMGCTL_POLICY", filepath.Join(dir, "none.conf"))
	if code, _, stderr := runSmgctl(t, "audit", "verify"); code != 2 || !strings.Contains(stderr, "nothing to verify") {
		t.Errorf("nothing: exit %d %s", code, stderr)
	}
	if code, _, _ := runSmgctl(t, "audit", "verify", "--output", "yaml", log); code != 2 {
		t.Errorf("bad --output: exit %d", code)
	}
}

// TestManPagesAndCompletion: the generated docs exist and name the
// commands and flags they document.
func TestManPagesAndCompletion(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	if code, _, stderr := runSmgctl(t, "docs", "man", dir); code != 0 {
		t.Fatalf("docs man: %d %s", code, stderr)
	}
	for _, page := range []string{"smgctl.1", "smgctl-relay.1", "smgctl-audit-verify.1", "smgctl-policy-add.1", "smgctl-probe.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte(".nh\n.TH \"SMGCTL\" \"1\"")) || !bytes.Contains(b, []byte(".SH NAME")) {
			t.Errorf("%s is not a man page: %.80q", page, b)
		}
	}
	relay, _ := os.ReadFile(filepath.Join(dir, "smgctl-relay.1"))
	if !bytes.Contains(relay, []byte("audit-max-size")) {
		t.Errorf("smgctl-relay.1 lacks --audit-max-size")
	}
	for shell, want := range map[string]string{
		"bash": "__start_smgctl", "zsh": "#compdef smgctl", "fish": "complete -c smgctl",
	} {
		code, stdout, stderr := runSmgctl(t, "completion", shell)
		if code != 0 || !strings.Contains(stdout, want) {
			t.Errorf("completion %s: exit %d, %d bytes, %s", shell, code, len(stdout), stderr)
		}
	}
	if code, _, _ := runSmgctl(t, "docs", "man"); code != 2 {
		t.Errorf("docs man without DIR: exit %d", code)
	}
}

// TestAuditHeadAnchor: `audit head` prints an anchor; `verify --anchor`
// holds the log to it after more writes, and fails once the log is cut
// back and re-sealed (which the files alone cannot show).
func TestAuditHeadAnchor(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	writeAuditLog(t, log, audit.Options{}, 4)
	code, stdout, stderr := runSmgctl(t, "audit", "head", log, "--output", "json")
	var h struct {
		File   string `json:"file"`
		Count  int64  `json:"count"`
		Anchor string `json:"anchor"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &h) != nil || h.Count != 8 || h.File != log || !strings.HasPrefix(h.Anchor, "8:") {
		t.Fatalf("audit head: exit %d %s %s", code, stdout, stderr)
	}
	writeAuditLog(t, log, audit.Options{}, 2)
	if code, stdout, _ := runSmgctl(t, "audit", "verify", "--anchor", h.Anchor, log); code != 0 || !strings.Contains(stdout, "holds the anchor "+h.Anchor) {
		t.Fatalf("verify --anchor on the grown log: exit %d\n%s", code, stdout)
	}
	b, _ := os.ReadFile(log)
	lines := strings.SplitAfter(string(b), "\n")
	os.WriteFile(log, []byte(strings.Join(lines[:6], "")), 0o640) // back to a checkpoint
	os.Remove(audit.SealPath(log))
	writeAuditLog(t, log, audit.Options{}, 0) // a relay start re-seals it
	if code, stdout, _ := runSmgctl(t, "audit", "verify", log); code != 0 {
		t.Fatalf("without an anchor the cut cannot show: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := runSmgctl(t, "audit", "verify", "--anchor", h.Anchor, log); code != 1 || !strings.Contains(stdout, "lines were cut") {
		t.Fatalf("verify --anchor after a cut: exit %d\n%s", code, stdout)
	}
	if code, _, _ := runSmgctl(t, "audit", "verify", "--anchor", "12:nothex", log); code != 2 {
		t.Errorf("a malformed anchor: exit %d", code)
	}
}
