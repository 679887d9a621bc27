package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/relay"
)

// Flag beats environment beats config file beats default (SPEC §4).
func TestRelayConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "relay.conf")
	os.WriteFile(file, []byte("listen = 127.0.0.1:1111\nspool = /file/spool\naudit-log = /file/audit.log\npolicy = /file/policy.conf\n"), 0o644)
	t.Setenv("SMGCTL_SPOOL", "/env/spool")
	t.Setenv("SMGCTL_AUDIT_LOG", "/env/audit.log")
	t.Setenv(envPolicy, "")
	g := &globals{}
	cmd := newRelayCmd(g)
	if err := cmd.ParseFlags([]string{"--audit-log", "/flag/audit.log", "--route", "a.test=127.0.0.1:25", "--route", "b.test=127.0.0.2:25"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := relayConfigFrom(g, cmd, file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:1111" || cfg.Spool != "/env/spool" || cfg.AuditLog != "/flag/audit.log" || cfg.Policy != "/file/policy.conf" {
		t.Errorf("config = %+v", cfg)
	}
	if len(cfg.Routes) != 2 {
		t.Errorf("routes = %v", cfg.Routes)
	}
	g.policyPath = "/flag/policy.conf"
	if cfg, _ = relayConfigFrom(g, cmd, file); cfg.Policy != "/flag/policy.conf" {
		t.Errorf("--policy lost to the config file: %q", cfg.Policy)
	}
}

// relayConfigFrom reads the settings as the root command does before any
// command runs (file "" = none), then the relay's flags.
func relayConfigFrom(g *globals, cmd *cobra.Command, file string) (relay.Config, error) {
	g.configPath = file
	if err := g.loadSettings(cmd); err != nil {
		return relay.Config{}, err
	}
	return relayConfig(g, cmd.Flags())
}

func TestRelayBadFlagIsUsageError(t *testing.T) {
	var out, errb nopWriter
	if code := Main([]string{"relay", "--mx-port", "99999"}, nil, &out, &errb); code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// ISSUE 10 #13: `--admin :PORT` would publish /healthz and /metrics on
// every interface; it is refused (exit 2) unless --admin-public says so.
func TestRelayAdminMustBeLoopback(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.conf")
	os.WriteFile(policy, nil, 0o644)
	var out, errb bytes.Buffer
	code := Main([]string{"relay", "--policy", policy, "--listen", "127.0.0.1:0", "--resolver", "127.0.0.1:53",
		"--spool", filepath.Join(dir, "spool"), "--audit-log", filepath.Join(dir, "audit.log"), "--admin", ":9025"}, nil, &out, &errb)
	if code != exitUsage {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, errb.String())
	}
	if want := `admin = ":9025" is not a loopback address`; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr %q, want %q", errb.String(), want)
	}
	g := &globals{}
	cmd := newRelayCmd(g)
	if err := cmd.ParseFlags([]string{"--admin", ":9025", "--admin-public"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := relayConfigFrom(g, cmd, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil || !cfg.AdminPublic {
		t.Errorf("--admin-public: Check = %v, AdminPublic = %v", err, cfg.AdminPublic)
	}
}

// Help names each setting's kind, and a bad value is refused in the
// user's words before anything starts.
func TestRelayFlagKinds(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"relay", "--help"}, nil, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"--max-size size", "--queue-lifetime duration", "--max-connections int", "--allow cidrs", "(default 50MiB)", "(default 5d)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "--max-connections string") || strings.Contains(out.String(), "--queue-lifetime string") {
		t.Errorf("help still says string:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"relay", "--max-size", "10MB", "--queue-lifetime", "1d", "--max-size", "ten"}, nil, &out, &errb); code != exitUsage ||
		!strings.Contains(errb.String(), `invalid argument "ten" for "--max-size" flag: want a size such as 10MB`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}
