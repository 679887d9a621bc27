package relay_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	report "github.com/smgctl/smgctl/pkg/audit/tlsrpt"
	"github.com/smgctl/smgctl/pkg/relay"
)

// TestRelayTLSRPTFromRealDeliveries: one relay run with a mix of real
// outcomes for domains not on the list — DANE 3 1 1 matching, an MX
// without STARTTLS, a DANE mismatch, an MTA-STS testing-mode failure,
// MTA-STS enforce delivered, a DANE mismatch on MX 10 before MX 20
// takes the message, DANE mismatches on both MX hosts — and the TLS-RPT
// reports `smgctl audit
// tlsrpt` builds from that audit log, checked field by field against
// RFC 8460 §4 and its JSON Schema; then the relay's daily sender mails
// them to the domains' rua, a real Postfix stores them, and each gzip
// attachment is the command's report; an HTTPS rua gets its report
// POSTed; a restart sends nothing again.
func TestRelayTLSRPTFromRealDeliveries(t *testing.T) {
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	testpeer.RequireSignedDNS(t)
	ca := testpeer.NewCA(t)
	doms := []string{"ee.rpt.test", "clear.rpt.test", "bad.rpt.test", "testing.rpt.test", "ok.rpt.test",
		"two.rpt.test", "worse.rpt.test", "rua.rpt.test"}
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: ca, Hostname: "mx.rpt.test", Domains: doms})
	clearIP := testpeer.FreeLoopbackIP(t)
	startMITMOn(t, net.JoinHostPort(clearIP.String(), "25"), mx.Addr(), stripSTARTTLS)
	other := ca.Issue(t, "other.rpt.test")
	ip := mx.IP.String()
	ee := []string{mx.Certs[0].TLSA(), mx.Certs[1].TLSA()}
	recs := []string{
		"mx IN A " + ip,
		"mx-ee IN A " + ip, "mx-bad IN A " + ip, "mx-bad2 IN A " + ip, "mx-clear IN A " + clearIP.String(),
		testpeer.TLSARecord("mx-ee.rpt.test", 25, ee[0]), testpeer.TLSARecord("mx-ee.rpt.test", 25, ee[1]),
		testpeer.TLSARecord("mx-bad.rpt.test", 25, other.TLSA()), testpeer.TLSARecord("mx-bad2.rpt.test", 25, other.TLSA()),
		"ee IN MX 10 mx-ee", "bad IN MX 10 mx-bad", "clear IN MX 10 mx-clear",
		// MX 10 fails its TLSA records, MX 20 carries the mail; both
		// MX hosts of worse fail theirs (RFC 8460 §4: every session).
		"two IN MX 10 mx-bad", "two IN MX 20 mx-ee", "worse IN MX 10 mx-bad", "worse IN MX 20 mx-bad2",
		"testing IN MX 10 mx", "ok IN MX 10 mx", "rua IN MX 10 mx",
	}
	stsLines := map[string][]string{}
	policy := func(dom, mode, pattern string) {
		h := testpeer.StartMTASTSHost(t, ca, dom, testpeer.MTASTSPolicy(mode, 86400, pattern))
		recs = append(recs, h.MTASTSRecords(dom, "id"+mode)...)
		stsLines[dom] = []string{"version: STSv1", "mode: " + mode, "mx: " + pattern, "max_age: 86400"}
	}
	policy("testing.rpt.test", "testing", "elsewhere.rpt.test")
	policy("ok.rpt.test", "enforce", "mx.rpt.test")
	// ok.rpt.test also asks for its report over HTTPS, at a host only
	// the relay's resolver knows.
	posted := make(chan postedReport, 4)
	ruaHTTPS := testpeer.StartHTTPS(t, ca, "tlsrpt.ok.rpt.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		posted <- postedReport{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"), body: body}
	}))
	recs = append(recs, "tlsrpt.ok IN A "+ruaHTTPS.IP.String())
	reported := doms[:7]
	for _, d := range reported {
		rua := "mailto:tlsrpt@rua.rpt.test"
		if d == "ok.rpt.test" {
			rua += ",https://tlsrpt.ok.rpt.test/v1/tlsrpt"
		}
		recs = append(recs, "_smtp._tls."+d+". 300 IN TXT \"v=TLSRPTv1; rua="+rua+"\"")
	}
	dns := testpeer.StartSignedDNS(t, testpeer.Zone{Name: "rpt.test", Records: recs})

	day := report.DayStart(time.Now())
	l := publishedRelay(t, ca, dns.Addr(), "", nil)
	outcome := map[string]audit.Record{}
	for _, d := range reported {
		rcpt := "user@" + d
		if d == "ee.rpt.test" {
			// Two recipients of one message, one session (RFC 8460
			// counts sessions, the audit log recipients).
			l.send(t, "alice@corp.test", rcpt, "second@"+d)
			l.record(t, "second@"+d, audit.Delivered)
		} else {
			l.send(t, "alice@corp.test", rcpt)
		}
		outcome[d] = l.record(t, rcpt, audit.Delivered, audit.WouldBounce, audit.Deferred, audit.Bounced)
	}
	l.stop()
	if report.DayStart(time.Now()) != day {
		t.Skip("the run crossed midnight UTC: its sessions are on two days")
	}
	// The outcomes the reports are about, as the relay recorded them.
	for d, want := range map[string]audit.Event{"ee.rpt.test": audit.Delivered, "clear.rpt.test": audit.Delivered,
		"bad.rpt.test": audit.Deferred, "testing.rpt.test": audit.Delivered, "ok.rpt.test": audit.Delivered,
		"two.rpt.test": audit.Delivered, "worse.rpt.test": audit.Deferred} {
		if r := outcome[d]; r.Event != want {
			t.Fatalf("%s: %s (%s), want %s", d, r.Event, r.Diagnostic, want)
		}
	}
	if outcome["clear.rpt.test"].TLS || outcome["ee.rpt.test"].Auth != "dane" || outcome["ok.rpt.test"].Auth != "pkix" {
		t.Fatalf("clear tls %v, ee auth %q, ok auth %q", outcome["clear.rpt.test"].TLS, outcome["ee.rpt.test"].Auth, outcome["ok.rpt.test"].Auth)
	}
	sendingIP := outcome["bad.rpt.test"].SendingIP
	if a := net.ParseIP(sendingIP); a == nil || !a.IsLoopback() {
		t.Fatalf("sending_ip %q, want the relay's loopback address", sendingIP)
	}
	// The MX hosts passed over are audited once each, as hop-failed
	// records before the attempt's outcome.
	if r := outcome["two.rpt.test"]; r.MX != "mx-ee.rpt.test" || r.Auth != "dane" {
		t.Fatalf("two.rpt.test delivered via %s auth %q, want mx-ee.rpt.test by DANE", r.MX, r.Auth)
	}
	hopsFailed := hopFailedRecords(t, l.cfg.AuditLog)
	if h := hopsFailed["user@two.rpt.test"]; len(h) != 1 || h[0].MX != "mx-bad.rpt.test" || h[0].ResultType != audit.ResultTLSAInvalid ||
		h[0].IP != ip || h[0].SendingIP != sendingIP || h[0].Attempt != 1 || !strings.Contains(h[0].Diagnostic, "DANE") {
		t.Errorf("two.rpt.test hop-failed records %+v, want one for mx-bad.rpt.test, tlsa-invalid", h)
	}
	if h, r := hopsFailed["user@worse.rpt.test"], outcome["worse.rpt.test"]; len(h) != 1 || h[0].ResultType != audit.ResultTLSAInvalid ||
		h[0].MX == r.MX || !strings.HasPrefix(h[0].MX, "mx-bad") || !strings.HasPrefix(r.MX, "mx-bad") {
		t.Errorf("worse.rpt.test hop-failed records %+v and outcome via %s, want each MX host once", h, r.MX)
	}

	// `smgctl audit tlsrpt --date <today> --output json` over that log,
	// the relay's host name from a config file as an operator has it.
	bin := smgctlBinary(t)
	conf := filepath.Join(t.TempDir(), "relay.conf")
	if err := os.WriteFile(conf, []byte("hostname = relay.corp.test\naudit-log = "+l.cfg.AuditLog+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	command := func() ([]byte, map[string]json.RawMessage) {
		t.Helper()
		out, err := exec.Command(bin, "--config", conf, "audit", "tlsrpt", "--date", day.Format(time.DateOnly), "--output", "json").Output()
		if err != nil {
			t.Fatalf("smgctl audit tlsrpt: %v\n%s", err, out)
		}
		var doc struct {
			Date    string            `json:"date"`
			Reports []json.RawMessage `json:"reports"`
		}
		if err := json.Unmarshal(out, &doc); err != nil || doc.Date != day.Format(time.DateOnly) {
			t.Fatalf("date %q %v:\n%s", doc.Date, err, out)
		}
		byDomain := map[string]json.RawMessage{}
		for _, raw := range doc.Reports {
			var r report.Report
			if err := json.Unmarshal(raw, &r); err != nil || len(r.Policies) == 0 {
				t.Fatalf("report %s: %v", raw, err)
			}
			byDomain[r.Policies[0].Policy.Domain] = raw
		}
		return out, byDomain
	}
	out, docs := command()
	if got, want := slices.Sorted(maps.Keys(docs)), slices.Sorted(slices.Values(reported)); !slices.Equal(got, want) {
		t.Fatalf("reports on %q, want %q:\n%s", got, want, out)
	}
	schema := rfc8460Schema(t)
	for _, dom := range reported {
		t.Run(dom, func(t *testing.T) {
			validateReport(t, schema, docs[dom])
			var r report.Report
			if err := json.Unmarshal(docs[dom], &r); err != nil {
				t.Fatal(err)
			}
			if r.OrganizationName != "relay.corp.test" || r.ContactInfo != "postmaster@relay.corp.test" ||
				r.ReportID != day.Format(time.DateOnly)+"_"+dom+"@relay.corp.test" ||
				!r.DateRange.Start.Equal(day) || !r.DateRange.End.Equal(day.Add(24*time.Hour)) {
				t.Errorf("header fields: %s", docs[dom])
			}
			if dom == "two.rpt.test" || dom == "worse.rpt.test" {
				checkFailedHopsReport(t, dom, r, docs[dom], ee, other.TLSA(), ip, sendingIP)
				return
			}
			if len(r.Policies) != 1 {
				t.Fatalf("%d policies, want 1: %s", len(r.Policies), docs[dom])
			}
			checkRPTPolicy(t, r.Policies[0], wantRPT[dom](ee, other.TLSA(), stsLines[dom], ip, clearIP.String(), sendingIP), docs[dom])
		})
	}
	if r := outcome["bad.rpt.test"]; !strings.Contains(string(docs["bad.rpt.test"]), jsonText(t, r.Diagnostic)) {
		t.Errorf("the DANE mismatch's failure-reason-code is not the relay's diagnostic %q", r.Diagnostic)
	}

	// The relay's daily sender, its clock a day ahead so that today is
	// "yesterday", mails each report to the rua; a real Postfix stores
	// them and each attachment is the command's report.
	l2 := publishedRelay(t, ca, dns.Addr(), "", func(c *relay.Config) {
		c.AuditLog = l.cfg.AuditLog
		c.TLSRPT = true
		relay.SetTLSRPTMaxDelay(c, 200*time.Millisecond)
		relay.SetTLSRPTNow(c, func() time.Time { return time.Now().Add(24 * time.Hour) })
	})
	mailed := map[string]bool{}
	for _, m := range mx.WaitMessages(t, "rua.rpt.test", len(reported), 60*time.Second) {
		dom := m.Header.Get("TLS-Report-Domain")
		if mailed[dom] {
			t.Errorf("report on %s mailed twice", dom)
		}
		mailed[dom] = true
		if b := tlsrptAttachment(t, m); !sameJSON(t, b, docs[dom]) {
			t.Errorf("mailed report on %s:\n got %s\nwant %s", dom, b, docs[dom])
		}
	}
	l2.record(t, "tlsrpt@rua.rpt.test", audit.Delivered)
	for _, d := range reported {
		if !mailed[d] {
			t.Errorf("no report mailed on %s", d)
		}
	}
	// RFC 8460 §5.4: the HTTPS rua gets the gzipped report in a POST.
	select {
	case p := <-posted:
		if p.method != http.MethodPost || p.path != "/v1/tlsrpt" || p.contentType != "application/tlsrpt+gzip" {
			t.Errorf("%s %s Content-Type %q", p.method, p.path, p.contentType)
		}
		zr, err := gzip.NewReader(bytes.NewReader(p.body))
		if err != nil {
			t.Fatalf("posted body is not gzip: %v", err)
		}
		b, err := io.ReadAll(zr)
		if err != nil || !sameJSON(t, b, docs["ok.rpt.test"]) {
			t.Errorf("posted report (%v):\n got %s\nwant %s", err, b, docs["ok.rpt.test"])
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no report POSTed to the HTTPS rua; relay log:\n%s", l2.logs.String())
	}
	l2.stop()

	// A restart the same (shifted) day sends nothing again, by mail or
	// HTTPS.
	l3 := runRelay(t, l2.world, l2.cfg)
	time.Sleep(2 * time.Second)
	l3.stop()
	if n := len(mx.Messages("rua.rpt.test")); n != len(reported) {
		t.Errorf("%d reports mailed after a restart, want %d", n, len(reported))
	}
	select {
	case <-posted:
		t.Errorf("the HTTPS report was posted again after a restart")
	default:
	}
	sent := map[string]int{}
	f, err := os.Open(l.cfg.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	audit.Scan(f, func(r audit.Record) error {
		switch r.Event {
		case audit.TLSRPTSent:
			sent[r.ReportDomain+" "+r.RUA]++
		case audit.TLSRPTFailed:
			t.Errorf("tlsrpt-failed: %s %s %s", r.ReportDomain, r.RUA, r.Diagnostic)
		}
		return nil
	})
	f.Close()
	for _, d := range reported {
		if n := sent[d+" mailto:tlsrpt@rua.rpt.test"]; n != 1 {
			t.Errorf("%s: %d tlsrpt-sent for the mailto rua, want 1", d, n)
		}
	}
	if n := sent["ok.rpt.test https://tlsrpt.ok.rpt.test/v1/tlsrpt"]; n != 1 {
		t.Errorf("%d tlsrpt-sent for the HTTPS rua, want 1: %v", n, sent)
	}
	// The reports' own deliveries, today, stay out of today's reports.
	if again, _ := command(); !bytes.Equal(again, out) {
		t.Errorf("the report deliveries changed today's reports:\n%s\nwas\n%s", again, out)
	}
}

// hopFailedRecords are the log's hop-failed records by recipient.
func hopFailedRecords(t *testing.T, path string) map[string][]audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]audit.Record{}
	audit.Scan(f, func(r audit.Record) error {
		if r.Event == audit.HopFailed {
			out[r.Recipient] = append(out[r.Recipient], r)
		}
		return nil
	})
	return out
}

// checkFailedHopsReport checks the reports of the domains with MX hosts
// passed over: two.rpt.test (MX 10 mx-bad's TLSA does not match, MX 20
// mx-ee carries the mail) has one failed session under mx-bad's TLSA
// policy and one successful under mx-ee's; worse.rpt.test (both MX
// hosts' TLSA fail) has two failed sessions under their one policy.
func checkFailedHopsReport(t *testing.T, dom string, r report.Report, doc []byte, ee []string, other, ip, sendingIP string) {
	t.Helper()
	bad := func(mx string) report.FailureDetail {
		return report.FailureDetail{ResultType: "tlsa-invalid", SendingMTAIP: sendingIP, ReceivingMXHostname: mx, ReceivingIP: ip, FailedSessionCount: 1}
	}
	wants := []rptWant{{typ: "tlsa", strs: []string{other}, mxHosts: []string{"mx-bad.rpt.test"}, bad: 1, detail: ptr(bad("mx-bad.rpt.test"))},
		{typ: "tlsa", strs: ee, mxHosts: []string{"mx-ee.rpt.test"}, ok: 1}}
	if dom == "worse.rpt.test" {
		wants = []rptWant{{typ: "tlsa", strs: []string{other}, mxHosts: []string{"mx-bad.rpt.test", "mx-bad2.rpt.test"}, bad: 2}}
	}
	if len(r.Policies) != len(wants) {
		t.Fatalf("%d policies, want %d: %s", len(r.Policies), len(wants), doc)
	}
	for _, w := range wants {
		i := slices.IndexFunc(r.Policies, func(p report.PolicyResult) bool {
			return slices.ContainsFunc(p.Policy.Strings, func(s string) bool { return strings.EqualFold(s, w.strs[0]) })
		})
		if i < 0 {
			t.Fatalf("no policy with %q: %s", w.strs, doc)
		}
		p := r.Policies[i]
		if dom == "worse.rpt.test" {
			// Two sessions, one per MX host: a failure detail each.
			got := slices.Clone(p.FailureDetails)
			for j := range got {
				got[j].FailureReasonCode = ""
			}
			if want := []report.FailureDetail{bad("mx-bad.rpt.test"), bad("mx-bad2.rpt.test")}; !slices.Equal(got, want) {
				t.Errorf("failure-details %+v, want %+v", got, want)
			}
			p.FailureDetails = nil
		}
		checkRPTPolicy(t, p, w, doc)
	}
}

func ptr[T any](v T) *T { return &v }

// postedReport is one request the HTTPS rua received.
type postedReport struct {
	method, path, contentType string
	body                      []byte
}

// rptWant is what one report's single policy must say.
type rptWant struct {
	typ     string
	strs    []string
	mxHosts []string
	ok, bad int
	detail  *report.FailureDetail // the one failure detail, reason as a prefix
}

// wantRPT gives, per domain, the expected policy from the TLSA records
// (ee's two, the mismatching one), the MTA-STS lines, the MX's and the
// STARTTLS stripper's addresses and the relay's sending address.
var wantRPT = map[string]func(ee []string, other string, sts []string, ip, clearIP, sendingIP string) rptWant{
	"ee.rpt.test": func(ee []string, _ string, _ []string, _, _, _ string) rptWant {
		return rptWant{typ: "tlsa", strs: ee, mxHosts: []string{"mx-ee.rpt.test"}, ok: 1}
	},
	"clear.rpt.test": func(_ []string, _ string, _ []string, _, clearIP, sip string) rptWant {
		return rptWant{typ: "no-policy-found", mxHosts: []string{"mx-clear.rpt.test"}, bad: 1,
			detail: &report.FailureDetail{ResultType: "starttls-not-supported", SendingMTAIP: sip,
				ReceivingMXHostname: "mx-clear.rpt.test", ReceivingIP: clearIP, FailedSessionCount: 1}}
	},
	"bad.rpt.test": func(_ []string, other string, _ []string, ip, _, sip string) rptWant {
		return rptWant{typ: "tlsa", strs: []string{other}, mxHosts: []string{"mx-bad.rpt.test"}, bad: 1,
			detail: &report.FailureDetail{ResultType: "tlsa-invalid", SendingMTAIP: sip,
				ReceivingMXHostname: "mx-bad.rpt.test", ReceivingIP: ip, FailedSessionCount: 1,
				FailureReasonCode: "451 4.7.5 DANE: certificate of mx-bad.rpt.test matches no usable TLSA record"}}
	},
	"testing.rpt.test": func(_ []string, _ string, sts []string, ip, _, sip string) rptWant {
		return rptWant{typ: "sts", strs: sts, mxHosts: []string{"elsewhere.rpt.test"}, bad: 1,
			detail: &report.FailureDetail{ResultType: "validation-failure", SendingMTAIP: sip,
				ReceivingMXHostname: "mx.rpt.test", ReceivingIP: ip, FailedSessionCount: 1,
				FailureReasonCode: "451 4.7.5 MTA-STS: MX mx.rpt.test does not match the mx patterns of policy idtesting"}}
	},
	"ok.rpt.test": func(_ []string, _ string, sts []string, _, _, _ string) rptWant {
		return rptWant{typ: "sts", strs: sts, mxHosts: []string{"mx.rpt.test"}, ok: 1}
	},
}

func checkRPTPolicy(t *testing.T, p report.PolicyResult, w rptWant, doc []byte) {
	t.Helper()
	strs := slices.Clone(p.Policy.Strings)
	want := slices.Clone(w.strs)
	slices.Sort(strs)
	slices.Sort(want)
	if p.Policy.Type != w.typ || !slices.EqualFunc(strs, want, strings.EqualFold) || !slices.Equal(p.Policy.MXHosts, w.mxHosts) {
		t.Errorf("policy %q %q mx-host %q, want %q %q %q", p.Policy.Type, p.Policy.Strings, p.Policy.MXHosts, w.typ, w.strs, w.mxHosts)
	}
	if p.Summary.Successful != w.ok || p.Summary.Failed != w.bad {
		t.Errorf("summary %+v, want %d successful, %d failed", p.Summary, w.ok, w.bad)
	}
	switch {
	case w.detail == nil && len(p.FailureDetails) != 0:
		t.Errorf("failure-details %+v, want none", p.FailureDetails)
	case w.detail != nil && len(p.FailureDetails) != 1:
		t.Errorf("failure-details %+v, want one", p.FailureDetails)
	case w.detail != nil:
		d, wd := p.FailureDetails[0], *w.detail
		if !strings.HasPrefix(d.FailureReasonCode, wd.FailureReasonCode) {
			t.Errorf("failure-reason-code %q, want it to start with %q", d.FailureReasonCode, wd.FailureReasonCode)
		}
		d.FailureReasonCode, wd.FailureReasonCode = "", ""
		if d != wd {
			t.Errorf("failure detail %+v, want %+v", d, wd)
		}
	}
	if t.Failed() {
		t.Logf("report: %s", doc)
	}
}

// rfc8460Schema compiles the JSON Schema of RFC 8460's report format
// (pkg/audit/tlsrpt/testdata), formats asserted (date-time, IP addresses).
func rfc8460Schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	abs, _ := filepath.Abs(filepath.Join("..", "audit", "tlsrpt", "testdata", "rfc8460-report.schema.json"))
	sch, err := c.Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validateReport(t *testing.T, sch *jsonschema.Schema, doc []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("report does not match RFC 8460's format: %v\n%s", err, doc)
	}
}

// smgctlBinary builds the smgctl command.
func smgctlBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "smgctl")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/smgctl/smgctl/cmd/smgctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// sameJSON says whether a and b are the same JSON value (the command
// indents its output; the mailed report is compact).
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}

// jsonText is s as it appears inside a JSON string.
func jsonText(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[1 : len(b)-1])
}
