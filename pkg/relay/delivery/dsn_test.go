package delivery

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// report is a DSN read back with net/mail and mime/multipart, the way a
// mail client or a bounce processor reads it.
type report struct {
	header   mail.Header
	human    string
	perMsg   textproto.MIMEHeader
	perRcpt  []textproto.MIMEHeader
	parts    []string // content types in order
	original []byte   // the third part: headers or the whole message
}

func parseReport(t *testing.T, data string) report {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("DSN: %v\n%s", err, data)
	}
	rep := report{header: msg.Header}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN multipart: %v\n%s", err, data)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		rep.parts = append(rep.parts, ct)
		body, _ := io.ReadAll(p)
		switch ct {
		case "text/plain":
			dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			rep.human = string(dec)
		case "message/delivery-status", "message/global-delivery-status":
			r := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			if rep.perMsg, err = r.ReadMIMEHeader(); err != nil {
				t.Fatalf("per-message fields: %v", err)
			}
			for {
				h, err := r.ReadMIMEHeader()
				if len(h) > 0 {
					rep.perRcpt = append(rep.perRcpt, h)
				}
				if err != nil {
					break
				}
			}
		default:
			rep.original = body
		}
	}
	return rep
}

// rcpt is the recipient block for addr.
func (r report) rcpt(t *testing.T, addr string) textproto.MIMEHeader {
	t.Helper()
	for _, h := range r.perRcpt {
		if h.Get("Final-Recipient") == "rfc822; "+addr {
			return h
		}
	}
	t.Fatalf("no recipient block for %s in %v", addr, r.perRcpt)
	return nil
}

func (r report) recipients() []string {
	var out []string
	for _, h := range r.perRcpt {
		out = append(out, strings.TrimPrefix(h.Get("Final-Recipient"), "rfc822; "))
	}
	return out
}

// humanText is the human part with its line breaks folded to spaces.
func (r report) humanText() string { return strings.Join(strings.Fields(r.human), " ") }

// queueEnv spools env with content and tells the runner.
func (h *harness) queueEnv(env *spool.Envelope, content string) string {
	h.t.Helper()
	if err := h.spool.Put(env, strings.NewReader(content)); err != nil {
		h.t.Fatal(err)
	}
	h.runner.Notify(env.ID)
	return env.ID
}

const longBody = "From: alice@corp.test\r\nTo: bob@partner.test\r\nSubject: figures\r\nMessage-ID: <m2@corp.test>\r\n\r\nThe quarterly figures, line one.\r\n.line two starts with a dot\r\n"

func refuseUnknown(addr string) string {
	if strings.HasPrefix(addr, "unknown") {
		return "550 5.1.1 <" + addr + ">: Recipient address rejected: User unknown"
	}
	return "250 2.1.5 Ok"
}

// RFC 3461 §4.1: NOTIFY=NEVER gets no report at all, NOTIFY without
// FAILURE none for a failure; the default (no NOTIFY) gets one. The
// recipients are final either way.
func TestNotifyFailureHonoured(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = refuseUnknown })
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()

	never := h.queueEnv(&spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{
		{Address: "unknown1@partner.test", Notify: []string{"NEVER"}},
		{Address: "unknown2@partner.test", Notify: []string{"SUCCESS", "DELAY"}},
	}}, longBody)
	h.waitGone(never)
	mixed := h.queueEnv(&spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{
		{Address: "unknown3@partner.test", Notify: []string{"NEVER"}},
		{Address: "unknown4@partner.test"},
		{Address: "unknown5@partner.test", Notify: []string{"FAILURE"}, ORcpt: "rfc822;Five@corp.test"},
	}}, longBody)
	h.waitGone(mixed)

	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	time.Sleep(100 * time.Millisecond)
	if got = sink.Messages(); len(got) != 1 {
		t.Fatalf("%d DSNs, want 1 (only the mixed message's)", len(got))
	}
	rep := parseReport(t, got[0].Data)
	if r := rep.recipients(); !slices.Equal(r, []string{"unknown4@partner.test", "unknown5@partner.test"}) {
		t.Errorf("DSN reports on %v, want unknown4 and unknown5 only", r)
	}
	rc := rep.rcpt(t, "unknown5@partner.test")
	if rc.Get("Original-Recipient") != "rfc822; Five@corp.test" || rc.Get("Remote-MTA") != "dns; 127.0.0.1" ||
		rc.Get("Diagnostic-Code") != "smtp; 550 5.1.1 <unknown5@partner.test>: Recipient address rejected: User unknown" {
		t.Errorf("recipient fields %v", rc)
	}
	for _, a := range []string{"unknown1@partner.test", "unknown2@partner.test", "unknown3@partner.test"} {
		if rec := h.recordFor(a); rec.Event != "bounced" {
			t.Errorf("%s: audit %+v", a, rec)
		}
	}
}

// A delay warning goes only to recipients whose NOTIFY asks for delays.
func TestNotifyDelayHonoured(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.DelayWarning = time.Hour })
	route(h, "other.test", startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = func(string) string { return "450 4.2.0 greylisted" } }))
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	only := h.queueEnv(&spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{
		{Address: "never@other.test", Notify: []string{"NEVER"}},
		{Address: "failure@other.test", Notify: []string{"FAILURE"}},
	}}, longBody)
	both := h.queueEnv(&spool.Envelope{From: "alice@corp.test", Recipients: []spool.Recipient{
		{Address: "default@other.test"},
		{Address: "delay@other.test", Notify: []string{"DELAY"}},
		{Address: "never2@other.test", Notify: []string{"NEVER"}},
	}}, longBody)
	h.waitAttempts(only, "failure@other.test", 1)
	h.waitAttempts(both, "delay@other.test", 1)
	later := time.Now().Add(2 * time.Hour)
	h.now.Store(&later)
	h.runner.CheckTimers()
	var got []fakeMessage
	h.waitFor("the delay DSN", func() bool { got = sink.Messages(); return len(got) >= 1 })
	time.Sleep(100 * time.Millisecond)
	if got = sink.Messages(); len(got) != 1 {
		t.Fatalf("%d delay DSNs, want 1", len(got))
	}
	rep := parseReport(t, got[0].Data)
	if r := rep.recipients(); !slices.Equal(r, []string{"default@other.test", "delay@other.test"}) {
		t.Errorf("delay DSN reports on %v", r)
	}
	if a := rep.rcpt(t, "delay@other.test").Get("Action"); a != "delayed" {
		t.Errorf("Action = %q", a)
	}
}

// RFC 3461 §5.2.2: NOTIFY=SUCCESS past a hop without DSN gets our
// "relayed" report; nothing of DSN goes to that hop.
func TestRelayedDSNWhenNextHopLacksDSN(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", nil)
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queueEnv(&spool.Envelope{From: "alice@corp.test", DSNRet: "FULL", DSNEnvID: "ENV-7",
		Recipients: []spool.Recipient{
			{Address: "bob@partner.test", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;Bob.Orig@corp.test"},
			{Address: "carol@partner.test"},
		}}, longBody)
	h.waitGone(id)
	if got := f.MailLines(); len(got) != 1 || strings.Contains(got[0], "RET=") || strings.Contains(got[0], "ENVID=") {
		t.Errorf("MAIL to a hop without DSN: %q", got)
	}
	if got := f.RcptLines(); !slices.Equal(got, []string{"RCPT TO:<bob@partner.test>", "RCPT TO:<carol@partner.test>"}) {
		t.Errorf("RCPT to a hop without DSN: %q", got)
	}
	var got []fakeMessage
	h.waitFor("the relayed DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	rep := parseReport(t, got[0].Data)
	if s := rep.header.Get("Subject"); s != "Successful Mail Delivery Report" {
		t.Errorf("Subject = %q", s)
	}
	if r := rep.recipients(); !slices.Equal(r, []string{"bob@partner.test"}) {
		t.Fatalf("relayed DSN on %v, want bob only (carol asked nothing)", r)
	}
	rc := rep.rcpt(t, "bob@partner.test")
	for k, want := range map[string]string{
		"Action": "relayed", "Status": "2.0.0", "Remote-MTA": "dns; 127.0.0.1",
		"Original-Recipient": "rfc822; Bob.Orig@corp.test", "Diagnostic-Code": "smtp; 250 2.0.0 Ok: queued as FAKE",
	} {
		if got := rc.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := rep.perMsg.Get("Original-Envelope-Id"); got != "ENV-7" {
		t.Errorf("Original-Envelope-Id = %q", got)
	}
	if rep.parts[2] != "text/rfc822-headers" {
		t.Errorf("a success report returns %s", rep.parts[2])
	}
}

// A hop that offers DSN gets the parameters and the job of reporting:
// no report of ours.
func TestDSNParametersPassedToNextHop(t *testing.T) {
	h := newHarness(t, "", nil)
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.DSN = true })
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queueEnv(&spool.Envelope{From: "alice@corp.test", DSNRet: "HDRS", DSNEnvID: "id with space",
		Recipients: []spool.Recipient{
			{Address: "bob@partner.test", Notify: []string{"SUCCESS"}, ORcpt: "rfc822;bob+tag@corp.test"},
			{Address: "carol@partner.test", Notify: []string{"NEVER"}},
			{Address: "dave@partner.test"},
		}}, longBody)
	h.waitGone(id)
	if got := f.MailLines(); !slices.Equal(got, []string{"MAIL FROM:<alice@corp.test> SIZE=" + itoa(len(longBody)) + " RET=HDRS ENVID=id+20with+20space"}) {
		t.Errorf("MAIL lines %q", got)
	}
	want := []string{
		"RCPT TO:<bob@partner.test> NOTIFY=SUCCESS ORCPT=rfc822;bob+2Btag@corp.test",
		"RCPT TO:<carol@partner.test> NOTIFY=NEVER",
		"RCPT TO:<dave@partner.test>",
	}
	if got := f.RcptLines(); !slices.Equal(got, want) {
		t.Errorf("RCPT lines\n%q\nwant\n%q", got, want)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("%d reports of ours although the next hop offers DSN", n)
	}
}

// RFC 3461 §4.3: RET=FULL returns the whole message; above the cap only
// the headers; for a REQUIRETLS message (RFC 8689 §5) nothing of it.
func TestReturnFull(t *testing.T) {
	h := newHarness(t, "", func(c *Config) { c.MaxReturn = 1024 })
	f := startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = refuseUnknown })
	route(h, "partner.test", f)
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	big := longBody + strings.Repeat("padding line to pass the cap\r\n", 50)
	for i, tc := range []struct {
		env     spool.Envelope
		content string
		part    string
		human   string
	}{
		{spool.Envelope{DSNRet: "FULL"}, longBody, "message/rfc822", "It's attached below."},
		{spool.Envelope{DSNRet: "HDRS"}, longBody, "text/rfc822-headers", "Its headers are attached below."},
		{spool.Envelope{}, longBody, "text/rfc822-headers", "Its headers are attached below."},
		{spool.Envelope{DSNRet: "FULL"}, big, "text/rfc822-headers", "Only its headers are attached: the message is larger than the 1 KiB this gateway returns."},
		{spool.Envelope{DSNRet: "FULL", RequireTLS: true}, longBody, "", "It is not attached, nor are its headers: it was sent with REQUIRETLS"},
	} {
		env := tc.env
		env.From = "alice@corp.test"
		env.Recipients = []spool.Recipient{{Address: "unknown@partner.test"}}
		h.waitGone(h.queueEnv(&env, tc.content))
		var got []fakeMessage
		h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == i+1 })
		rep := parseReport(t, got[i].Data)
		part := ""
		if len(rep.parts) > 2 {
			part = rep.parts[2]
		}
		if part != tc.part || !strings.Contains(rep.humanText(), tc.human) {
			t.Errorf("case %d: part %q, human part:\n%s", i, part, rep.human)
		}
		if tc.part == "" && strings.Contains(got[i].Data, "Subject: figures") {
			t.Errorf("case %d: the redacted report carries the message's headers:\n%s", i, got[i].Data)
		}
		body := strings.Contains(string(rep.original), "The quarterly figures, line one.\r\n.line two")
		if body != (tc.part == "message/rfc822") {
			t.Errorf("case %d: body returned = %v:\n%s", i, body, rep.original)
		}
		if tc.part == "message/rfc822" {
			inner, err := mail.ReadMessage(bytes.NewReader(rep.original))
			if err != nil || inner.Header.Get("Subject") != "figures" {
				t.Errorf("returned message: %v %v", inner, err)
			}
		}
	}
}

// SMTPUTF8 mail gets RFC 6533's global report types.
func TestGlobalDSNForSMTPUTF8(t *testing.T) {
	h := newHarness(t, "", nil)
	route(h, "partner.test", startFake(t, "127.0.0.1:0", nil)) // no SMTPUTF8: returned with 5.6.7
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queueEnv(&spool.Envelope{From: "alice@corp.test", SMTPUTF8: true, DSNRet: "FULL",
		Recipients: []spool.Recipient{{Address: "jörg@partner.test", ORcpt: "utf-8;jörg@partner.test"}}},
		"From: alice@corp.test\r\nSubject: Grüße\r\n\r\nHallo Jörg\r\n")
	h.waitGone(id)
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	rep := parseReport(t, got[0].Data)
	if !slices.Equal(rep.parts, []string{"text/plain", "message/global-delivery-status", "message/global"}) {
		t.Fatalf("parts %v", rep.parts)
	}
	rc := rep.perRcpt[0]
	if rc.Get("Final-Recipient") != "utf-8; jörg@partner.test" || rc.Get("Original-Recipient") != "utf-8; jörg@partner.test" || rc.Get("Status") != "5.6.7" {
		t.Errorf("recipient fields %v", rc)
	}
	if !strings.Contains(string(rep.original), "Hallo Jörg") {
		t.Errorf("returned %q", rep.original)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// SPEC §4: Remote-MTA names a host only when it sent the reply. A host
// that could not be connected to sent nothing.
func TestRemoteMTAOnlyForAReply(t *testing.T) {
	h := newHarness(t, "", nil)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	h.runner.cfg.Routes["down.test"] = closed
	route(h, "slow.test", startFake(t, "127.0.0.1:0", func(f *fakeMX) { f.Rcpt = func(string) string { return "451 4.3.0 try again later" } }))
	sink := startFake(t, "127.0.0.1:0", nil)
	route(h, "corp.test", sink)
	h.start()
	id := h.queue("alice@corp.test", "carol@down.test", "dave@slow.test")
	h.waitAttempts(id, "carol@down.test", 1)
	h.waitAttempts(id, "dave@slow.test", 1)
	later := time.Now().Add(DefaultQueueLifetime + time.Minute)
	h.now.Store(&later)
	h.runner.Notify(id)
	h.waitGone(id)
	var got []fakeMessage
	h.waitFor("the DSN", func() bool { got = sink.Messages(); return len(got) == 1 })
	rep := parseReport(t, got[0].Data)
	carol, dave := rep.rcpt(t, "carol@down.test"), rep.rcpt(t, "dave@slow.test")
	if _, ok := carol["Remote-Mta"]; ok || carol.Get("Status") != "4.4.7" || !strings.Contains(carol.Get("Diagnostic-Code"), "connection refused") {
		t.Errorf("unreachable host: %v", carol)
	}
	if dave.Get("Remote-MTA") != "dns; 127.0.0.1" || dave.Get("Diagnostic-Code") != "smtp; 451 4.3.0 try again later" || dave.Get("Status") != "4.4.7" {
		t.Errorf("host that replied: %v", dave)
	}
	if !strings.Contains(rep.humanText(), "The last reply, from the recipient's mail server 127.0.0.1, was: 451 4.3.0 try again later") {
		t.Errorf("human part:\n%s", rep.human)
	}
}
