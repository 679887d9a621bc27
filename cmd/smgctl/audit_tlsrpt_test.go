package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/smgctl/smgctl/pkg/audit"
)

// audit tlsrpt on a mixed day: good TLS under MTA-STS, no STARTTLS, a
// DANE mismatch, an MTA-STS testing failure. The document matches its
// schema, each report matches RFC 8460's format (the JSON Schema beside
// the builder), and the counts are checked field by field.
func TestAuditTLSRPTCommand(t *testing.T) {
	t.Setenv("SMGCTL_CONFIG", filepath.Join(t.TempDir(), "none.conf"))
	os.WriteFile(os.Getenv("SMGCTL_CONFIG"), []byte("hostname = relay.corp.test\ntlsrpt-organization = Corp\n"), 0o644)
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 12, 0, 0, 0, time.UTC)
	sts := []string{"version: STSv1", "mode: testing", "mx: mx.sts.test", "max_age: 86400"}
	l.Write(
		audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q1", Recipient: "a@good.test", MX: "mx.good.test", IP: "192.0.2.1", TLS: true, Attempt: 1,
			Auth: "pkix", PolicyType: "sts", PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: mx.good.test", "max_age: 86400"}, STSMX: []string{"mx.good.test"}},
		audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q1", Recipient: "b@good.test", MX: "mx.good.test", IP: "192.0.2.1", TLS: true, Attempt: 1,
			Auth: "pkix", PolicyType: "sts", PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: mx.good.test", "max_age: 86400"}, STSMX: []string{"mx.good.test"}},
		audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q2", Recipient: "a@clear.test", MX: "mx.clear.test", IP: "192.0.2.2", Attempt: 1},
		audit.Record{Time: at, Event: audit.Deferred, QueueID: "Q3", Recipient: "a@dane.test", MX: "mx.dane.test", IP: "192.0.2.3", TLS: true, Attempt: 1,
			PolicyType: "tlsa", PolicyStrings: []string{"3 1 1 abcdef"}, ResultType: audit.ResultTLSAInvalid, SendingIP: "192.0.2.100"},
		audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q4", Recipient: "a@sts.test", MX: "mx.sts.test", IP: "192.0.2.4", TLS: true, Attempt: 1,
			PolicyType: "sts", PolicyStrings: sts, STSMX: []string{"mx.sts.test"}, ResultType: audit.ResultCertNotTrusted, PublishedIgnored: true},
	)
	l.Close()

	code, out, stderr := runSmgctl(t, "audit", "tlsrpt", "--audit-log", path, "--date", "2026-05-06", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	validateJSON(t, "audit-tlsrpt", out)
	var doc struct {
		Date    string            `json:"date"`
		Reports []json.RawMessage `json:"reports"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	abs, _ := filepath.Abs(filepath.Join("..", "..", "pkg", "audit", "tlsrpt", "testdata", "rfc8460-report.schema.json"))
	rfc, err := c.Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Domain, Type string
		OK, Failed   int
		Results      []string
	}
	var got []summary
	for _, raw := range doc.Reports {
		v, _ := jsonschema.UnmarshalJSON(strings.NewReader(string(raw)))
		if err := rfc.Validate(v); err != nil {
			t.Errorf("not RFC 8460's format: %v\n%s", err, raw)
		}
		var r struct {
			Org      string `json:"organization-name"`
			Contact  string `json:"contact-info"`
			ID       string `json:"report-id"`
			Policies []struct {
				Policy struct {
					Type   string `json:"policy-type"`
					Domain string `json:"policy-domain"`
				} `json:"policy"`
				Summary struct {
					OK     int `json:"total-successful-session-count"`
					Failed int `json:"total-failure-session-count"`
				} `json:"summary"`
				Details []struct {
					Result string `json:"result-type"`
					Count  int    `json:"failed-session-count"`
				} `json:"failure-details"`
			} `json:"policies"`
		}
		json.Unmarshal(raw, &r)
		if r.Org != "Corp" || r.Contact != "postmaster@relay.corp.test" || !strings.HasPrefix(r.ID, "2026-05-06_") || !strings.HasSuffix(r.ID, "@relay.corp.test") {
			t.Errorf("header from the settings: %s", raw)
		}
		for _, p := range r.Policies {
			s := summary{Domain: p.Policy.Domain, Type: p.Policy.Type, OK: p.Summary.OK, Failed: p.Summary.Failed}
			for _, d := range p.Details {
				s.Results = append(s.Results, d.Result)
			}
			got = append(got, s)
		}
	}
	want := []summary{
		{"clear.test", "no-policy-found", 0, 1, []string{"starttls-not-supported"}},
		{"dane.test", "tlsa", 0, 1, []string{"tlsa-invalid"}},
		{"good.test", "sts", 1, 0, nil}, // two recipients, one session
		{"sts.test", "sts", 0, 1, []string{"certificate-not-trusted"}},
	}
	if doc.Date != "2026-05-06" || len(got) != len(want) {
		t.Fatalf("date %s, reports %+v", doc.Date, got)
	}
	for i := range want {
		if g, w := got[i], want[i]; g.Domain != w.Domain || g.Type != w.Type || g.OK != w.OK || g.Failed != w.Failed || strings.Join(g.Results, ",") != strings.Join(w.Results, ",") {
			t.Errorf("report %d: %+v, want %+v", i, g, w)
		}
	}

	// The table, one domain; a bad date is a usage error.
	code, out, _ = runSmgctl(t, "audit", "tlsrpt", "--audit-log", path, "--date", "2026-05-06", "--domain", "dane.test")
	if code != 0 || !strings.Contains(out, "dane.test") || !strings.Contains(out, "tlsa-invalid") || strings.Contains(out, "good.test") {
		t.Errorf("table: exit %d\n%s", code, out)
	}
	if code, _, _ = runSmgctl(t, "audit", "tlsrpt", "--audit-log", path, "--date", "06/05/2026"); code != exitUsage {
		t.Errorf("--date 06/05/2026: exit %d, want %d", code, exitUsage)
	}
}
