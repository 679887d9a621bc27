package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/relay"
)

// TestManPages: every command's page has the sections an operator looks
// for (EXIT STATUS, ENVIRONMENT, FILES), and smgctl-policy(5) describes
// the file format (a file has no exit status); groff, when present, renders each without a warning.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	if code, _, errs := run(t, "docs", "man", dir); code != 0 {
		t.Fatalf("docs man: exit %d: %s", code, errs)
	}
	pages, err := filepath.Glob(filepath.Join(dir, "*.[15]"))
	if err != nil {
		t.Fatal(err)
	}
	groff, _ := exec.LookPath("groff")
	seen := map[string]bool{}
	for _, p := range pages {
		name := filepath.Base(p)
		seen[name] = true
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		page := string(data)
		want := []string{".SH ENVIRONMENT", ".SH FILES", ".SH SEE ALSO"}
		if strings.HasSuffix(name, ".1") {
			want = append(want, ".SH EXIT STATUS", "SMGCTL_CONFIG", "/etc/smgctl/relay.conf", `smgctl-policy(5)`)
		} else {
			want = append(want, ".TH SMGCTL-POLICY 5", ".SH OPTIONS", "bits=", "on\\-fail=")
		}
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("%s lacks %q", name, w)
			}
		}
		if groff != "" {
			out, err := exec.Command(groff, "-k", "-man", "-Tutf8", "-ww", "-z", p).CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("groff %s: %v %s", name, err, out)
			}
		}
	}
	for _, name := range []string{"smgctl.1", "smgctl-relay.1", "smgctl-queue-hold.1", "smgctl-policy.5", "smgctl-audit-tlsrpt.1"} {
		if !seen[name] {
			t.Errorf("no %s among %d pages", name, len(pages))
		}
	}

	// Every relay setting is on the relay's page as its flag, and the
	// hand-written policy page names every value the parser takes.
	relayPage, err := os.ReadFile(filepath.Join(dir, "smgctl-relay.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range relay.Keys {
		if !strings.Contains(string(relayPage), `\fB--`+k+`\fP`) {
			t.Errorf("smgctl-relay.1 lacks the setting --%s", k)
		}
	}
	probePage, _ := os.ReadFile(filepath.Join(dir, "smgctl-probe.1"))
	if !strings.Contains(string(probePage), `\fB--ignore-published\fP`) {
		t.Error("smgctl-probe.1 lacks --ignore-published")
	}
	policyPage, _ := os.ReadFile(filepath.Join(dir, "smgctl-policy.5"))
	for _, w := range []string{".BR verify= none | cert | dane", ".BR on\\-fail= bounce | defer | route:", "published\\-policies", ".SH PUBLISHED POLICIES"} {
		if !strings.Contains(string(policyPage), w) {
			t.Errorf("smgctl-policy.5 lacks %q", w)
		}
	}
}
