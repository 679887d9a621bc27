// Package testpeer starts real peers (Postfix, openssl s_server, swaks, an
// in-process DNS server) on loopback addresses for the tests of other packages.
//
// It is meant to be imported only from _test.go files. Everything it starts is
// bound to 127.0.0.0/8 and stopped in t.Cleanup.
package testpeer

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where a missing tool
// is a failure rather than a reason to skip.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1" || v == "yes"
}

// missing skips the test, or fails it in CI so a broken runner cannot pass
// by skipping everything.
func missing(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI=true, so this is fatal)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips (fails in CI) unless the test runs as root, which Postfix
// instances and binding port 25 need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "not running as root; real-peer tests need root (.ci/run runs as root)")
	}
}

// RequireBinary skips (fails in CI) unless name is on PATH or in the usual
// sbin directories, and returns its path.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := lookPath(name); err == nil {
		return p
	}
	missing(t, name+" not installed; .ci/run installs it")
	return ""
}

// lookPath also searches sbin directories, which are often missing from the
// PATH of non-login shells and IDEs.
func lookPath(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		cand := dir + "/" + name
		if st, serr := os.Stat(cand); serr == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", err
}

// RequirePostfix skips (fails in CI) unless Postfix is installed and we are
// root. It returns the path of the postfix command.
func RequirePostfix(t testing.TB) string {
	t.Helper()
	p := RequireBinary(t, "postfix")
	RequireBinary(t, "postconf")
	RequireRoot(t)
	return p
}

// RequireSwaks skips (fails in CI) unless swaks is installed.
func RequireSwaks(t testing.TB) string {
	t.Helper()
	return RequireBinary(t, "swaks")
}

// RequireOpenSSL skips (fails in CI) unless the openssl command is installed.
func RequireOpenSSL(t testing.TB) string {
	t.Helper()
	return RequireBinary(t, "openssl")
}
