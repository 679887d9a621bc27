package relay_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	report "github.com/smgctl/smgctl/pkg/audit/tlsrpt"
	"github.com/smgctl/smgctl/pkg/relay"
	sender "github.com/smgctl/smgctl/pkg/relay/tlsrpt"
)

// The relay mails yesterday's TLS-RPT report to the rua a partner
// publishes: a real Postfix stores it, its gzip attachment is the report
// `smgctl audit tlsrpt` builds, and a restart does not send it again.
func TestRelayMailsTLSRPTReport(t *testing.T) {
	w := startWorld(t, "none")
	rua := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: w.ca, Domains: []string{"rua.test"}})
	w.dns.AddA(rua.Hostname, rua.IP.String())
	w.dns.AddMX("rua.test", 10, rua.Hostname)
	w.dns.AddTXT("_smtp._tls.none.test", "v=TLSRPTv1; rua=mailto:tlsrpt@rua.test")

	// Yesterday's sessions, in the log the relay continues: one to
	// none.test in clear text (no STARTTLS), one with a failure recorded.
	dir := t.TempDir()
	logPath := filepath.Join(dir, "audit.log")
	yesterday := time.Now().UTC().Add(-24 * time.Hour)
	l, err := audit.Open(logPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(
		audit.Record{Time: yesterday, Event: audit.Delivered, QueueID: "Y1", Recipient: "a@none.test", MX: w.none.Hostname, IP: w.none.IP.String(), Attempt: 1},
		audit.Record{Time: yesterday, Event: audit.Deferred, QueueID: "Y2", Recipient: "b@none.test", MX: w.none.Hostname, IP: w.none.IP.String(), Attempt: 1,
			PolicyType: audit.PolicySTS, PolicyStrings: []string{"version: STSv1", "mode: enforce", "mx: *.none.test", "max_age: 86400"}, STSMX: []string{"*.none.test"},
			ResultType: audit.ResultSTARTTLSNotSupported, Diagnostic: "MTA-STS: STARTTLS not offered"},
	)
	l.Close()

	start := func() *lab {
		return startRelay(t, w, "", func(c *relay.Config) {
			c.AuditLog = logPath
			c.Spool = filepath.Join(dir, "spool")
			c.TLSRPTOrganization = "Corp Test"
			relay.SetTLSRPTMaxDelay(c, 200*time.Millisecond)
		})
	}
	lb := start()
	msgs := rua.WaitMessages(t, "rua.test", 1, 30*time.Second)
	m := msgs[0]
	if s := m.Header.Get("Subject"); !strings.HasPrefix(s, "Report Domain: none.test Submitter: relay.corp.test Report-ID: <") {
		t.Errorf("Subject: %s", s)
	}
	if m.Header.Get("TLS-Report-Domain") != "none.test" || m.Header.Get("TLS-Report-Submitter") != "relay.corp.test" {
		t.Errorf("headers %v", m.Header)
	}
	got := tlsrptAttachment(t, m)
	logs, _ := logset.Logs([]string{logPath})
	reps, err := report.Build(context.Background(), logs, report.Options{Day: yesterday, Domain: "none.test",
		Organization: "Corp Test", Contact: "postmaster@relay.corp.test", Submitter: "relay.corp.test"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("%v %v", reps, err)
	}
	want, _ := json.Marshal(reps[0])
	if !bytes.Equal(got, want) {
		t.Errorf("mailed report:\n got %s\nwant %s", got, want)
	}
	if reps[0].Policies[0].Summary.Failed == 0 {
		t.Errorf("the report counts no failure: %s", want)
	}
	// The report's own delivery is audited and stays out of reports.
	lb.record(t, "tlsrpt@rua.test", audit.Delivered)

	// A restart the same day: nothing is sent again.
	lb.stop()
	start()
	time.Sleep(2 * time.Second)
	if n := len(rua.Messages("rua.test")); n != 1 {
		t.Errorf("%d reports after a restart, want 1", n)
	}
	var sent int
	f, _ := os.Open(logPath)
	audit.Scan(f, func(r audit.Record) error {
		if r.Event == audit.TLSRPTSent && r.ReportDomain == "none.test" && r.RUA == "mailto:tlsrpt@rua.test" {
			sent++
		}
		return nil
	})
	f.Close()
	if sent != 1 {
		t.Errorf("%d tlsrpt-sent records, want 1", sent)
	}
	if _, err := os.Stat(filepath.Join(dir, "spool", sender.StateFile)); err != nil {
		t.Errorf("state file: %v", err)
	}
}

// tlsrptAttachment is the decompressed report of a mailed TLS-RPT
// report (RFC 8460 §5.3: multipart/report; report-type="tlsrpt" with an
// application/tlsrpt+gzip part).
func tlsrptAttachment(t *testing.T, m testpeer.Message) []byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	var gz []byte
	mr := multipart.NewReader(bytes.NewReader(m.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct == "application/tlsrpt+gzip" {
			b, _ := io.ReadAll(p)
			gz, _ = base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(b)), ""))
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("no gzip attachment: %v\n%s", err, m.Raw)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip attachment: %v", err)
	}
	return got
}
