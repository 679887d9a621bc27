package main

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
)

// schemaDir holds the JSON Schemas of every command's --output json
// (docs/json-schemas.md).
var schemaDir = filepath.Join("..", "..", "docs", "schemas")

// schemaFor names the schema of a command's JSON output: its path
// without "smgctl", words joined by "-" (docs/schemas/NAME.schema.json).
// The queue actions share one shape.
func schemaFor(cmdPath string) string {
	words := strings.Fields(cmdPath)[1:]
	if len(words) == 2 && words[0] == "queue" && slices.Contains([]string{"retry", "hold", "release", "delete", "bounce"}, words[1]) {
		return "queue-action"
	}
	return strings.Join(words, "-")
}

var (
	schemaMu    sync.Mutex
	schemaCache = map[string]*jsonschema.Schema{}
)

// validateJSON fails t unless out is one JSON document that validates
// against docs/schemas/NAME.schema.json (a JSON Pointer fragment picks
// a part of it, e.g. "probe#/$defs/deep").
func validateJSON(t *testing.T, name, out string) {
	t.Helper()
	file, frag, _ := strings.Cut(name, "#")
	schemaMu.Lock()
	sch, ok := schemaCache[name]
	if !ok {
		abs, err := filepath.Abs(filepath.Join(schemaDir, file+".schema.json"))
		if err != nil {
			t.Fatal(err)
		}
		loc := abs
		if frag != "" {
			loc += "#" + frag
		}
		c := jsonschema.NewCompiler()
		if sch, err = c.Compile(loc); err != nil {
			schemaMu.Unlock()
			t.Fatalf("schema %s: %v", name, err)
		}
		schemaCache[name] = sch
	}
	schemaMu.Unlock()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, out)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("output does not match docs/schemas/%s.schema.json: %v\n%s", file, err, out)
	}
}

// jsonCommands lists every command that writes JSON: those with
// --output json, and policy export (--format json, a file format).
func jsonCommands() []string {
	var paths []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if f := c.Flags().Lookup("output"); f != nil && strings.Contains(f.Usage, "json") {
			paths = append(paths, c.CommandPath())
		}
		if f := c.Flags().Lookup("format"); f != nil && c.Name() == "export" && strings.Contains(f.Usage, "json") {
			paths = append(paths, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot(&globals{}))
	return paths
}

// Every command that writes JSON has a schema, and every schema file is
// some command's.
func TestEveryJSONOutputHasSchema(t *testing.T) {
	used := map[string]bool{}
	for _, p := range jsonCommands() {
		name := schemaFor(p)
		used[name] = true
		if _, err := os.Stat(filepath.Join(schemaDir, name+".schema.json")); err != nil {
			t.Errorf("%s writes JSON but has no schema: %v", p, err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(schemaDir, "*.schema.json"))
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".schema.json"); !used[name] {
			t.Errorf("%s belongs to no command", f)
		}
	}
	if len(used) < 15 {
		t.Errorf("only %d JSON outputs found: %v", len(used), used)
	}
}

// TestJSONSchemas runs every command that writes JSON against real
// fixtures and validates what it wrote against its schema.
func TestJSONSchemas(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SMGCTL_ACTOR", "tester")
	// An empty config: nothing from /etc/smgctl/relay.conf on this host.
	empty := filepath.Join(dir, "empty.conf")
	os.WriteFile(empty, nil, 0o644)
	t.Setenv("SMGCTL_CONFIG", empty)
	pol := filepath.Join(dir, "policy.conf")
	if err := os.WriteFile(pol, []byte("# partners\npartner.com\nbank.example bits=256 min-tls=1.2 verify=cert on-fail=defer  # contract\n*  mode=testing\nxn--bcher-kva.example\nrouted.example verify=dane on-fail=route:[2001:db8::7]:2525\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	validated := map[string]bool{}
	check := func(code int, stdout, stderr string, args ...string) {
		t.Helper()
		if stdout == "" {
			t.Fatalf("%v: exit %d, no output: %s", args, code, stderr)
		}
		c, _, err := newRoot(&globals{}).Find(args)
		if err != nil {
			t.Fatal(err)
		}
		name := schemaFor(c.CommandPath())
		validateJSON(t, name, stdout)
		validated[name] = true
	}
	runJSON := func(wantCode int, args ...string) string {
		t.Helper()
		code, stdout, stderr := runSmgctl(t, args...)
		if code != wantCode {
			t.Errorf("%v: exit %d, want %d: %s", args, code, wantCode, stderr)
		}
		check(code, stdout, stderr, args...)
		return stdout
	}

	// policy: edits make a journal for history; lint finds something.
	runSmgctl(t, "--policy", pol, "policy", "add", "new.example", "--bits", "128", "--comment", "added")
	runSmgctl(t, "--policy", pol, "policy", "remove", "partner.com")
	runJSON(0, "--policy", pol, "policy", "list", "--output", "json")
	runJSON(0, "--policy", pol, "policy", "check", "ceo@bank.example", "unknown.org", "bücher.example", "routed.example", "--output", "json")
	runJSON(0, "--policy", pol, "policy", "history", "--output", "json")
	lintPol := filepath.Join(dir, "lint.conf")
	os.WriteFile(lintPol, []byte("partner.com bitz=3\npartner.com\nsub.partner.com mode=off\n"), 0o644)
	runJSON(1, "--policy", lintPol, "policy", "lint", "--output", "json")
	runJSON(0, "--policy", pol, "policy", "export", "--format", "json")

	// config show, with a config file.
	cfg := filepath.Join(dir, "relay.conf")
	os.WriteFile(cfg, []byte("max-size = 10MB\n"), 0o644)
	runJSON(0, "--config", cfg, "config", "show", "--output", "json")

	// queue: two deferred messages, then each action.
	spoolDir, ids := testSpool(t)
	runJSON(0, "queue", "list", "--spool", spoolDir, "--output", "json")
	runJSON(0, "queue", "show", ids[0], "--spool", spoolDir, "--body", "--output", "json")
	runJSON(0, "queue", "hold", ids[0], "--spool", spoolDir, "--output", "json")
	runJSON(0, "queue", "release", ids[0], "--spool", spoolDir, "--output", "json")
	runJSON(0, "queue", "retry", ids[0], "--spool", spoolDir, "--output", "json")
	runJSON(0, "queue", "delete", ids[0], "--spool", spoolDir, "--output", "json")
	runJSON(0, "queue", "bounce", ids[1], "--spool", spoolDir, "--hostname", "relay.corp.test", "--output", "json")
	// An envelope that cannot be read: a message with "error" and a warning.
	os.WriteFile(filepath.Join(spoolDir, "queue", "0CT4H1P9VGA2K3QG.json"), []byte(`{"v":1,"id":"0CT4`), 0o600)
	os.WriteFile(filepath.Join(spoolDir, "queue", "0CT4H1P9VGA2K3QG.eml"), []byte("Subject: x\n\nx\n"), 0o600)
	if out := runJSON(1, "queue", "list", "--spool", spoolDir, "--output", "json"); !strings.Contains(out, `"unreadable_message"`) {
		t.Errorf("no warning for the unreadable envelope:\n%s", out)
	}

	// audit: the records of testdata/script/audit_report_trace.txtar
	// (rotated file, seals, TLS and clear-text deliveries, bounces).
	ar, err := txtar.ParseFile(filepath.Join("testdata", "script", "audit_report_trace.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	logDir := filepath.Join(dir, "audit")
	for _, f := range ar.Files {
		if strings.HasPrefix(f.Name, "log/") {
			p := filepath.Join(logDir, strings.TrimPrefix(f.Name, "log/"))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fixtureLog := filepath.Join(logDir, "audit.log")
	runJSON(0, "audit", "report", "--audit-log", fixtureLog, "--output", "json")
	runJSON(0, "audit", "trace", "--audit-log", fixtureLog, "QB2", "--output", "json")
	runJSON(0, "audit", "trace", "--audit-log", fixtureLog, "QOLD1", "--output", "json")
	if out := runJSON(0, "audit", "tlsrpt", "--audit-log", fixtureLog, "--date", "2026-01-03", "--output", "json"); !strings.Contains(out, `"policy-type": "no-policy-found"`) {
		t.Errorf("audit tlsrpt: no report:\n%s", out)
	}
	chainLog := filepath.Join(dir, "chain", "audit.log")
	os.MkdirAll(filepath.Dir(chainLog), 0o755)
	writeAuditLog(t, chainLog, audit.Options{}, 3)
	runJSON(0, "audit", "head", chainLog, "--output", "json")
	// The audit log's chain and the policy journal's.
	if out := runJSON(0, "audit", "verify", chainLog, pol+".journal", "--output", "json"); !strings.Contains(out, `"policy-journal"`) {
		t.Errorf("verify: no policy journal chain:\n%s", out)
	}
	// An altered line: a break.
	data, _ := os.ReadFile(chainLog)
	os.WriteFile(chainLog, []byte(strings.Replace(string(data), "Q002", "Q999", 1)), 0o644)
	if out := runJSON(1, "audit", "verify", chainLog, "--output", "json"); !strings.Contains(out, `"break": {`) {
		t.Errorf("verify: no break:\n%s", out)
	}

	// probe hops: a real message's Received: chain.
	runJSON(1, "probe", "hops", "--output", "json", fixture("mixed.eml"))

	// probe: an in-process DNS server; the MX host refuses connections.
	d := testpeer.StartDNS(t)
	d.AddMX("unreach.test", 10, "mx.unreach.test")
	d.AddA("mx.unreach.test", "127.0.0.1")
	runJSON(1, "--policy", pol, "probe", "unreach.test", "bank.example", "--resolver", d.Addr(), "--port", closedPort(t),
		"--timeout", "2s", "--helo", "probe.test", "--output", "json")

	// sendtest: an in-process relay whose only route refuses connections,
	// so the outcome is a deferral; then one with no outcome in time.
	rcfg := relay.DefaultConfig()
	rcfg.Listen = "127.0.0.1:0"
	rcfg.Hostname = "relay.corp.test"
	rcfg.Spool = filepath.Join(dir, "relay-spool")
	rcfg.AuditLog = filepath.Join(dir, "relay-audit.log")
	rcfg.Policy = pol
	rcfg.DelayWarning = 0
	rcfg.Routes = map[string]string{"unreach.test": "127.0.0.1:" + closedPort(t)}
	r, err := relay.New(rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	via := r.Addr().String()
	if out := runJSON(1, "sendtest", "--to", "p@unreach.test", "--via", via, "--audit-log", rcfg.AuditLog,
		"--from", "admin@corp.test", "--timeout", "30s", "--output", "json"); !strings.Contains(out, `"outcome": "deferred"`) {
		t.Errorf("sendtest: want a deferral:\n%s", out)
	}
	runJSON(1, "sendtest", "--to", "q@unreach.test", "--via", via, "--audit-log", filepath.Join(dir, "other.log"),
		"--from", "admin@corp.test", "--timeout", "3s", "--output", "json")

	// Every command that writes JSON was run here.
	for _, p := range jsonCommands() {
		if !validated[schemaFor(p)] {
			t.Errorf("%s: output never validated", p)
		}
	}
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}
