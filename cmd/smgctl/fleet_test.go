package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/report"
	"github.com/smgctl/smgctl/pkg/audit/trace"
	"github.com/smgctl/smgctl/pkg/relay"
)

// fleetRelay is one relay of a fleet: its own spool and audit log.
type fleetRelay struct {
	relay *relay.Relay
	log   string
	stop  func()
}

func startFleetRelay(t *testing.T, dir string, ca *testpeer.CA, mx string, auditMaxSize int64) *fleetRelay {
	t.Helper()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Hostname = filepath.Base(dir) + ".corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.AuditMaxSize = auditMaxSize
	cfg.Policy = filepath.Join(dir, "etc", "policy.conf")
	cfg.CAFile = ca.CertFile()
	cfg.DelayWarning = 0
	cfg.Routes = map[string]string{"partner.test": mx, "other.test": mx}
	r, err := relay.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay %s: %v", dir, err)
			}
		}
	}
	t.Cleanup(stop)
	return &fleetRelay{relay: r, log: cfg.AuditLog, stop: stop}
}

// pushPolicy copies CI's policy file and journal into a relay's
// directory as docs/operations.md ("The shared policy, pushed by CI")
// says: journal first, then the file, each renamed into place.
func pushPolicy(t *testing.T, ciPolicy, relayDir string) {
	t.Helper()
	etc := filepath.Join(relayDir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"policy.conf.journal", "policy.conf"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(ciPolicy), name))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(etc, "."+name+".new")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(etc, name)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitPolicy waits until the relay's /healthz says the policy with this
// SHA-256 is in force without error.
func (f *fleetRelay) waitPolicy(t *testing.T, sha string) {
	t.Helper()
	var h struct {
		SHA256    string `json:"policy_sha256"`
		LastError string `json:"policy_last_error"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + f.relay.AdminAddr().String() + "/healthz")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
		}
		if err == nil && h.SHA256 == sha && h.LastError == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay %s: policy %s not in force (healthz: %+v, %v)", f.log, sha, h, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// send submits one message with swaks and returns its queue ID.
func (f *fleetRelay) send(t *testing.T, msgID, to string) string {
	t.Helper()
	out, code := testpeer.Swaks(t, "--server", f.relay.Addr().String(), "--from", "alice@corp.test",
		"--to", to, "--helo", "smarthost.corp.test", "--header", "Message-Id: "+msgID, "--body", "fleet test\n")
	if code != 0 {
		t.Fatalf("swaks failed (%d):\n%s", code, out)
	}
	m := regexp.MustCompile(`queued as ([0-9A-Z]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no queue ID in swaks output:\n%s", out)
	}
	return m[1]
}

// waitDelivered waits until the relay's log (with its rotated files)
// records a delivery for every recipient.
func (f *fleetRelay) waitDelivered(t *testing.T, rcpts ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]bool{}
		files, _ := audit.Files(f.log)
		for _, p := range files {
			if fh, err := os.Open(p); err == nil {
				audit.Scan(fh, func(r audit.Record) error {
					got[r.Recipient] = got[r.Recipient] || r.Event == audit.Delivered
					return nil
				})
				fh.Close()
			}
		}
		all := true
		for _, r := range rcpts {
			all = all && got[r]
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: deliveries to %v not recorded in time (got %v)", f.log, rcpts, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFleetTwoRelays: two relays behind one smarthost, each with its own
// spool and audit log, enforce one policy that CI edits, gates with
// `policy lint` and pushes to both (file and journal, as
// docs/operations.md says), and deliver to a real Postfix MX. The audit
// commands then read both logs at once: the report counts both relays'
// messages, trace finds a message from either (and one whose recipients
// were split between them), verify checks each relay's chain on its own
// and names the relay whose log was altered.
func TestFleetTwoRelays(t *testing.T) {
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	ca := testpeer.NewCA(t)
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca,
		Domains: []string{"partner.test", "other.test"}})
	t.Setenv("NO_COLOR", "1")

	dir := t.TempDir()
	// CI's copy of the policy, edited with smgctl and gated by lint.
	ciPolicy := filepath.Join(dir, "ci", "policy.conf")
	os.MkdirAll(filepath.Dir(ciPolicy), 0o755)
	os.WriteFile(ciPolicy, nil, 0o644)
	ciEdit := func(args ...string) string {
		t.Helper()
		for _, cmd := range [][]string{append([]string{"policy"}, args...), {"policy", "lint", "--strict"}, {"audit", "verify", ciPolicy + ".journal"}} {
			if code, out, errs := run(t, append([]string{"--policy", ciPolicy}, cmd...)...); code != 0 {
				t.Fatalf("CI %v: exit %d\n%s%s", cmd, code, out, errs)
			}
		}
		return fileSHA256(t, ciPolicy)
	}
	sha := ciEdit("add", "partner.test", "--verify", "cert", "--actor", "ci")
	dirA, dirB := filepath.Join(dir, "relay-a"), filepath.Join(dir, "relay-b")
	pushPolicy(t, ciPolicy, dirA)
	pushPolicy(t, ciPolicy, dirB)
	// A policy that fails the gate is never pushed.
	broken := filepath.Join(dir, "ci", "broken.conf")
	os.WriteFile(broken, []byte("partner.test bits=nine\n"), 0o644)
	if code, _, _ := run(t, "--policy", broken, "policy", "lint", "--strict"); code == 0 {
		t.Fatal("lint passed a broken policy")
	}

	// Relay A rotates its log after a few records: its chain spans files.
	a := startFleetRelay(t, dirA, ca, mx.Addr(), 1500)
	b := startFleetRelay(t, dirB, ca, mx.Addr(), 0)
	a.waitPolicy(t, sha)
	b.waitPolicy(t, sha)
	// A second push reaches both running relays.
	sha = ciEdit("add", "other.test", "--actor", "ci")
	pushPolicy(t, ciPolicy, dirA)
	pushPolicy(t, ciPolicy, dirB)
	a.waitPolicy(t, sha)
	b.waitPolicy(t, sha)

	qa1 := a.send(t, "<a1@corp.test>", "a1@partner.test")
	a.send(t, "<split@corp.test>", "x@partner.test")
	a.send(t, "<a3@corp.test>", "a3@other.test")
	qb1 := b.send(t, "<b1@corp.test>", "b1@other.test")
	qb2 := b.send(t, "<split@corp.test>", "y@partner.test")
	a.waitDelivered(t, "a1@partner.test", "x@partner.test", "a3@other.test")
	b.waitDelivered(t, "b1@other.test", "y@partner.test")
	mx.WaitMessages(t, "partner.test", 3, 10*time.Second)
	a.stop()
	b.stop()
	if files, _ := audit.Files(a.log); len(files) < 2 {
		t.Fatalf("relay A's log did not rotate: %v", files)
	}
	// The pushes came with their journal: no relay took them for edits
	// made outside it.
	for _, f := range []*fleetRelay{a, b} {
		files, _ := audit.Files(f.log)
		for _, p := range files {
			fh, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			audit.Scan(fh, func(r audit.Record) error {
				if r.Event == audit.PolicyOutsideJournal {
					t.Errorf("%s: %+v", p, r)
				}
				return nil
			})
			fh.Close()
		}
	}

	reportOf := func(args ...string) *report.Report {
		t.Helper()
		code, out, errs := run(t, append([]string{"audit", "report", "-o", "json"}, args...)...)
		var r report.Report
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("audit report %v: exit %d\n%s%s", args, code, out, errs)
		}
		return &r
	}
	byDomain := func(r *report.Report) map[string]int {
		m := map[string]int{}
		for _, g := range r.Domains {
			m[g.Name] = g.Messages
		}
		return m
	}
	// One relay's log alone: its three messages.
	if r := reportOf("--audit-log", a.log); r.Total.Messages != 3 {
		t.Errorf("relay A alone: %d messages", r.Total.Messages)
	}
	// Both: five messages, per-domain numbers merged, every file read.
	for _, args := range [][]string{
		{"--audit-log", a.log, "--audit-log", b.log},
		{"--audit-log", filepath.Join(dir, "relay-*", "audit.log")},
	} {
		r := reportOf(args...)
		d := byDomain(r)
		if r.Total.Messages != 5 || r.Total.Delivered != 5 || r.Total.DeliveredTLS != 5 || d["partner.test"] != 3 || d["other.test"] != 2 {
			t.Errorf("%v: total %+v, domains %v", args, r.Total, d)
		}
		var fromB bool
		for _, f := range r.Files {
			fromB = fromB || f == b.log
		}
		if len(r.Files) < 3 || !fromB {
			t.Errorf("%v: files %v", args, r.Files)
		}
	}
	if code, _, errs := run(t, "audit", "report", "--audit-log", filepath.Join(dir, "relay-x*", "audit.log")); code != exitUsage || !strings.Contains(errs, "no audit log matches") {
		t.Errorf("a glob matching nothing: exit %d %s", code, errs)
	}
	// A log named twice would count its records twice: refused.
	if code, _, errs := run(t, "audit", "report", "--audit-log", a.log, "--audit-log", a.log); code != exitUsage || !strings.Contains(errs, "both hold") {
		t.Errorf("a log named twice: exit %d %s", code, errs)
	}

	// trace finds a message of either relay and names the relay.
	both := []string{"--audit-log", a.log, "--audit-log", b.log}
	code, out, errs := run(t, append([]string{"audit", "trace", qb1}, both...)...)
	if code != 0 || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(b.log)+` +1 +\S+ +delivered +`).MatchString(out) ||
		!strings.Contains(out, "b1@other.test: delivered") {
		t.Errorf("trace %s (relay B): exit %d\n%s%s", qb1, code, out, errs)
	}
	if code, out, _ := run(t, append([]string{"audit", "trace", qa1}, both...)...); code != 0 || !strings.Contains(out, a.log+" ") {
		t.Errorf("trace %s (relay A): exit %d\n%s", qa1, code, out)
	}
	// One Message-ID, its recipients split between the relays.
	code, out, _ = run(t, append([]string{"audit", "trace", "<split@corp.test>", "-o", "json"}, both...)...)
	var tr trace.Trace
	if code != 0 || json.Unmarshal([]byte(out), &tr) != nil || len(tr.Recipients) != 2 || len(tr.QueueIDs) != 2 {
		t.Fatalf("trace split: exit %d\n%s", code, out)
	}
	relays := map[string]string{}
	for _, r := range tr.Recipients {
		relays[r.Address] = r.Attempts[0].Relay
		if r.Final != "delivered" {
			t.Errorf("split %s: %s", r.Address, r.Final)
		}
	}
	if relays["x@partner.test"] != a.log || relays["y@partner.test"] != b.log {
		t.Errorf("split: relays %v", relays)
	}
	if code, _, errs := run(t, "audit", "trace", qb2, "--audit-log", a.log); code != exitFailed || !strings.Contains(errs, "no record of "+qb2+" in "+a.log) {
		t.Errorf("relay B's message in relay A's log: exit %d %s", code, errs)
	}

	// verify: each relay's chain on its own.
	code, out, errs = run(t, "audit", "verify", a.log, b.log)
	if code != 0 || !regexp.MustCompile(`(?m)^ok audit log `+regexp.QuoteMeta(a.log)+`: \d+ lines in \d+ files, sealed`).MatchString(out) ||
		!strings.Contains(out, "ok audit log "+b.log+": ") {
		t.Fatalf("verify clean: exit %d\n%s%s", code, out, errs)
	}
	// Relay B's log altered: B is named broken, A still verifies.
	data, err := os.ReadFile(b.log)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(data), `"recipient":"b1@other.test"`, `"recipient":"b9@other.test"`, 1)
	if forged == string(data) {
		t.Fatalf("no record of b1@other.test in %s", b.log)
	}
	if err := os.WriteFile(b.log, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run(t, "audit", "verify", filepath.Join(dir, "relay-*", "audit.log")) // a glob, as docs/operations.md
	if code != exitFailed || !strings.Contains(out, "ok audit log "+a.log+": ") ||
		!strings.Contains(out, "BROKEN audit log "+b.log+": "+b.log+":") {
		t.Errorf("verify with relay B altered: exit %d\n%s%s", code, out, errs)
	}
}
