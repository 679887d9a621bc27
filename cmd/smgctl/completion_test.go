package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// complete runs cobra's hidden __complete command, as a shell's
// completion script does, and returns the offered values.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	code, out, errs := run(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d: %s", args, code, errs)
	}
	var got []string
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, ":") { // ":4" is the directive
			continue
		}
		value, _, _ := strings.Cut(line, "\t") // "value\tdescription"
		got = append(got, value)
	}
	return got
}

func wantCompletions(t *testing.T, got []string, want ...string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("completions %q, want %q", got, want)
	}
}

// TestCompletePolicyTargets: `policy remove` and `policy check` complete
// the targets of the policy file in force — here named only by the config
// file, as for an operator on a configured host.
func TestCompletePolicyTargets(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "partners.conf")
	conf := filepath.Join(dir, "relay.conf")
	if err := os.WriteFile(pol, []byte("partner.com\nbank.example bits=256\nceo@supplier.example\n* mode=testing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("policy = "+pol+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMGCTL_CONFIG", conf)
	t.Setenv("SMGCTL_POLICY", "")

	wantCompletions(t, complete(t, "policy", "remove", ""), "partner.com", "bank.example", "ceo@supplier.example", "*")
	wantCompletions(t, complete(t, "policy", "rm", "b"), "bank.example")
	wantCompletions(t, complete(t, "policy", "remove", "partner.com", "")) // one target only
	// check takes recipients: not *, and not one already given.
	wantCompletions(t, complete(t, "policy", "check", "partner.com", ""), "bank.example", "ceo@supplier.example")
	// --policy wins over the config file.
	other := filepath.Join(dir, "other.conf")
	if err := os.WriteFile(other, []byte("other.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wantCompletions(t, complete(t, "policy", "remove", "--policy", other, ""), "other.example")
}

// TestCompleteQueueIDs: the queue commands that take IDs complete those
// in the spool (from --spool or the config file).
func TestCompleteQueueIDs(t *testing.T) {
	spoolDir, ids := testSpool(t)
	t.Setenv("SMGCTL_CONFIG", "")
	for _, sub := range []string{"show", "retry", "hold", "release", "delete", "bounce"} {
		wantCompletions(t, complete(t, "queue", sub, "--spool", spoolDir, ""), ids...)
	}
	wantCompletions(t, complete(t, "queue", "show", "--spool", spoolDir, ids[0], "")) // one ID only
	wantCompletions(t, complete(t, "queue", "delete", "--spool", spoolDir, ids[0], ""), ids[1])
	prefix := ids[1][:len(ids[1])-1]
	var withPrefix []string
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			withPrefix = append(withPrefix, id)
		}
	}
	wantCompletions(t, complete(t, "queue", "hold", "--spool", spoolDir, prefix), withPrefix...)

	conf := filepath.Join(t.TempDir(), "relay.conf")
	if err := os.WriteFile(conf, []byte("spool = "+spoolDir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMGCTL_CONFIG", conf)
	wantCompletions(t, complete(t, "queue", "retry", ""), ids...)
}
