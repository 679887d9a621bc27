package relay

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// startLog starts a relay on cfg, waits until it has said how to send a
// test, stops it and returns its log.
func startLog(t *testing.T, cfg Config) string {
	t.Helper()
	var buf testpeer.SyncBuffer
	r, err := New(cfg, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "to send a test message") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return buf.String() + "\nlisten " + r.Addr().String()
}

func labConfig(dir string) Config {
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Spool = filepath.Join(dir, "var/spool/smgctl")
	cfg.AuditLog = filepath.Join(dir, "var/log/smgctl/audit.log")
	cfg.Policy = filepath.Join(dir, "etc/smgctl/policy.conf")
	cfg.Routes = map[string]string{"partner.test": "127.0.0.1:1"} // no DNS needed
	return cfg
}

// A fresh install: no /etc/smgctl, no spool, no log directory. The relay
// says that nothing is enforced and why, how to add a partner, which
// directories it created, where its files are and how to send a test —
// and nothing in that is a warning.
func TestStartNotesFreshInstall(t *testing.T) {
	dir := t.TempDir()
	cfg := labConfig(dir)
	cfg.defaultPolicyPath = cfg.Policy
	log := startLog(t, cfg)
	addr := log[strings.LastIndex(log, "listen ")+len("listen "):]
	for _, want := range []string{
		"nothing is enforced: the policy file " + cfg.Policy + " does not exist, so every domain gets opportunistic TLS unless it publishes MTA-STS or DANE; to require TLS for a partner: smgctl policy add --policy " + cfg.Policy + " partner.example",
		"created the audit log directory " + filepath.Join(dir, "var/log/smgctl"),
		"created the spool directory " + cfg.Spool,
		"files: spool " + cfg.Spool + ", audit log " + cfg.AuditLog + ", policy " + cfg.Policy,
		"to send a test message: smgctl sendtest --to someone@partner.example --via " + addr + " --audit-log " + cfg.AuditLog,
		"the policy directory does not exist yet; polling finds it when it is created",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	for _, bad := range []string{"level=WARN", "policy loaded"} {
		if strings.Contains(log, bad) {
			t.Errorf("log has %q:\n%s", bad, log)
		}
	}

	// The second start creates nothing.
	log = startLog(t, cfg)
	if strings.Contains(log, "created the") {
		t.Errorf("second start says it created a directory:\n%s", log)
	}
}

func TestTestAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:25":     "127.0.0.1:25",
		"[::]:2525":      "[::1]:2525",
		"10.0.0.7:25":    "10.0.0.7:25",
		"127.0.0.1:2525": "127.0.0.1:2525",
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := testAddr(a); got != want {
			t.Errorf("testAddr(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestStartNotesPolicy(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"partner.test\nbank.test bits=256\n", "enforcing 2 policy entries from %s"},
		{"partner.test\n", "enforcing 1 policy entry from %s"},
		{"# nothing yet\n", "nothing is enforced: the policy file %s has no entries"},
	} {
		cfg := labConfig(t.TempDir())
		if err := os.MkdirAll(filepath.Dir(cfg.Policy), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg.Policy, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		log := startLog(t, cfg)
		if want := strings.Replace(tc.want, "%s", cfg.Policy, 1); !strings.Contains(log, want) {
			t.Errorf("policy %q: log lacks %q:\n%s", tc.file, want, log)
		}
	}
}
