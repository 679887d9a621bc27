package relay_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/policy/store"
	"github.com/smgctl/smgctl/pkg/relay"
)

// A listed partner's mail is never delivered in clear while the policy
// file is rewritten in place by a slow writer (truncate, pause, half,
// pause, rest). The old watcher loaded the truncated file (entries=0) and
// delivered to mx-none in clear; the finished edit must still be in
// force within a second of the writer closing the file.
func TestPolicyRewrittenInPlaceNeverInClear(t *testing.T) {
	w := startWorld(t, "none")
	const before = "# rewritten in place\nclear.test on-fail=defer\na.example\nb.example\nc.example\n"
	const after = before + "d.example\n"
	l := startRelay(t, w, before, nil)
	l.waitPolicy(t, 4, time.Second)
	time.Sleep(300 * time.Millisecond) // the watcher is watching

	wrote := make(chan time.Time, 1)
	go func() {
		f, err := os.OpenFile(l.policy, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Error(err)
			wrote <- time.Now()
			return
		}
		time.Sleep(time.Second)
		f.WriteString(after[:len(after)/2])
		time.Sleep(time.Second)
		f.WriteString(after[len(after)/2:])
		f.Close()
		wrote <- time.Now()
	}()

	// The writer waits a second after the truncate: the write shows.
	for deadline := time.Now().Add(time.Second); !strings.Contains(l.metrics(t), "\nsmgctl_policy_write_in_progress 1\n"); {
		if time.Now().After(deadline) {
			t.Fatal("metrics do not show the write in progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var rcpts []string
	var closed time.Time
	for i := 0; closed.IsZero(); i++ {
		rcpt := fmt.Sprintf("u%d@clear.test", i)
		l.send(t, "alice@corp.test", rcpt)
		rcpts = append(rcpts, rcpt)
		if h := l.healthz(t); h["policy_entries"].(float64) < 4 {
			t.Errorf("policy in force during the write: %v", h)
		}
		select {
		case closed = <-wrote:
		case <-time.After(200 * time.Millisecond):
		}
	}
	l.waitPolicy(t, 5, time.Second-time.Since(closed))
	if len(rcpts) < 3 {
		t.Fatalf("only %d messages sent during the write", len(rcpts))
	}
	for _, rcpt := range rcpts {
		rec := l.record(t, rcpt, audit.Deferred, audit.Delivered)
		if rec.Event != audit.Deferred || rec.PolicyTarget != "clear.test" {
			t.Errorf("%s: %s under entry %q (%s)", rcpt, rec.Event, rec.PolicyTarget, rec.Diagnostic)
		}
	}
	if n := len(w.none.Messages("clear.test")); n != 0 {
		t.Errorf("%d messages for the listed clear.test reached its MX in clear", n)
	}
}

// bareRelay runs a relay without peers: these tests are about its
// policy handling and its admin endpoints, not about delivery.
func bareRelay(t *testing.T, policyText string, tweak func(*relay.Config)) *lab {
	t.Helper()
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "relay.corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Policy = filepath.Join(dir, "policy.conf")
	cfg.Admin = "127.0.0.1:0"
	cfg.Resolver = "127.0.0.1:1"
	cfg.Routes = map[string]string{"partner.example": "127.0.0.1:1"}
	if policyText != "" {
		if err := os.WriteFile(cfg.Policy, []byte(policyText), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if tweak != nil {
		tweak(&cfg)
	}
	return runRelay(t, nil, cfg)
}

// get fetches an admin URL, failing the test if it takes over 2 s.
func (l *lab) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + l.relay.AdminAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A policy path turned into a FIFO (which blocked the reload, /healthz
// and /metrics for ever), a link to /dev/zero (which grew memory to GBs)
// or an oversized file is refused at once: the old policy stays, health
// and metrics say so and keep answering, SIGHUP returns, and a valid
// edit afterwards is in force within a second.
func TestPolicyPathNotARegularFile(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		make       func(t *testing.T, path string)
	}{
		{"fifo", "not a regular file (a FIFO)", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
		{"dev-zero", "not a regular file (a character device)", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"oversized", "larger than the 32 MiB", func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// A real 33 MiB file, not sparse: reading it is what
			// must not happen.
			line := []byte(strings.Repeat("# padding\n", 1<<10))
			for n := 0; n <= 33<<20; n += len(line) {
				f.Write(line)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := bareRelay(t, "partner.example\n", nil)
			odd := filepath.Join(filepath.Dir(l.policy), "odd")
			tc.make(t, odd)
			if err := os.Rename(odd, l.policy); err != nil {
				t.Fatal(err)
			}

			deadline := time.Now().Add(time.Second)
			for {
				code, body := l.get(t, "/healthz")
				var h struct {
					Status   string `json:"status"`
					Problems []struct{ Part, Reason string }
					Entries  float64 `json:"policy_entries"`
				}
				json.Unmarshal([]byte(body), &h)
				if code == 200 && h.Status == "degraded" && len(h.Problems) == 1 &&
					h.Problems[0].Part == "policy" && strings.Contains(h.Problems[0].Reason, tc.want) && h.Entries == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("/healthz after the policy became %s: %d %s", tc.name, code, body)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if _, m := l.get(t, "/metrics"); !strings.Contains(m, "\nsmgctl_policy_last_reload_ok 0\n") || !strings.Contains(m, "\nsmgctl_policy_entries 1\n") {
				t.Errorf("metrics do not show the refusal:\n%s", grepLines(m, "smgctl_policy"))
			}
			hup := make(chan error, 1)
			go func() { hup <- l.relay.Reload() }()
			select {
			case err := <-hup:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Reload (SIGHUP) = %v, want %q", err, tc.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Reload (SIGHUP) blocked")
			}

			os.Remove(l.policy)
			replacePolicy(t, l.policy, "partner.example\nlater.example\n")
			l.waitPolicy(t, 2, time.Second)
			if _, body := l.get(t, "/healthz"); !strings.Contains(body, `"status":"ok"`) {
				t.Errorf("refusal not cleared by a good file: %s", body)
			}
		})
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// A policy content change that did not come through `smgctl policy` (its
// journal records the hash of the file each edit left) is an audit
// record; edits through the store are not.
func TestPolicyChangeOutsideJournalAudited(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.conf")
	s := &store.Store{Path: path}
	add := func(domain string) {
		t.Helper()
		tg, err := policy.ParseTarget(domain)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(context.Background(), "tester", tg, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	add("partner.example")
	l := bareRelay(t, "", func(c *relay.Config) { c.Policy = path })
	outside := func() []audit.Record {
		f, err := os.Open(l.cfg.AuditLog)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var recs []audit.Record
		audit.Scan(f, func(r audit.Record) error {
			if r.Event == audit.PolicyOutsideJournal {
				recs = append(recs, r)
			}
			return nil
		})
		return recs
	}
	if recs := outside(); len(recs) != 0 {
		t.Fatalf("a journaled policy audited as changed outside: %+v", recs)
	}

	prev := sumOf(t, path)
	const hand = "partner.example\nhand.example\n"
	replacePolicy(t, path, hand)
	l.waitPolicy(t, 2, time.Second)
	recs := outside()
	if len(recs) != 1 {
		t.Fatalf("%d policy-changed-outside-journal records after a hand edit, want 1", len(recs))
	}
	r := recs[0]
	h := sha256.Sum256([]byte(hand))
	if r.PolicyFile != path || r.PolicySHA256 != hex.EncodeToString(h[:]) || r.PolicyPrevSHA256 != prev || r.JournalSHA256 != prev {
		t.Errorf("record %+v; want file %s, sha256 %x, prev and journal %s", r, path, h, prev)
	}

	add("third.example")
	l.waitPolicy(t, 3, time.Second)
	if recs := outside(); len(recs) != 1 {
		t.Errorf("an edit through the store was audited as outside: %+v", recs[1:])
	}
}

func sumOf(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
