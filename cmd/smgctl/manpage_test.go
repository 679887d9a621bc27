package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
	for _, name := range []string{"smgctl.1", "smgctl-relay.1", "smgctl-queue-hold.1", "smgctl-policy.5"} {
		if !seen[name] {
			t.Errorf("no %s among %d pages", name, len(pages))
		}
	}
}
