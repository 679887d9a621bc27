package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// An auth file that cannot work is a usage error (exit 2) that names the
// problem, before the relay listens: without a certificate, and with a
// malformed line (FILE:LINE).
func TestRelayAuthFileUsageErrors(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	os.WriteFile(users, []byte("# users\n\nalice:secret\n"), 0o600)
	policy := filepath.Join(dir, "policy.conf")
	os.WriteFile(policy, nil, 0o644)
	leaf := testpeer.NewCA(t).Issue(t, "relay.corp.test")
	base := []string{"relay", "--policy", policy, "--listen", "127.0.0.1:0", "--resolver", "127.0.0.1:53",
		"--spool", filepath.Join(dir, "spool"), "--audit-log", filepath.Join(dir, "audit.log"), "--auth-file", users}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no certificate", nil, "auth-file needs tls-cert and tls-key"},
		{"malformed line", []string{"--tls-cert", leaf.CertFile, "--tls-key", leaf.KeyFile}, users + ":3: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := Main(append(append([]string{}, base...), tc.args...), nil, &out, &errb); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q, want %q", errb.String(), tc.want)
			}
		})
	}
	// SMGCTL_AUTH_FILE is read like every other key.
	t.Setenv("SMGCTL_AUTH_FILE", users)
	g := &globals{}
	cmd := newRelayCmd(g)
	if err := g.loadSettings(cmd); err != nil {
		t.Fatal(err)
	}
	cfg, err := relayConfig(g, cmd.Flags())
	if err != nil || cfg.AuthFile != users {
		t.Errorf("SMGCTL_AUTH_FILE: AuthFile %q, err %v", cfg.AuthFile, err)
	}
}
