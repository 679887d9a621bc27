package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	report "github.com/smgctl/smgctl/pkg/audit/tlsrpt"
	"github.com/smgctl/smgctl/pkg/mx"
)

func TestParseRecords(t *testing.T) {
	for _, tc := range []struct {
		txts []string
		want []RUA
	}{
		{[]string{"v=TLSRPTv1; rua=mailto:tls@x.example"}, []RUA{{"mailto", "tls@x.example"}}},
		{[]string{"v=TLSRPTv1;rua=mailto:a@x.example,https://r.x.example/tlsrpt"}, []RUA{{"mailto", "a@x.example"}, {"https", "https://r.x.example/tlsrpt"}}},
		{[]string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a%2Cb@x.example"}, []RUA{{"mailto", "a,b@x.example"}}},
		{[]string{"v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example"}, nil}, // RFC 8460 §3: not exactly one
		{[]string{"v=TLSRPTv2; rua=mailto:a@x.example"}, nil},
		{[]string{"v=TLSRPTv1; rua=http://insecure.example/"}, nil},
		{nil, nil},
	} {
		got, err := ParseRecords(tc.txts)
		if !reflect.DeepEqual(got, tc.want) || (tc.want == nil) != (err != nil) {
			t.Errorf("%q: %v %v, want %v", tc.txts, got, err, tc.want)
		}
	}
}

var day = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)

// writeLog writes yesterday's (day's) sessions to two domains and one
// report message of the relay itself, through the audit writer.
func writeLog(t *testing.T, path string) {
	t.Helper()
	l, err := audit.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := day.Add(9 * time.Hour)
	recs := []audit.Record{
		{Time: at, Event: audit.Delivered, QueueID: "Q1", Recipient: "a@partner.example", MX: "mx.partner.example", IP: "192.0.2.5",
			TLS: true, TLSVersion: "TLSv1.3", Bits: 128, Attempt: 1, PolicyType: audit.PolicySTS,
			PolicyStrings: []string{"version: STSv1", "mode: testing", "mx: mx.partner.example", "max_age: 86400"}, STSMX: []string{"mx.partner.example"}},
		{Time: at, Event: audit.Delivered, QueueID: "Q2", Recipient: "a@partner.example", MX: "mx.partner.example", IP: "192.0.2.5",
			TLS: true, Attempt: 1, PolicyType: audit.PolicySTS, ResultType: audit.ResultCertExpired, PublishedIgnored: true, SendingIP: "192.0.2.1",
			PolicyStrings: []string{"version: STSv1", "mode: testing", "mx: mx.partner.example", "max_age: 86400"}, STSMX: []string{"mx.partner.example"}},
		{Time: at, Event: audit.Delivered, QueueID: "Q3", Recipient: "b@quiet.example", MX: "mx.quiet.example", IP: "192.0.2.6", TLS: true, Attempt: 1},
		{Time: at, Event: audit.Deferred, QueueID: "Q4", MessageID: report.ReportMessageIDPrefix + "X@relay.example>", Recipient: "tls@rua.example",
			MX: "mx.rua.example", IP: "192.0.2.7", ResultType: audit.ResultSTARTTLSNotSupported, Attempt: 1},
	}
	if err := l.Write(recs...); err != nil {
		t.Fatal(err)
	}
	l.Close()
}

type harness struct {
	dir, log string
	dns      *testpeer.DNS
	res      *mx.Resolver
	mu       sync.Mutex
	mails    []*Mail
	audited  []audit.Record
	posts    [][]byte
	srv      *httptest.Server
	pool     *x509.CertPool // nil: the test server's CA
	now      time.Time
	byName   bool // the HTTPS rua names a host only h.dns knows
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t, false) }

// newHarnessWith: byName publishes the HTTPS rua as https://example.com
// (a name in the test server's certificate) resolved by the test DNS
// server only, the sender's LookupAddrs.
func newHarnessWith(t *testing.T, byName bool) *harness {
	h := &harness{dir: t.TempDir(), now: day.Add(24*time.Hour + 5*time.Minute)}
	h.log = filepath.Join(h.dir, "audit.log")
	writeLog(t, h.log)
	h.dns = testpeer.StartDNS(t)
	var err error
	if h.res, err = mx.NewResolver(h.dns.Addr(), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "want a POST of application/tlsrpt+gzip", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.posts = append(h.posts, body)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	h.byName = byName
	if byName {
		h.dns.AddA("example.com", "127.0.0.1")
	}
	h.dns.AddTXT("_smtp._tls.partner.example", "v=TLSRPTv1; rua=mailto:tlsrpt@rua.example,"+h.ruaURL())
	// quiet.example publishes no record: no report.
	return h
}

// ruaURL is the HTTPS rua partner.example publishes.
func (h *harness) ruaURL() string {
	if h.byName {
		return strings.Replace(h.srv.URL, "127.0.0.1", "example.com", 1) + "/report"
	}
	return h.srv.URL + "/report"
}

// sender is a fresh Sender, as after a restart: only the files persist.
func (h *harness) sender(t *testing.T) *Sender {
	t.Helper()
	pool := h.pool
	if pool == nil {
		pool = h.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	}
	var lookupAddrs func(context.Context, string) ([]netip.Addr, error)
	if h.byName {
		lookupAddrs = h.res.LookupAddrs
	}
	s, err := New(Config{
		AuditLog: h.log, State: filepath.Join(h.dir, StateFile),
		Submitter: "relay.example", Organization: "Corp", Contact: "postmaster@relay.example",
		LookupTXT: h.res.LookupTXT, IsNotFound: mx.IsNotFound,
		Enqueue: func(m *Mail) error { h.mu.Lock(); defer h.mu.Unlock(); h.mails = append(h.mails, m); return nil },
		Audit: func(r ...audit.Record) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.audited = append(h.audited, r...)
			return nil
		},
		LookupAddrs: lookupAddrs, RootCAs: pool, HTTPTimeout: 5 * time.Second,
		Now: func() time.Time { return h.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// wantReport is what `smgctl audit tlsrpt --date 2026-12-03 --domain
// partner.example` prints as its report (the same builder and options).
func (h *harness) wantReport(t *testing.T) []byte {
	t.Helper()
	logs, err := logset.Logs([]string{h.log})
	if err != nil {
		t.Fatal(err)
	}
	reps, err := report.Build(context.Background(), logs, report.Options{Day: day, Domain: "partner.example",
		Organization: "Corp", Contact: "postmaster@relay.example", Submitter: "relay.example"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("%v %v", reps, err)
	}
	b, _ := json.Marshal(reps[0])
	return b
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPassSendsMailAndHTTPS(t *testing.T) {
	h := newHarness(t)
	retry, err := h.sender(t).Pass(context.Background())
	if err != nil || retry {
		t.Fatalf("Pass: retry %v, %v", retry, err)
	}
	want := h.wantReport(t)
	if len(h.mails) != 1 || len(h.posts) != 1 {
		t.Fatalf("%d mails, %d posts; want one of each (quiet.example publishes no record)", len(h.mails), len(h.posts))
	}
	if got := gunzip(t, h.posts[0]); !bytes.Equal(got, want) {
		t.Errorf("POSTed report:\n got %s\nwant %s", got, want)
	}
	m := h.mails[0]
	if m.To != "tlsrpt@rua.example" || m.From != "postmaster@relay.example" || !strings.HasPrefix(m.MessageID, report.ReportMessageIDPrefix) {
		t.Errorf("envelope %q → %q, Message-ID %s", m.From, m.To, m.MessageID)
	}
	checkMIME(t, m, want)
	// Each sending audited, with the domain, the rua and the report id.
	var got []string
	for _, r := range h.audited {
		if r.Event != audit.TLSRPTSent || r.ReportDomain != "partner.example" || r.ReportID != "2026-12-03_partner.example@relay.example" {
			t.Errorf("audit record %+v", r)
		}
		got = append(got, r.RUA)
	}
	if wantRUA := []string{"mailto:tlsrpt@rua.example", h.srv.URL + "/report"}; !reflect.DeepEqual(got, wantRUA) {
		t.Errorf("audited rua %v, want %v", got, wantRUA)
	}
}

// The HTTPS rua's host is found by the relay's resolver (LookupAddrs),
// as the _smtp._tls record was, not by the system's.
func TestPassHTTPSHostByRelayResolver(t *testing.T) {
	h := newHarnessWith(t, true)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.posts) != 1 {
		t.Fatalf("%d posts, want 1; audit %+v", len(h.posts), h.audited)
	}
	if got, want := gunzip(t, h.posts[0]), h.wantReport(t); !bytes.Equal(got, want) {
		t.Errorf("POSTed report:\n got %s\nwant %s", got, want)
	}
	for _, r := range h.audited {
		if r.Event != audit.TLSRPTSent {
			t.Errorf("%s %s: %s", r.Event, r.RUA, r.Diagnostic)
		}
	}
}

// checkMIME parses the message back as a receiver would (RFC 8460 §5.3).
func checkMIME(t *testing.T, m *Mail, want []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(m.Bytes))
	if err != nil {
		t.Fatal(err)
	}
	hd := msg.Header
	if s := hd.Get("Subject"); s != "Report Domain: partner.example Submitter: relay.example Report-ID: <2026-12-03_partner.example@relay.example>" {
		t.Errorf("Subject: %s", s)
	}
	if hd.Get("TLS-Report-Domain") != "partner.example" || hd.Get("TLS-Report-Submitter") != "relay.example" || hd.Get("Message-ID") != m.MessageID {
		t.Errorf("headers: %v", hd)
	}
	mt, params, err := mime.ParseMediaType(hd.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q: %v", hd.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var attachment []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		types = append(types, ct)
		body, _ := io.ReadAll(p)
		if ct == "application/tlsrpt+gzip" {
			if p.Header.Get("Content-Transfer-Encoding") != "base64" || !strings.HasSuffix(p.FileName(), ".json.gz") ||
				!strings.HasPrefix(p.FileName(), "relay.example!partner.example!") {
				t.Errorf("attachment headers %v", p.Header)
			}
			if attachment, err = base64.StdEncoding.DecodeString(strings.ReplaceAll(string(body), "\r\n", "")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !reflect.DeepEqual(types, []string{"text/plain", "application/tlsrpt+gzip"}) {
		t.Errorf("parts %v", types)
	}
	if got := gunzip(t, attachment); !bytes.Equal(got, want) {
		t.Errorf("mailed report:\n got %s\nwant %s", got, want)
	}
}

// A restart the same day sends nothing again; the next day's pass starts
// a new state.
func TestPassOncePerDayAcrossRestart(t *testing.T) {
	h := newHarness(t)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(3 * time.Hour)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.mails) != 1 || len(h.posts) != 1 || len(h.audited) != 2 {
		t.Fatalf("after a restart: %d mails, %d posts, %d audit records; want 1, 1, 2", len(h.mails), len(h.posts), len(h.audited))
	}
	var st State
	b, _ := os.ReadFile(filepath.Join(h.dir, StateFile))
	json.Unmarshal(b, &st)
	if st.Day != "2026-12-03" || st.Domains["partner.example"] != stateSent || st.Domains["quiet.example"] != stateNoRUA {
		t.Errorf("state %s", b)
	}
	// The next day: no sessions on 2026-12-04 in the log, nothing sent,
	// the state moves on.
	h.now = h.now.Add(24 * time.Hour)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(h.dir, StateFile))
	if len(h.mails) != 1 || !strings.Contains(string(b), `"day": "2026-12-04"`) {
		t.Errorf("next day: %d mails, state %s", len(h.mails), b)
	}
}

// A stop between "sending" and "sent" (simulated by the state file it
// leaves) is not followed by a second sending, and is audited.
func TestPassInterruptedIsNotResent(t *testing.T) {
	h := newHarness(t)
	os.WriteFile(filepath.Join(h.dir, StateFile), []byte(`{"day":"2026-12-03","domains":{"partner.example":"sending"}}`), 0o600)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.mails) != 0 || len(h.posts) != 0 {
		t.Fatalf("resent after an interrupted sending: %d mails, %d posts", len(h.mails), len(h.posts))
	}
	if len(h.audited) != 1 || h.audited[0].Event != audit.TLSRPTFailed || h.audited[0].ReportDomain != "partner.example" {
		t.Errorf("audit %+v", h.audited)
	}
}

// A sending interrupted on an earlier day is audited too when the next
// pass finds it, and today's reports still go.
func TestPassInterruptedEarlierDay(t *testing.T) {
	h := newHarness(t)
	os.WriteFile(filepath.Join(h.dir, StateFile), []byte(`{"day":"2026-12-01","domains":{"old.example":"sending","done.example":"sent"}}`), 0o600)
	if _, err := h.sender(t).Pass(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(h.mails) != 1 || len(h.audited) != 3 || h.audited[0].Event != audit.TLSRPTFailed || h.audited[0].ReportDomain != "old.example" ||
		h.audited[0].ReportID != "2026-12-01_old.example@relay.example" {
		t.Errorf("%d mails, audit %+v", len(h.mails), h.audited)
	}
}

// A DNS failure leaves the domain for a later pass; an HTTPS server
// whose certificate is not trusted gets nothing, and that is audited.
func TestPassDNSFailureAndUntrustedHTTPS(t *testing.T) {
	h := newHarness(t)
	h.dns.ServFail("_smtp._tls.partner.example")
	retry, err := h.sender(t).Pass(context.Background())
	if err != nil || !retry || len(h.mails)+len(h.posts) != 0 {
		t.Fatalf("SERVFAIL: retry %v, err %v, %d sent", retry, err, len(h.mails)+len(h.posts))
	}
	h.dns.Remove("_smtp._tls.partner.example")
	h.dns.AddTXT("_smtp._tls.partner.example", "v=TLSRPTv1; rua="+h.srv.URL+"/report")
	h.pool = x509.NewCertPool() // the server's CA is not trusted
	if retry, err = h.sender(t).Pass(context.Background()); err != nil || retry {
		t.Fatalf("retry %v, %v", retry, err)
	}
	if len(h.posts) != 0 || len(h.audited) != 1 || h.audited[0].Event != audit.TLSRPTFailed || !strings.Contains(h.audited[0].Diagnostic, "certificate") {
		t.Errorf("audit %+v", h.audited)
	}
}

// FuzzParseRecords: any TXT data gives either no record or rua of the
// two schemes the RFC defines, never a panic.
func FuzzParseRecords(f *testing.F) {
	for _, s := range []string{"v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1;rua=https://r.example/,mailto:%40@x", "v=TLSRPTv1; rua=;;=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, txt string) {
		ruas, err := ParseRecords([]string{txt})
		if (err == nil) != (len(ruas) > 0) {
			t.Fatalf("%q: %v and %v", txt, ruas, err)
		}
		for _, r := range ruas {
			if (r.Scheme != "mailto" || !strings.Contains(r.Address, "@")) && (r.Scheme != "https" || !strings.HasPrefix(strings.ToLower(r.Address), "https://")) {
				t.Fatalf("%q: rua %+v", txt, r)
			}
		}
	})
}
