package dsn

import (
	"bytes"
	"io"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// These tests check the report against SPEC §4's DSN bullet and RFC 3461/
// 3464/6533, reading it back with net/mail and mime/multipart (parse).

const original = "From: alice@corp.example\r\nTo: bob@partner.com\r\nSubject: quarterly figures\r\nMessage-ID: <q1@corp.example>\r\n\r\nThe figures are attached.\r\n.leading dot line\r\n"

func policyBounce() Report {
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	return Report{
		Hostname: "relay.corp.example", To: "alice@corp.example", QueueID: "Q1",
		Arrival: at, Now: at,
		Recipients: []Recipient{{
			Address: "bob@partner.com", Action: Failed,
			Diagnostic:  smtpreply.FromLine("503 5.7.0 encryption too weak 0 less than 112"),
			Policy:      &PolicyRefusal{File: "policy.conf", Entry: "partner.com", Line: 3, Host: "mx1.partner.com"},
			LastAttempt: at,
		}},
		Original: []byte(original),
	}
}

// SPEC §4: the human part says the gateway's policy entry (and line)
// refused, not the partner's server, and what to do; no Remote-MTA for a
// refusal no host sent; the B5 text kept exactly.
func TestPolicyRefusalIsTheGatewaysOwn(t *testing.T) {
	m, err := Build(policyBounce())
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	human := strings.Join(strings.Fields(p.human), " ")
	for _, want := range []string{
		"the gateway's TLS policy entry 'partner.com' (policy.conf line 3) requires an encrypted connection with at least 112-bit encryption",
		"mx1.partner.com offered no encryption at all",
		"This is the gateway's own policy decision, not a reply from the recipient's mail server",
		"What you can do:",
	} {
		if !strings.Contains(human, want) {
			t.Errorf("human part lacks %q:\n%s", want, p.human)
		}
	}
	// The diagnostic is quoted on one line, whole.
	if !strings.Contains(p.human, "\r\n    Diagnostic: 503 5.7.0 encryption too weak 0 less than 112\r\n") {
		t.Errorf("human part does not quote the diagnostic on one line:\n%q", p.human)
	}
	r := p.perRcpt[0]
	if got := r.Get("Diagnostic-Code"); got != "smtp; 503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("Diagnostic-Code = %q", got)
	}
	if _, ok := r["Remote-Mta"]; ok {
		t.Errorf("Remote-MTA %q for a refusal the gateway made itself", r.Get("Remote-MTA"))
	}
	if r.Get("Status") != "5.7.0" || r.Get("Action") != "failed" {
		t.Errorf("recipient fields %v", r)
	}
}

func TestPolicyRefusalWording(t *testing.T) {
	for diag, want := range map[string]string{
		"503 5.7.0 encryption too weak 128 less than 256":                                   "requires an encrypted connection with at least 256-bit encryption, and the recipient's mail server mx1.partner.com offered only 128-bit encryption",
		"503 5.7.0 protocol too old TLSv1.0 less than TLSv1.2":                              "requires TLSv1.2 or newer, and the recipient's mail server mx1.partner.com offered only TLSv1.0",
		"503 5.7.0 certificate not verified: x509: certificate signed by unknown authority": "requires a verified certificate for the recipient's mail server, and the recipient's mail server mx1.partner.com's certificate could not be verified (x509: certificate signed by unknown authority)",
	} {
		r := policyBounce()
		r.Recipients[0].Diagnostic = smtpreply.FromLine(diag)
		m, err := Build(r)
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, m.Bytes)
		if human := strings.Join(strings.Fields(p.human), " "); !strings.Contains(human, want) {
			t.Errorf("%s: human part lacks %q:\n%s", diag, want, p.human)
		}
		if got := p.perRcpt[0].Get("Diagnostic-Code"); got != "smtp; "+diag {
			t.Errorf("Diagnostic-Code = %q", got)
		}
	}
}

// A reply the partner's server sent is attributed to it, with Remote-MTA.
func TestRemoteRefusalNamesTheHost(t *testing.T) {
	r := policyBounce()
	r.Recipients[0].Policy = nil
	r.Recipients[0].RemoteMTA = "mx1.partner.com"
	r.Recipients[0].Diagnostic = smtpreply.FromLine("550 5.1.1 <bob@partner.com>: Recipient address rejected: User unknown")
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := p.perRcpt[0].Get("Remote-MTA"); got != "dns; mx1.partner.com" {
		t.Errorf("Remote-MTA = %q", got)
	}
	human := strings.Join(strings.Fields(p.human), " ")
	for _, want := range []string{"The recipient's mail server mx1.partner.com refused the message", "check the recipient's address"} {
		if !strings.Contains(human, want) {
			t.Errorf("human part lacks %q:\n%s", want, p.human)
		}
	}
	if strings.Contains(human, "policy") {
		t.Errorf("a remote refusal described as policy:\n%s", p.human)
	}
}

// RFC 3461 §4.3: RET=FULL returns the whole message; HDRS (or none) the
// headers only.
func TestReturnFullAndHeaders(t *testing.T) {
	r := policyBounce()
	r.Return = ReturnFull
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := strings.Join(p.partType, ","); got != "text/plain,message/delivery-status,message/rfc822" {
		t.Fatalf("parts = %s", got)
	}
	if !bytes.Equal(p.full, []byte(original)) {
		t.Errorf("returned message = %q, want %q", p.full, original)
	}
	inner, err := mail.ReadMessage(bytes.NewReader(p.full))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(inner.Body)
	if inner.Header.Get("Subject") != "quarterly figures" || !strings.Contains(string(body), "The figures are attached.") {
		t.Errorf("returned message: %v %q", inner.Header, body)
	}

	r.Return = ReturnHeaders
	m, err = Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p = parse(t, m.Bytes)
	if got := strings.Join(p.partType, ","); got != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Fatalf("parts = %s", got)
	}
	if strings.Contains(string(m.Bytes), "The figures are attached.") {
		t.Error("RET=HDRS report carries the body")
	}
}

// Above the cap only the headers go back, and the human part says why.
func TestReturnFullTooLarge(t *testing.T) {
	r := policyBounce()
	r.Return = ReturnHeaders
	r.TooLarge = 10 << 20
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if p.full != nil || p.headers == nil {
		t.Fatalf("parts %v", p.partType)
	}
	if human := strings.Join(strings.Fields(p.human), " "); !strings.Contains(human, "Only its headers are attached: the message is larger than the 10 MiB this gateway returns") {
		t.Errorf("human part:\n%s", p.human)
	}
}

// ENVID → Original-Envelope-Id (RFC 3464 §2.2.1); ORCPT →
// Original-Recipient (§2.3.1), per recipient, before Final-Recipient.
func TestEnvIDAndOriginalRecipient(t *testing.T) {
	r := policyBounce()
	r.EnvID = "QQ314159+x"
	r.Recipients[0].ORcpt = "rfc822;Bob.Original@partner.com"
	r.Recipients = append(r.Recipients, Recipient{Address: "carol@partner.com", Diagnostic: smtpreply.FromLine("550 5.1.1 no"), RemoteMTA: "mx1.partner.com", ORcpt: "utf-8;jörg@partner.com"},
		Recipient{Address: "dave@partner.com", Diagnostic: smtpreply.FromLine("550 5.1.1 no"), RemoteMTA: "mx1.partner.com"})
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := p.perMsg.Get("Original-Envelope-Id"); got != "QQ314159+x" {
		t.Errorf("Original-Envelope-Id = %q", got)
	}
	for i, want := range []string{"rfc822; Bob.Original@partner.com", `utf-8; j\x{F6}rg@partner.com`, ""} {
		if got := p.perRcpt[i].Get("Original-Recipient"); got != want {
			t.Errorf("recipient %d Original-Recipient = %q, want %q", i, got, want)
		}
	}
	if strings.Index(string(m.Bytes), "Original-Recipient: rfc822; Bob") > strings.Index(string(m.Bytes), "Final-Recipient: rfc822; bob") {
		t.Error("Original-Recipient after Final-Recipient (RFC 3464 §2.3 order)")
	}
	if m.EightBit {
		t.Error("an ASCII report marked 8-bit")
	}
}

// SMTPUTF8 mail: RFC 6533 message/global-delivery-status, with UTF-8
// addresses as they are, and message/global(-headers) for the original.
func TestGlobalReport(t *testing.T) {
	r := policyBounce()
	r.Global = true
	r.Recipients[0].Address = "jörg@partner.com"
	r.Recipients[0].ORcpt = "utf-8;jörg@partner.com"
	r.Original = []byte("From: alice@corp.example\r\nSubject: Grüße\r\n\r\nHallo Jörg\r\n")
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := strings.Join(p.partType, ","); got != "text/plain,message/global-delivery-status,message/global-headers" {
		t.Fatalf("parts = %s", got)
	}
	if got := p.perRcpt[0].Get("Final-Recipient"); got != "utf-8; jörg@partner.com" {
		t.Errorf("Final-Recipient = %q", got)
	}
	if got := p.perRcpt[0].Get("Original-Recipient"); got != "utf-8; jörg@partner.com" {
		t.Errorf("Original-Recipient = %q", got)
	}
	if string(p.headers) != "From: alice@corp.example\r\nSubject: Grüße\r\n" || !m.EightBit {
		t.Errorf("headers %q, EightBit %v", p.headers, m.EightBit)
	}
	r.Return = ReturnFull
	m, err = Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p = parse(t, m.Bytes)
	if got := strings.Join(p.partType, ","); got != "text/plain,message/global-delivery-status,message/global" {
		t.Fatalf("parts = %s", got)
	}
	if !strings.Contains(string(p.full), "Hallo Jörg") {
		t.Errorf("returned message %q", p.full)
	}
}

// RFC 3461 §5.2.2 / RFC 3464 §2.3.3: "relayed" for NOTIFY=SUCCESS when
// the next hop does not offer DSN; headers only whatever RET says.
func TestRelayedReport(t *testing.T) {
	r := policyBounce()
	r.Return = ReturnFull
	r.Recipients = []Recipient{{Address: "bob@partner.com", Action: Relayed, RemoteMTA: "mx1.partner.com", Diagnostic: smtpreply.FromLine("250 2.0.0 Ok: queued as 4XyZ")}}
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := p.header.Get("Subject"); got != "Successful Mail Delivery Report" {
		t.Errorf("Subject = %q", got)
	}
	rc := p.perRcpt[0]
	if rc.Get("Action") != "relayed" || rc.Get("Status") != "2.0.0" || rc.Get("Remote-MTA") != "dns; mx1.partner.com" ||
		rc.Get("Diagnostic-Code") != "smtp; 250 2.0.0 Ok: queued as 4XyZ" {
		t.Errorf("recipient fields %v", rc)
	}
	if p.full != nil || p.headers == nil {
		t.Errorf("a relayed report returns %v", p.partType)
	}
	if human := strings.Join(strings.Fields(p.human), " "); !strings.Contains(human, "does not offer delivery status notifications") {
		t.Errorf("human part:\n%s", p.human)
	}
}

// on-fail=defer: the delay warning says the gateway holds it back.
func TestDelayedByPolicy(t *testing.T) {
	r := policyBounce()
	r.Recipients[0].Action = Delayed
	r.Recipients[0].WillRetryUntil = r.Now.Add(96 * time.Hour)
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	human := strings.Join(strings.Fields(p.human), " ")
	for _, want := range []string{"entry 'partner.com' (policy.conf line 3)", "The gateway itself has held the message back", "not a reply from the recipient's mail server", "will keep trying until Wed, 05 Mar 2025 10:00:00 UTC"} {
		if !strings.Contains(human, want) {
			t.Errorf("human part lacks %q:\n%s", want, p.human)
		}
	}
}

func TestWants(t *testing.T) {
	for _, tc := range []struct {
		notify                   []string
		failed, delayed, relayed bool
	}{
		{nil, true, true, false},
		{[]string{"NEVER"}, false, false, false},
		{[]string{"SUCCESS"}, false, false, true},
		{[]string{"failure"}, true, false, false},
		{[]string{"DELAY", "SUCCESS"}, false, true, true},
		{[]string{}, false, false, false},
	} {
		if Wants(tc.notify, Failed) != tc.failed || Wants(tc.notify, Delayed) != tc.delayed || Wants(tc.notify, Relayed) != tc.relayed {
			t.Errorf("Wants(%q) = %v/%v/%v, want %v/%v/%v", tc.notify, Wants(tc.notify, Failed), Wants(tc.notify, Delayed), Wants(tc.notify, Relayed), tc.failed, tc.delayed, tc.relayed)
		}
	}
}

// A queue-lifetime expiry after a remote 4xx is not "refused": the
// report says the gateway gave up, and whose the last reply was.
func TestExpiryWording(t *testing.T) {
	r := policyBounce()
	r.Recipients[0].Policy = nil
	r.Recipients[0].Status = "4.4.7"
	r.Recipients[0].RemoteMTA = "mx1.partner.com"
	r.Recipients[0].Diagnostic = smtpreply.FromLine("451 4.3.0 try again later")
	m, err := Build(r)
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	human := strings.Join(strings.Fields(p.human), " ")
	for _, want := range []string{"ran out, and has given up", "The last reply, from the recipient's mail server mx1.partner.com, was: 451 4.3.0 try again later"} {
		if !strings.Contains(human, want) {
			t.Errorf("human part lacks %q:\n%s", want, p.human)
		}
	}
	if strings.Contains(human, "refused") {
		t.Errorf("an expiry described as a refusal:\n%s", p.human)
	}
	if got := p.perRcpt[0].Get("Status"); got != "4.4.7" {
		t.Errorf("Status = %q", got)
	}
}
