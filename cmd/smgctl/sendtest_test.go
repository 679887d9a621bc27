package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay"
)

// TestSendtestCLI runs `smgctl sendtest` against a live relay that routes
// good.test to a Postfix with modern TLS and plain.test to one without
// TLS, both on the policy list (B4, B5, B9).
func TestSendtestCLI(t *testing.T) {
	testpeer.RequirePostfix(t)
	ca := testpeer.NewCA(t)
	good := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca, Domains: []string{"good.test"}})
	plain := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: []string{"plain.test"}})

	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Hostname = "relay.corp.test"
	cfg.Spool = filepath.Join(dir, "spool")
	cfg.AuditLog = filepath.Join(dir, "audit.log")
	cfg.Policy = filepath.Join(dir, "policy.conf")
	cfg.CAFile = ca.CertFile()
	cfg.DelayWarning = 0
	cfg.Routes = map[string]string{"good.test": good.Addr(), "plain.test": plain.Addr()}
	os.WriteFile(cfg.Policy, []byte("good.test\nplain.test\n"), 0o644)
	r, err := relay.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	via := r.Addr().String()

	// A route names the MX by its IP.
	code, out, errs := run(t, "sendtest", "--to", "p@good.test", "--via", via, "--audit-log", cfg.AuditLog, "--from", "admin@corp.test", "--timeout", "30s")
	if code != 0 || !strings.Contains(out, "delivered to p@good.test via "+good.IP.String()+" over TLSv1.3") ||
		!strings.Contains(out, "policy entry good.test (line 1)") {
		t.Errorf("good MX: exit %d\n%s%s", code, out, errs)
	}
	good.WaitMessages(t, "good.test", 1, 10*time.Second)

	code, out, errs = run(t, "sendtest", "--to", "p@plain.test", "--via", via, "--audit-log", cfg.AuditLog, "--from", "admin@corp.test", "--output", "json")
	validateJSON(t, "sendtest", out)
	var res sendtestResult
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Outcome != "bounced" || res.Record == nil ||
		res.Record.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" || res.QueueID == "" {
		t.Errorf("plain MX: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = run(t, "sendtest", "--to", "q@plain.test", "--via", via, "--audit-log", cfg.AuditLog, "--from", "admin@corp.test")
	if code != 1 || !strings.Contains(out, "bounced for q@plain.test: 503 5.7.0 encryption too weak 0 less than 112 (MX ") {
		t.Errorf("plain MX, table: exit %d\n%s", code, out)
	}
	if n := len(plain.Messages("plain.test")); n != 0 {
		t.Errorf("%d messages reached the plain MX", n)
	}

	// No outcome in time: the audit log names another file.
	code, out, _ = run(t, "sendtest", "--to", "p@good.test", "--via", via, "--audit-log", filepath.Join(dir, "other.log"), "--timeout", "300ms")
	if code != 1 || !strings.Contains(out, "timeout") {
		t.Errorf("timeout: exit %d\n%s", code, out)
	}
}

func TestSendtestUsage(t *testing.T) {
	closed := "127.0.0.1:1" // nothing listens on loopback port 1
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"sendtest"}, "--to ADDRESS is required"},
		{[]string{"sendtest", "--to", "not an address"}, "not an address"},
		{[]string{"sendtest", "--to", "a@b.test", "--timeout", "0s"}, "must be positive"},
		{[]string{"sendtest", "--to", "a@b.test", "--output", "xml"}, "--output"},
		{[]string{"sendtest", "--to", "a@b.test", "--via", closed, "--timeout", "2s"}, "connect to the relay"},
	} {
		code, _, errs := run(t, tc.args...)
		if code != 2 || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d, stderr %q", tc.args, code, errs)
		}
	}
}
