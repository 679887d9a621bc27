package audit

import (
	"os/exec"
	"strings"
	"testing"
)

// The audit record, its writer and its readers live in one tree that the
// relay imports, never the other way round (issue 14): a reader of the
// log (smgctl audit report/trace/verify) must not drag in the relay, and
// the schema must not be owned by one of its producers.
func TestAuditTreeDoesNotImportRelay(t *testing.T) {
	// `go test` puts its own go command first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./...: %v\n%s", err, out)
	}
	const relay = "github.com/smgctl/smgctl/pkg/relay"
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps ./... listed nothing")
	}
	for _, p := range deps {
		if p == relay || strings.HasPrefix(p, relay+"/") {
			t.Errorf("pkg/audit/... depends on %s; the relay must import the audit tree, not the reverse", p)
		}
	}
}
