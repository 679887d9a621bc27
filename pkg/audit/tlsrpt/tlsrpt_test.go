package tlsrpt

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
)

var day = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)

var stsPolicy = []string{"version: STSv1", "mode: testing", "mx: *.sts.example", "max_age: 86400"}

// mixedLog writes, through the relay's own audit writer, a day of
// outcomes: good TLS under MTA-STS enforce (two recipients in one
// session), a clear-text delivery where STARTTLS was not offered, DANE
// mismatches on two attempts, an MTA-STS testing failure delivered
// anyway, and records that must not count (another day, a report
// message, a refused connection, an administrator's deletion). It
// returns the log's path.
func mixedLog(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := day.Add(10 * time.Hour)
	good := audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q1", Sender: "a@corp.example", Recipient: "x@good.example",
		MX: "mx1.good.example", IP: "192.0.2.10", TLS: true, TLSVersion: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", Bits: 128, CertVerified: true,
		Auth: "pkix", STSPolicyID: "20261201", STSMode: "enforce", STSMX: []string{"mx1.good.example"},
		PolicyType: audit.PolicySTS, PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: mx1.good.example", "max_age: 604800"},
		Sources: []audit.Source{{Kind: audit.SourceMTASTS, Detail: "id 20261201 mode enforce"}}, SendingIP: "192.0.2.1", Attempt: 1}
	good2 := good
	good2.Recipient = "y@good.example"
	good3 := good // another message: a second session
	good3.QueueID, good3.Time = "Q2", at.Add(time.Hour)
	clear := audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q3", Recipient: "x@clear.example", MX: "mx.clear.example", IP: "192.0.2.20",
		Auth: "none", SendingIP: "192.0.2.1", Attempt: 1}
	dane1 := audit.Record{Time: at, Event: audit.Deferred, QueueID: "Q4", Recipient: "x@dane.example", MX: "mx.dane.example", IP: "192.0.2.30",
		TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Auth: "none", PolicyType: audit.PolicyTLSA, PolicyStrings: []string{"_25._tcp.mx.dane.example. IN TLSA 3 1 1 aabbcc"},
		ResultType: audit.ResultTLSAInvalid, Diagnostic: "451 4.7.5 DANE: no TLSA record matches the certificate of mx.dane.example",
		Sources: []audit.Source{{Kind: audit.SourceDANE, Detail: "_25._tcp.mx.dane.example"}}, SendingIP: "192.0.2.1", Attempt: 1}
	dane2 := dane1
	dane2.Attempt, dane2.Time = 2, at.Add(30*time.Minute)
	sts := audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q5", Recipient: "x@sts.example", MX: "mx.sts.example", IP: "192.0.2.40",
		TLS: true, TLSVersion: "TLSv1.2", Bits: 128, Auth: "none", STSPolicyID: "1", STSMode: "testing", STSMX: []string{"*.sts.example"},
		PolicyType: audit.PolicySTS, PolicyStrings: stsPolicy, ResultType: audit.ResultCertHostMismatch, PublishedIgnored: true,
		Diagnostic: "MTA-STS: certificate of mx.sts.example does not name it", SendingIP: "192.0.2.1", Attempt: 1}
	refused := audit.Record{Time: at, Event: audit.Deferred, QueueID: "Q6", Recipient: "x@good.example", MX: "mx1.good.example", IP: "192.0.2.10",
		Reply: "connection refused", Attempt: 1, PolicyType: audit.PolicySTS}
	yesterday := good
	yesterday.QueueID, yesterday.Time = "Q7", day.Add(-time.Second)
	reportMsg := clear
	reportMsg.QueueID, reportMsg.MessageID = "Q8", ReportMessageIDPrefix+"2026-12-02_x@relay.example>"
	deleted := audit.Record{Time: at, Event: audit.Deleted, QueueID: "Q9", Recipient: "x@good.example", Actor: "carol"}
	if err := l.Write(good, good2, good3, clear, dane1, dane2, sts, refused, yesterday, reportMsg, deleted); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func opts() Options {
	return Options{Day: day.Add(5 * time.Hour), Organization: "Corp Relay", Contact: "postmaster@relay.example", Submitter: "relay.example"}
}

func build(t *testing.T, paths []string, opt Options) []Report {
	t.Helper()
	logs, err := logset.Logs(paths)
	if err != nil {
		t.Fatal(err)
	}
	reps, err := Build(context.Background(), logs, opt)
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

// validateRFC fails t unless doc validates against the RFC 8460 JSON
// Schema in testdata (formats asserted: date-time, IP addresses).
func validateRFC(t *testing.T, doc []byte) {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	abs, _ := filepath.Abs(filepath.Join("testdata", "rfc8460-report.schema.json"))
	sch, err := c.Compile(abs)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("report does not match RFC 8460's format: %v\n%s", err, doc)
	}
}

func TestBuildMixedDay(t *testing.T) {
	reps := build(t, []string{mixedLog(t)}, opts())
	byDomain := map[string]Report{}
	for _, r := range reps {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		validateRFC(t, b)
		byDomain[r.Policies[0].Policy.Domain] = r
	}
	if len(reps) != 4 {
		t.Fatalf("%d reports, want good, clear, dane and sts: %+v", len(reps), reps)
	}
	for i, d := range []string{"clear.example", "dane.example", "good.example", "sts.example"} {
		if reps[i].Policies[0].Policy.Domain != d {
			t.Errorf("report %d is for %s, want %s (sorted)", i, reps[i].Policies[0].Policy.Domain, d)
		}
	}
	g := byDomain["good.example"]
	if g.OrganizationName != "Corp Relay" || g.ContactInfo != "postmaster@relay.example" || g.ReportID != "2026-12-03_good.example@relay.example" ||
		!g.DateRange.Start.Equal(day) || !g.DateRange.End.Equal(day.Add(24*time.Hour)) {
		t.Errorf("header: %+v", g)
	}
	// Q1 (two recipients, one session) and Q2; the refused connection and
	// yesterday's and the deleted records do not count.
	want := []PolicyResult{{
		Policy:  Policy{Type: "sts", Strings: []string{"version: STSv1", "mode: enforce", "mx: mx1.good.example", "max_age: 604800"}, Domain: "good.example", MXHosts: []string{"mx1.good.example"}},
		Summary: Summary{Successful: 2},
	}}
	if !reflect.DeepEqual(g.Policies, want) {
		t.Errorf("good.example:\n got %+v\nwant %+v", g.Policies, want)
	}
	want = []PolicyResult{{
		Policy:  Policy{Type: "no-policy-found", Domain: "clear.example", MXHosts: []string{"mx.clear.example"}},
		Summary: Summary{Failed: 1},
		FailureDetails: []FailureDetail{{ResultType: "starttls-not-supported", SendingMTAIP: "192.0.2.1",
			ReceivingMXHostname: "mx.clear.example", ReceivingIP: "192.0.2.20", FailedSessionCount: 1}},
	}}
	if got := byDomain["clear.example"].Policies; !reflect.DeepEqual(got, want) {
		t.Errorf("clear.example (no STARTTLS):\n got %+v\nwant %+v", got, want)
	}
	want = []PolicyResult{{
		Policy:  Policy{Type: "tlsa", Strings: []string{"_25._tcp.mx.dane.example. IN TLSA 3 1 1 aabbcc"}, Domain: "dane.example", MXHosts: []string{"mx.dane.example"}},
		Summary: Summary{Failed: 2},
		FailureDetails: []FailureDetail{{ResultType: "tlsa-invalid", SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx.dane.example",
			ReceivingIP: "192.0.2.30", FailedSessionCount: 2, FailureReasonCode: "451 4.7.5 DANE: no TLSA record matches the certificate of mx.dane.example"}},
	}}
	if got := byDomain["dane.example"].Policies; !reflect.DeepEqual(got, want) {
		t.Errorf("dane.example (mismatch on two attempts):\n got %+v\nwant %+v", got, want)
	}
	want = []PolicyResult{{
		Policy:  Policy{Type: "sts", Strings: stsPolicy, Domain: "sts.example", MXHosts: []string{"*.sts.example"}},
		Summary: Summary{Failed: 1},
		FailureDetails: []FailureDetail{{ResultType: "certificate-host-mismatch", SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx.sts.example",
			ReceivingIP: "192.0.2.40", FailedSessionCount: 1, FailureReasonCode: "MTA-STS: certificate of mx.sts.example does not name it"}},
	}}
	if got := byDomain["sts.example"].Policies; !reflect.DeepEqual(got, want) {
		t.Errorf("sts.example (testing mode failure):\n got %+v\nwant %+v", got, want)
	}
}

func TestBuildDomainAndDay(t *testing.T) {
	path := mixedLog(t)
	opt := opts()
	opt.Domain = "DANE.example."
	reps := build(t, []string{path}, opt)
	if len(reps) != 1 || reps[0].Policies[0].Policy.Domain != "dane.example" {
		t.Fatalf("--domain dane.example: %+v", reps)
	}
	opt = opts()
	opt.Day = day.Add(-time.Hour) // the day before: only Q7
	reps = build(t, []string{path}, opt)
	if len(reps) != 1 || reps[0].Policies[0].Summary != (Summary{Successful: 1}) || reps[0].ReportID != "2026-12-02_good.example@relay.example" {
		t.Fatalf("the day before: %+v", reps)
	}
}

// Two relays' logs with the same queue IDs are separate sessions.
func TestBuildFleetCountsApart(t *testing.T) {
	reps := build(t, []string{mixedLog(t), mixedLog(t)}, opts())
	for _, r := range reps {
		if r.Policies[0].Policy.Domain == "good.example" && r.Policies[0].Summary.Successful != 4 {
			t.Errorf("good.example over two relays: %+v, want 4 sessions", r.Policies[0].Summary)
		}
	}
}

// The same TLSA RRset in another order (a resolver rotating it) is the
// same policy: one entry, both sessions, its records in one order.
func TestBuildTLSARRsetOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := "3 1 1 aa11", "3 1 1 bb22"
	rec := audit.Record{Time: day.Add(time.Hour), Event: audit.Delivered, QueueID: "Q1", Recipient: "x@dane.example",
		MX: "mx.dane.example", IP: "192.0.2.30", TLS: true, Auth: "dane", TLSA: a,
		PolicyType: audit.PolicyTLSA, PolicyStrings: []string{b, a}, SendingIP: "192.0.2.1", Attempt: 1}
	rotated := rec
	rotated.QueueID, rotated.PolicyStrings = "Q2", []string{a, b}
	if err := l.Write(rec, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reps := build(t, []string{path}, opts())
	if len(reps) != 1 || len(reps[0].Policies) != 1 {
		t.Fatalf("want one report with one policy: %+v", reps)
	}
	p := reps[0].Policies[0]
	if !reflect.DeepEqual(p.Policy.Strings, []string{a, b}) || p.Summary.Successful != 2 {
		t.Errorf("policy-string %q, %d successful; want %q, 2", p.Policy.Strings, p.Summary.Successful, []string{a, b})
	}
}

// An MX host an attempt passed over (hop-failed) is a session of its
// own (RFC 8460 §4): MX 10 failing its TLSA records before MX 20 takes
// the message is one failed and one successful session, whatever the
// number of recipients; a host ruled out before dialling by an enforced
// MTA-STS policy is a failed session without a sending-mta-ip; a host
// that refused the connection is no session.
func TestBuildCountsFailedHops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := day.Add(9 * time.Hour)
	tlsa10, tlsa20 := []string{"3 1 1 aa10"}, []string{"3 1 1 bb20"}
	hop10 := audit.Record{Time: at, Event: audit.HopFailed, QueueID: "Q1", Recipient: "x@dane.example", MX: "mx10.dane.example", IP: "192.0.2.10",
		TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Auth: "none", PolicyType: audit.PolicyTLSA, PolicyStrings: tlsa10,
		ResultType: audit.ResultTLSAInvalid, Diagnostic: "DANE: no TLSA record of mx10.dane.example matches", SendingIP: "192.0.2.1", Attempt: 1}
	hop10y := hop10
	hop10y.Recipient = "y@dane.example"
	via20 := audit.Record{Time: at, Event: audit.Delivered, QueueID: "Q1", Recipient: "x@dane.example", MX: "mx20.dane.example", IP: "192.0.2.20",
		TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Auth: "dane", TLSA: tlsa20[0], PolicyType: audit.PolicyTLSA, PolicyStrings: tlsa20,
		SendingIP: "192.0.2.1", Attempt: 1}
	via20y := via20
	via20y.Recipient = "y@dane.example"
	stsMX := []string{"mx2.sts.example"}
	stsLines := []string{"version: STSv1", "mode: enforce", "mx: mx2.sts.example", "max_age: 86400"}
	ruledOut := audit.Record{Time: at, Event: audit.HopFailed, QueueID: "Q2", Recipient: "x@sts.example", MX: "mx1.sts.example", IP: "192.0.2.41",
		STSPolicyID: "p1", STSMode: "enforce", STSMX: stsMX, PolicyType: audit.PolicySTS, PolicyStrings: stsLines,
		ResultType: audit.ResultValidationFailure, Diagnostic: "MTA-STS policy p1 does not list mx1.sts.example", Attempt: 1}
	refused := audit.Record{Time: at, Event: audit.HopFailed, QueueID: "Q2", Recipient: "x@sts.example", MX: "mx3.sts.example", IP: "192.0.2.43",
		STSPolicyID: "p1", STSMode: "enforce", STSMX: stsMX, PolicyType: audit.PolicySTS, PolicyStrings: stsLines,
		Reply: "connection refused", Attempt: 1}
	deferred := audit.Record{Time: at, Event: audit.Deferred, QueueID: "Q2", Recipient: "x@sts.example", MX: "mx2.sts.example", IP: "192.0.2.42",
		TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Auth: "none", STSPolicyID: "p1", STSMode: "enforce", STSMX: stsMX,
		PolicyType: audit.PolicySTS, PolicyStrings: stsLines, ResultType: audit.ResultCertHostMismatch,
		Diagnostic: "MTA-STS: certificate of mx2.sts.example does not name it", SendingIP: "192.0.2.1", Attempt: 1}
	if err := l.Write(hop10, hop10y, via20, via20y, ruledOut, refused, deferred); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reps := build(t, []string{path}, opts())
	if len(reps) != 2 {
		t.Fatalf("want reports for dane.example and sts.example: %+v", reps)
	}
	doc, err := json.Marshal(reps[0])
	if err != nil {
		t.Fatal(err)
	}
	validateRFC(t, doc)

	dane := reps[0].Policies
	if len(dane) != 2 {
		t.Fatalf("dane.example: want a policy per TLSA RRset: %+v", dane)
	}
	wantFail := PolicyResult{
		Policy:  Policy{Type: audit.PolicyTLSA, Strings: tlsa10, Domain: "dane.example", MXHosts: []string{"mx10.dane.example"}},
		Summary: Summary{Failed: 1},
		FailureDetails: []FailureDetail{{ResultType: audit.ResultTLSAInvalid, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx10.dane.example",
			ReceivingIP: "192.0.2.10", FailedSessionCount: 1, FailureReasonCode: hop10.Diagnostic}},
	}
	wantOK := PolicyResult{
		Policy:  Policy{Type: audit.PolicyTLSA, Strings: tlsa20, Domain: "dane.example", MXHosts: []string{"mx20.dane.example"}},
		Summary: Summary{Successful: 1},
	}
	if !reflect.DeepEqual(dane[0], wantFail) || !reflect.DeepEqual(dane[1], wantOK) {
		t.Errorf("dane.example policies\n got %+v\nwant %+v\n     %+v", dane, wantFail, wantOK)
	}

	sts := reps[1].Policies
	if len(sts) != 1 || sts[0].Summary != (Summary{Failed: 2}) {
		t.Fatalf("sts.example: want 2 failed sessions (the ruled-out host and the bad certificate), the refused one not counted: %+v", sts)
	}
	want := []FailureDetail{
		{ResultType: audit.ResultCertHostMismatch, SendingMTAIP: "192.0.2.1", ReceivingMXHostname: "mx2.sts.example", ReceivingIP: "192.0.2.42",
			FailedSessionCount: 1, FailureReasonCode: deferred.Diagnostic},
		{ResultType: audit.ResultValidationFailure, ReceivingMXHostname: "mx1.sts.example", ReceivingIP: "192.0.2.41",
			FailedSessionCount: 1, FailureReasonCode: ruledOut.Diagnostic},
	}
	if !reflect.DeepEqual(sts[0].FailureDetails, want) {
		t.Errorf("sts.example failure details\n got %+v\nwant %+v", sts[0].FailureDetails, want)
	}
}

// A hand-off route is the operator's own gateway, not the partner's MX:
// when the route is tried after every MX of the partner failed (and
// fails too, bounced or deferred with Route set), its session is not one
// of the partner's (RFC 8460 §4.3 counts sessions to the policy domain's
// MX hosts) and its host name must not reach the partner's report.
func TestBuildLeavesOutTheRoute(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := day.Add(9 * time.Hour)
	partner := audit.Record{Time: at, Event: audit.HopFailed, QueueID: "Q1", Recipient: "x@plain.example", MX: "mx.plain.example", IP: "192.0.2.10",
		PolicyType: audit.PolicyNotFound, ResultType: audit.ResultSTARTTLSNotSupported, Diagnostic: "503 5.7.0 encryption too weak 0 less than 128",
		SendingIP: "192.0.2.1", Attempt: 1}
	route := audit.Record{Time: at, Event: audit.Bounced, QueueID: "Q1", Recipient: "x@plain.example", MX: "gw.corp.example", IP: "10.0.0.7",
		TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Auth: "none", PolicyType: audit.PolicyNotFound, Route: "gw.corp.example",
		Diagnostic: "hand-off route gw.corp.example: 503 5.7.0 certificate not verified: unknown authority", SendingIP: "10.0.0.1", Attempt: 1}
	if err := l.Write(partner, route); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	reps := build(t, []string{path}, opts())
	if len(reps) != 1 || len(reps[0].Policies) != 1 {
		t.Fatalf("want one report with one policy for plain.example: %+v", reps)
	}
	p := reps[0].Policies[0]
	if p.Summary != (Summary{Failed: 1}) || !reflect.DeepEqual(p.Policy.MXHosts, []string{"mx.plain.example"}) {
		t.Errorf("the route's session counted for the partner: summary %+v, mx hosts %v", p.Summary, p.Policy.MXHosts)
	}
}
