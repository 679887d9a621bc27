package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// A journal segment cut short while the relay was down is on /healthz
// (degraded, with the reason) and in the metrics from the start, and
// stays there until the operator removes it from corrupt/ and sends
// SIGHUP (Reload).
func TestJournalDamageOnHealthAndMetrics(t *testing.T) {
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	sp, err := spool.OpenRelay(spoolDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		env := &spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{{Address: fmt.Sprintf("u%d@clear.test", i)}}}
		if err := sp.Put(env, strings.NewReader("Subject: x\r\n\r\n"+strings.Repeat("y", 400)+"\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()
	segs, _ := filepath.Glob(filepath.Join(spoolDir, "journal", "*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	st, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[0], st.Size()/2); err != nil {
		t.Fatal(err)
	}

	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.Admin, cfg.Hostname, cfg.Resolver = "127.0.0.1:0", "127.0.0.1:0", "relay.corp.test", "127.0.0.1:53"
	cfg.Spool, cfg.AuditLog, cfg.Policy = spoolDir, filepath.Join(dir, "audit.log"), filepath.Join(dir, "policy.conf")
	cfg.Routes = map[string]string{"clear.test": closedPort(t)}
	os.WriteFile(cfg.Policy, nil, 0o644)
	r, err := relay.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + r.AdminAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type healthz struct {
		Status   string
		Problems []struct{ Part, Level, Reason string }
	}
	check := func() healthz {
		t.Helper()
		_, body := get("/healthz")
		var h healthz
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return h
	}
	h := check()
	if h.Status != "degraded" || len(h.Problems) != 1 || h.Problems[0].Part != "spool-journal" ||
		!strings.Contains(h.Problems[0].Reason, "1 damaged journal segment(s)") || !strings.Contains(h.Problems[0].Reason, "unaccounted") {
		t.Errorf("healthz: %+v", h)
	}
	_, m := get("/metrics")
	for _, want := range []string{"smgctl_spool_journal_damaged_total 1", "smgctl_spool_journal_corrupt_segments 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(m, "smgctl_spool_journal_unaccounted_bytes 0\n") {
		t.Error("no unaccounted bytes in the metrics")
	}

	// The operator has looked at it and removes it: SIGHUP clears it.
	corrupt, _ := filepath.Glob(filepath.Join(spoolDir, "corrupt", "*.seg"))
	if len(corrupt) != 1 {
		t.Fatalf("corrupt/ holds %v", corrupt)
	}
	os.Remove(corrupt[0])
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h = check(); h.Status != "ok" && time.Now().Before(deadline); h = check() {
		time.Sleep(20 * time.Millisecond)
	}
	if h.Status != "ok" {
		t.Errorf("after removing the segment and a reload: %+v", h)
	}
}
