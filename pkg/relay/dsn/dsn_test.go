package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// parsed is a report read back with the standard library only, the way a
// receiving MUA or a bounce processor would.
type parsed struct {
	header   mail.Header
	human    string
	perMsg   textproto.MIMEHeader
	perRcpt  []textproto.MIMEHeader
	headers  []byte // a text/rfc822-headers or message/global-headers part
	full     []byte // a message/rfc822 or message/global part
	partType []string
}

func parse(t testing.TB, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("mail.ReadMessage: %v\n%s", err, raw)
	}
	p := parsed{header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("multipart: %v\n%s", err, raw)
		}
		ct, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		p.partType = append(p.partType, ct)
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part %s: %v", ct, err)
		}
		switch ct {
		case "text/plain":
			if part.Header.Get("Content-Transfer-Encoding") == "quoted-printable" {
				dec, err := io.ReadAll(newQP(body))
				if err != nil {
					t.Fatalf("quoted-printable: %v", err)
				}
				body = dec
			}
			p.human = string(body)
		case "message/delivery-status", "message/global-delivery-status":
			r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			h, err := r.ReadMIMEHeader()
			if err != nil && err != io.EOF {
				t.Fatalf("per-message fields: %v\n%s", err, body)
			}
			p.perMsg = h
			for {
				h, err := r.ReadMIMEHeader()
				if len(h) > 0 {
					p.perRcpt = append(p.perRcpt, h)
				}
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("per-recipient fields: %v\n%s", err, body)
				}
			}
		case "text/rfc822-headers", "message/global-headers":
			p.headers = body
		case "message/rfc822", "message/global":
			p.full = body
		}
	}
	return p
}

func TestBuildBounce(t *testing.T) {
	arrival := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	attempt := arrival.Add(2 * time.Second)
	m, err := Build(Report{
		Hostname:          "relay.corp.example",
		To:                "alice@corp.example",
		QueueID:           "Q123",
		OriginalMessageID: "<orig@corp.example>",
		Arrival:           arrival,
		Now:               attempt,
		Recipients: []Recipient{{
			Address:     "bob@partner.example",
			Action:      Failed,
			RemoteMTA:   "mx1.partner.example",
			Diagnostic:  smtpreply.FromLine("503 5.7.0 encryption too weak 0 less than 112"),
			LastAttempt: attempt,
		}, {
			Address:     "carol@other.example",
			Action:      Failed,
			Diagnostic:  smtpreply.FromLine("550 5.1.1 <carol@other.example>: Recipient address rejected"),
			RemoteMTA:   "mx.other.example",
			LastAttempt: attempt,
		}},
		Original: []byte("From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: hello\r\nMessage-ID: <orig@corp.example>\r\n\r\nbody must not appear\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	checks := map[string]string{
		"From":           "MAILER-DAEMON@relay.corp.example (Mail Delivery System)",
		"To":             "<alice@corp.example>",
		"Auto-Submitted": "auto-replied",
		"In-Reply-To":    "<orig@corp.example>",
		"Message-Id":     "<" + m.MessageID + ">",
		"Subject":        "Undelivered Mail Returned to Sender",
	}
	for k, want := range checks {
		if got := p.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if d, err := p.header.Date(); err != nil || !d.Equal(attempt) {
		t.Errorf("Date = %v, %v; want %v", d, err, attempt)
	}
	if got := strings.Join(p.partType, ","); got != "text/plain,message/delivery-status,text/rfc822-headers" {
		t.Errorf("parts = %s", got)
	}
	if !strings.Contains(p.human, "503 5.7.0 encryption too weak 0 less than 112") {
		t.Errorf("human part does not quote the diagnostic:\n%s", p.human)
	}
	if got := p.perMsg.Get("Reporting-MTA"); got != "dns; relay.corp.example" {
		t.Errorf("Reporting-MTA = %q", got)
	}
	if got := p.perMsg.Get("Arrival-Date"); got != arrival.Format(time.RFC1123Z) {
		t.Errorf("Arrival-Date = %q", got)
	}
	if len(p.perRcpt) != 2 {
		t.Fatalf("%d recipient blocks, want 2", len(p.perRcpt))
	}
	want := []map[string]string{{
		"Final-Recipient":   "rfc822; bob@partner.example",
		"Action":            "failed",
		"Status":            "5.7.0",
		"Remote-MTA":        "dns; mx1.partner.example",
		"Diagnostic-Code":   "smtp; 503 5.7.0 encryption too weak 0 less than 112",
		"Last-Attempt-Date": attempt.Format(time.RFC1123Z),
	}, {
		"Final-Recipient": "rfc822; carol@other.example",
		"Status":          "5.1.1",
		"Diagnostic-Code": "smtp; 550 5.1.1 <carol@other.example>: Recipient address rejected",
	}}
	for i, w := range want {
		for k, v := range w {
			if got := p.perRcpt[i].Get(k); got != v {
				t.Errorf("recipient %d %s = %q, want %q", i, k, got, v)
			}
		}
	}
	if string(p.headers) != "From: alice@corp.example\r\nTo: bob@partner.example\r\nSubject: hello\r\nMessage-ID: <orig@corp.example>\r\n" {
		t.Errorf("original headers part = %q", p.headers)
	}
	if m.EightBit || m.UTF8 {
		t.Errorf("EightBit=%v UTF8=%v for an ASCII report", m.EightBit, m.UTF8)
	}
}

func TestBuildDelayed(t *testing.T) {
	until := time.Date(2025, 3, 6, 10, 0, 0, 0, time.UTC)
	m, err := Build(Report{
		Hostname: "relay", To: "a@b.example",
		Recipients: []Recipient{{Address: "x@y.example", Action: Delayed, Diagnostic: smtpreply.FromLine("451 4.3.0 try later"), WillRetryUntil: until}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if got := p.header.Get("Subject"); got != "Delayed Mail (still being retried)" {
		t.Errorf("Subject = %q", got)
	}
	r := p.perRcpt[0]
	if r.Get("Action") != "delayed" || r.Get("Status") != "4.3.0" || r.Get("Will-Retry-Until") != until.Format(time.RFC1123Z) {
		t.Errorf("recipient fields %v", r)
	}
	if r.Get("Remote-MTA") != "" {
		t.Errorf("Remote-MTA without an MX: %q", r.Get("Remote-MTA"))
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		rc   Recipient
		want string
	}{
		{Recipient{Diagnostic: smtpreply.FromLine("503 5.7.0 encryption too weak 0 less than 112")}, "5.7.0"},
		{Recipient{Diagnostic: smtpreply.FromLine("556 5.1.10 no mail")}, "5.1.10"},
		{Recipient{Diagnostic: smtpreply.FromLine("550 no enhanced code")}, "5.0.0"},
		{Recipient{Diagnostic: smtpreply.FromLine("451 try later")}, "4.0.0"},
		{Recipient{Diagnostic: smtpreply.FromLine("550 4.1.1 mismatched class")}, "5.0.0"},
		{Recipient{Status: "4.4.7", Diagnostic: smtpreply.FromLine("451 4.4.1 connection refused")}, "4.4.7"},
		{Recipient{Diagnostic: smtpreply.FromLine("connect: refused"), Action: Delayed}, "4.0.0"},
		{Recipient{Diagnostic: smtpreply.FromLine("")}, "5.0.0"},
		{Recipient{Status: "9.9.9", Diagnostic: smtpreply.FromLine("554 5.7.1 no")}, "5.7.1"},
	} {
		if got := statusOf(tc.rc); got != tc.want {
			t.Errorf("statusOf(%+v) = %q, want %q", tc.rc, got, tc.want)
		}
	}
}

func TestDiagnosticType(t *testing.T) {
	for in, want := range map[string]string{
		"503 5.7.0 encryption too weak 0 less than 112": "smtp; 503 5.7.0 encryption too weak 0 less than 112",
		"dial tcp 127.0.0.1:25: connection refused":     "X-smgctl; dial tcp 127.0.0.1:25: connection refused",
		"421-multi line": "smtp; 421 multi line", // stored text is read back as String writes it
		"550 ünïcode":    `smtp; 550 \x{FC}n\x{EF}code`,
	} {
		rep := smtpreply.FromLine(in)
		if got := diagnosticField(rep, rep.String()); got != want {
			t.Errorf("diagnosticField(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNullSenderRefused(t *testing.T) {
	_, err := Build(Report{To: "", Recipients: []Recipient{{Address: "x@y"}}})
	if !errors.Is(err, ErrNullSender) {
		t.Fatalf("err = %v, want ErrNullSender", err)
	}
}

func TestInjectionContained(t *testing.T) {
	m, err := Build(Report{
		Hostname: "relay\r\nBcc: evil@x",
		To:       "a@b\r\nBcc: evil@x",
		Recipients: []Recipient{{
			Address:    "r@x\r\n\r\nFinal-Recipient: rfc822; forged@x",
			Diagnostic: smtpreply.FromLine("550 5.7.1 no\r\nAction: delivered"),
			RemoteMTA:  "mx\nRemote-MTA: dns; forged",
		}},
		Original: []byte("Subject: x\r\nX-Bad: a\rb\x00c\r\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, m.Bytes)
	if len(p.header["Bcc"]) != 0 {
		t.Errorf("Bcc injected: %v", p.header["Bcc"])
	}
	if len(p.perRcpt) != 1 || len(p.perRcpt[0]["Action"]) != 1 || p.perRcpt[0].Get("Action") != "failed" || len(p.perRcpt[0]["Remote-Mta"]) != 1 {
		t.Errorf("fields injected into the delivery status: %v", p.perRcpt)
	}
	if string(p.headers) != "Subject: x\r\nX-Bad: abc\r\n" {
		t.Errorf("headers part = %q", p.headers)
	}
}

func TestEightBitAndUTF8(t *testing.T) {
	m, err := Build(Report{
		Hostname: "relay", To: "jörg@example.de",
		Recipients: []Recipient{{Address: "пользователь@пример.рф", Diagnostic: smtpreply.FromLine("550 5.1.1 no")}},
		Original:   []byte("Subject: Grüße\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !m.EightBit || !m.UTF8 {
		t.Errorf("EightBit=%v UTF8=%v, want both", m.EightBit, m.UTF8)
	}
	p := parse(t, m.Bytes)
	if got := p.perRcpt[0].Get("Final-Recipient"); !strings.HasPrefix(got, "utf-8; ") || !address.IsASCII(got) {
		t.Errorf("Final-Recipient = %q, want 7-bit utf-8 type", got)
	}
}

func TestLongHeaderLineFolded(t *testing.T) {
	long := "X-Long: " + strings.Repeat("a", 3000) + "\r\n"
	m, err := Build(Report{Hostname: "h", To: "a@b", Recipients: []Recipient{{Address: "c@d", Diagnostic: smtpreply.FromLine(strings.Repeat("5", 5000))}}, Original: []byte(long)})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(m.Bytes, []byte("\r\n")) {
		if len(l) > 998 {
			t.Fatalf("line of %d octets", len(l))
		}
	}
	parse(t, m.Bytes)
}

func FuzzBuild(f *testing.F) {
	f.Add("503 5.7.0 encryption too weak 0 less than 112", "bob@partner.example", "alice@corp.example", "mx.partner.example", "relay.example", []byte("Subject: hi\r\n\r\nbody"))
	f.Add("", "", "a", "", "", []byte{})
	f.Add("550\r\n--smgctl-dsn-x--\r\n", "a\r\nb", "ü@ö", "\x00", "h\xff", []byte("\r\r\n\n\x80--"))
	f.Add("421-first\r\n421 second", "<>", "\"quoted\"@x", "[127.0.0.1]", "host name", []byte("A: b\n c\n\nD: e"))
	f.Fuzz(func(t *testing.T, diag, rcpt, sender, mx, host string, headers []byte) {
		m, err := Build(Report{
			Hostname: host, To: sender, QueueID: rcpt, OriginalMessageID: diag, Arrival: time.Unix(0, 0),
			EnvID: diag, Global: len(host)%2 == 1, Return: Return(len(headers) % 2),
			Recipients: []Recipient{
				{Address: rcpt, Action: Failed, RemoteMTA: mx, Diagnostic: smtpreply.FromLine(diag), LastAttempt: time.Unix(1, 0), ORcpt: mx + ";" + rcpt,
					Policy: &PolicyRefusal{File: host, Entry: rcpt, Line: len(diag), Host: mx}},
				{Address: sender, Action: Delayed, Diagnostic: smtpreply.FromLine(mx), ORcpt: "rfc822;" + diag},
			},
			Original: headers,
		})
		if strings.TrimSpace(sender) == "" {
			if !errors.Is(err, ErrNullSender) {
				t.Fatalf("null sender: err = %v", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, m.Bytes)
		if len(p.partType) != 3 || len(p.perRcpt) != 2 {
			t.Fatalf("parts %v, %d recipient blocks\n%q", p.partType, len(p.perRcpt), m.Bytes)
		}
		if got := p.perRcpt[0].Get("Action"); got != "failed" {
			t.Fatalf("Action = %q", got)
		}
		rep := smtpreply.FromLine(diag)
		if d := fieldSafe(rep.String()); d != "" {
			if got := p.perRcpt[0].Get("Diagnostic-Code"); got != diagnosticField(rep, d) {
				t.Fatalf("Diagnostic-Code = %q, want %q", got, diagnosticField(rep, d))
			}
		}
		if p.header.Get("Auto-Submitted") != "auto-replied" {
			t.Fatalf("Auto-Submitted missing")
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	r := Report{
		Hostname: "relay.corp.example", To: "alice@corp.example", Arrival: time.Now(),
		Recipients: []Recipient{{Address: "bob@partner.example", Action: Failed, RemoteMTA: "mx1.partner.example", Diagnostic: smtpreply.FromLine("503 5.7.0 encryption too weak 0 less than 112")}},
		Original:   bytes.Repeat([]byte("Received: from a by b with ESMTPS id x\r\n"), 20),
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(r); err != nil {
			b.Fatal(err)
		}
	}
}

func newQP(b []byte) io.Reader { return quotedprintable.NewReader(bytes.NewReader(b)) }

// The DSN reads the reply's fields, not its text: the relay's own words
// (a Local reply) stay X-smgctl even when they start like a reply, and
// the status is the reply's enhanced code as given.
func TestDiagnosticFromFields(t *testing.T) {
	for _, tc := range []struct {
		rep          smtpreply.Reply
		field, state string
	}{
		{smtpreply.Local("550 5.1.1 in the relay's own words"), "X-smgctl; 550 5.1.1 in the relay's own words", "5.0.0"},
		{smtpreply.EncryptionTooWeak(0, 112), "smtp; 503 5.7.0 encryption too weak 0 less than 112", "5.7.0"},
		{smtpreply.Reply{Code: 550, Lines: []string{"5.1.1 said without RFC 2034"}}, "smtp; 550 5.1.1 said without RFC 2034", "5.0.0"},
	} {
		m, err := Build(Report{Hostname: "relay.example", To: "a@corp.example",
			Recipients: []Recipient{{Address: "b@p.example", Action: Failed, Diagnostic: tc.rep}}})
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, m.Bytes)
		if got := p.perRcpt[0].Get("Diagnostic-Code"); got != tc.field {
			t.Errorf("Diagnostic-Code = %q, want %q", got, tc.field)
		}
		if got := p.perRcpt[0].Get("Status"); got != tc.state {
			t.Errorf("%v: Status = %q, want %q", tc.rep, got, tc.state)
		}
	}
}

// A 5.7.30 return (RFC 8689) tells the sender what REQUIRETLS asked for
// and what to do, whether the gateway found no fitting hop or a remote
// hop refused to pass the message on; other 5.7 refusals do not say it.
func TestRequireTLSExplained(t *testing.T) {
	for _, c := range []struct {
		rc   Recipient
		want bool
	}{
		{Recipient{Address: "bob@partner.example", Diagnostic: smtpreply.RequireTLS("mx.partner.example did not offer REQUIRETLS")}, true},
		{Recipient{Address: "bob@partner.example", RemoteMTA: "mx.partner.example", Diagnostic: smtpreply.FromLine("550 5.7.30 REQUIRETLS support required")}, true},
		{Recipient{Address: "bob@partner.example", RemoteMTA: "mx.partner.example", Diagnostic: smtpreply.FromLine("550 5.7.1 relay denied")}, false},
	} {
		c.rc.Action = Failed
		m, err := Build(Report{Hostname: "relay.corp.example", To: "alice@corp.example", QueueID: "Q1",
			Now: time.Now(), Recipients: []Recipient{c.rc}, Original: []byte("Subject: x\r\n\r\n")})
		if err != nil {
			t.Fatal(err)
		}
		p := parse(t, m.Bytes)
		human := strings.Join(strings.Fields(p.human), " ")
		if got := strings.Contains(human, "The message was sent with REQUIRETLS") && strings.Contains(human, "send the message again without requiring it."); got != c.want {
			t.Errorf("%v: advice %v, want %v:\n%s", c.rc.Diagnostic, got, c.want, p.human)
		}
		if c.want && !strings.Contains(string(m.Bytes), "Status: 5.7.30") {
			t.Errorf("no Status 5.7.30:\n%s", m.Bytes)
		}
	}
}
