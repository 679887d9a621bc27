package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// relay --check: 0 with a working setup, 1 with each kind of problem, 2
// for settings that do not parse; it never creates the spool or the log.
func TestRelayCheck(t *testing.T) {
	dns := testpeer.StartDNS(t)
	ca := testpeer.NewCA(t)
	good := ca.Issue(t, "relay.corp.test")
	expired := ca.IssueOpts(t, testpeer.LeafOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}, "relay.corp.test")
	soon := ca.IssueOpts(t, testpeer.LeafOptions{NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 24 * time.Hour)}, "relay.corp.test")
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.conf")
	os.WriteFile(policy, []byte("partner.test\n"), 0o644)
	notADir := filepath.Join(dir, "file")
	os.WriteFile(notADir, nil, 0o644)
	spool := filepath.Join(dir, "spool")
	auditLog := filepath.Join(dir, "log", "audit.log")
	base := []string{"relay", "--check", "--policy", policy, "--spool", spool, "--audit-log", auditLog, "--resolver", dns.Addr()}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"good", []string{"--tls-cert", good.CertFile, "--tls-key", good.KeyFile}, 0, "policy +ok +\\S+policy.conf: 1 entries"},
		{"expires soon", []string{"--tls-cert", soon.CertFile, "--tls-key", soon.KeyFile}, 0, "tls-cert +warning .*in less than 30 days"},
		{"expired", []string{"--tls-cert", expired.CertFile, "--tls-key", expired.KeyFile}, 1, "tls-cert +error .*expired on"},
		{"key mismatch", []string{"--tls-cert", good.CertFile, "--tls-key", soon.KeyFile}, 1, "tls-cert +error"},
		{"policy missing", []string{"--policy", filepath.Join(dir, "polcy.conf")}, 1, "policy +error .*polcy.conf does not exist"},
		{"spool not a directory", []string{"--spool", filepath.Join(notADir, "spool")}, 1, "spool +error .*not a directory"},
		{"spool is a file", []string{"--spool", notADir}, 1, "spool +error .*file is not a directory"},
		{"resolver gone", []string{"--resolver", "127.0.0.1:9"}, 1, "resolver +error .*does not answer"},
		{"bad value", []string{"--max-size", "ten"}, 2, "want a size such as 10MB"},
		{"DANE with a loopback resolver", nil, 0, "dane +ok +DNSSEC answers of .* are believed"},
		{"published policies off", []string{"--published-policies=false"}, 0, "published-policies +warning +off: MTA-STS and DANE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(append(append([]string{}, base...), tc.args...), nil, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errb.String())
			}
			if !matchLine(out.String()+errb.String(), tc.want) {
				t.Errorf("no line matching %q in\n%s%s", tc.want, out.String(), errb.String())
			}
		})
	}
	for _, p := range []string{spool, filepath.Dir(auditLog)} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("--check created %s", p)
		}
	}
}

func matchLine(text, pattern string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		if ok, _ := regexp.MatchString(pattern, line); ok {
			return true
		}
	}
	return false
}
