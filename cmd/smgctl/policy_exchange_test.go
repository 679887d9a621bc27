package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportExitCodes pins SPEC §5's split for policy import, which
// testscript's "! cmd" cannot tell apart: a line that is not valid input
// exits 2 and writes nothing (no file, no journal, even though other
// lines were fine); a valid line that cannot be represented exactly
// exits 1 with the rest imported; notes alone (a Postfix .domain key)
// exit 0.
func TestImportExitCodes(t *testing.T) {
	cases := []struct {
		name    string
		format  string
		input   string
		code    int
		written bool   // whether the policy file exists afterwards
		stderr  string // a line stderr must hold
	}{
		{"smg bad domain", "smg", "partner.com\nBAD..x\nother.example\n", exitUsage, false,
			`in.txt:2: "BAD..x" is not a domain or address (empty label in "bad..x")`},
		{"smg clean", "smg", "partner.com\n\n", exitOK, true, "in.txt:2: blank line: the catch-all *"},
		{"sendmail bad bits", "sendmail", "TLS_Rcpt:a.example PERM+ENCR:112\nTLS_Rcpt:b.example ENCR:999\n", exitUsage, false,
			`in.txt:2: ENCR:999: bits="999": want a whole number from 1 to 256`},
		{"sendmail loss", "sendmail", "TLS_Rcpt:a.example PERM+ENCR:112\nTLS_Rcpt:postmaster@ ENCR:112\n", exitFailed, true,
			"in.txt:2: TLS_Rcpt:postmaster@ matches a local part in every domain"},
		{"postfix bad level", "postfix", "a.example encrypt\nb.example opportunistic\n", exitUsage, false,
			`in.txt:2: unknown security level "opportunistic"`},
		// Postfix's dane level is no loss: published TLSA records are
		// honoured for every domain; the note says so.
		{"postfix dane note", "postfix", "a.example encrypt\nb.example dane\n", exitOK, true,
			"in.txt:2: dane: imported as mode=off; smgctl honours published TLSA records"},
		{"postfix dot key", "postfix", ".sub.example encrypt\n", exitOK, true,
			"in.txt:1: .sub.example imported as sub.example, which also covers sub.example itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pol := filepath.Join(dir, "policy.conf")
			in := filepath.Join(dir, "in.txt")
			if err := os.WriteFile(in, []byte(c.input), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			var out, errb bytes.Buffer
			code := Main([]string{"--policy", pol, "policy", "import", "--actor", "t", "--format", c.format, "in.txt"},
				strings.NewReader(""), &out, &errb)
			if code != c.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, c.code, out.String(), errb.String())
			}
			if !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, errb.String())
			}
			_, err := os.Stat(pol)
			if written := err == nil; written != c.written {
				t.Errorf("policy file written: %v, want %v", written, c.written)
			}
			_, err = os.Stat(pol + ".journal")
			if written := err == nil; written != c.written {
				t.Errorf("journal written: %v, want %v", written, c.written)
			}
			if c.code == exitUsage && out.Len() > 0 {
				t.Errorf("stdout on an input error:\n%s", out.String())
			}
		})
	}
}
