package smtpclient

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

var dsnRcpts = []Recipient{
	{Addr: "x@mx.test", Notify: []string{"success", "FAILURE", "SUCCESS"}, ORcpt: "rfc822;a+tag@orig.test"},
	{Addr: "y@mx.test", Notify: []string{"NEVER"}, ORcpt: "utf-8;jörg@orig.test"},
	{Addr: "z@mx.test"},
}

// RFC 3461 §4: a server that offers DSN gets RET and ENVID on MAIL and
// NOTIFY and ORCPT on RCPT, xtext-encoded.
func TestDSNParametersPassedOn(t *testing.T) {
	var got []string
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		p.ehlo("PIPELINING", "DSN")
		for _, pre := range []string{"MAIL", "RCPT", "RCPT", "RCPT", "DATA"} {
			got = append(got, p.expect(pre))
		}
		p.send("250 2.1.0 ok", "250 2.1.5 ok", "250 2.1.5 ok", "250 2.1.5 ok", "354 go")
		p.readData()
		p.send("250 2.0.0 queued")
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := context.Background()
	s, err := Dial(ctx, addr, quickOpts())
	if err != nil {
		t.Fatal(err)
	}
	s.Hello(ctx)
	if _, _, err := s.EnvelopeTo(ctx, "a@b.test", MailOptions{Ret: "full", EnvID: "id 1+2=3"}, dsnRcpts); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Data(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Quit(ctx)
	want := []string{
		"MAIL FROM:<a@b.test> RET=FULL ENVID=id+201+2B2+3D3",
		"RCPT TO:<x@mx.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Btag@orig.test",
		`RCPT TO:<y@mx.test> NOTIFY=NEVER ORCPT=utf-8;j\x{F6}rg@orig.test`,
		"RCPT TO:<z@mx.test>",
		"DATA",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Without DSN at the server nothing of it is sent (RFC 3461 §4: the
// parameters are only for servers that offer the extension), with and
// without PIPELINING.
func TestDSNParametersNotSentWithoutDSN(t *testing.T) {
	for _, ext := range [][]string{{"PIPELINING"}, {"8BITMIME"}} {
		var got []string
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo(ext...)
			got = append(got, p.expect("MAIL"))
			if ext[0] == "PIPELINING" {
				for range dsnRcpts {
					got = append(got, p.expect("RCPT"))
				}
				p.expect("DATA")
				p.send("250 2.1.0 ok", "250 2.1.5 ok", "250 2.1.5 ok", "250 2.1.5 ok", "354 go")
			} else {
				p.send("250 2.1.0 ok")
				for range dsnRcpts {
					got = append(got, p.expect("RCPT"))
					p.send("250 2.1.5 ok")
				}
				p.expect("DATA")
				p.send("354 go")
			}
			p.readData()
			p.send("250 2.0.0 queued")
			p.expect("QUIT")
			p.send("221 bye")
		})
		ctx := context.Background()
		s, err := Dial(ctx, addr, quickOpts())
		if err != nil {
			t.Fatal(err)
		}
		s.Hello(ctx)
		if _, _, err := s.EnvelopeTo(ctx, "a@b.test", MailOptions{Ret: "FULL", EnvID: "E1"}, dsnRcpts); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Data(ctx, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		s.Quit(ctx)
		want := "MAIL FROM:<a@b.test>\nRCPT TO:<x@mx.test>\nRCPT TO:<y@mx.test>\nRCPT TO:<z@mx.test>"
		if strings.Join(got, "\n") != want {
			t.Errorf("%v: commands:\n%s\nwant:\n%s", ext, strings.Join(got, "\n"), want)
		}
	}
}

func TestNotifyValue(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"NEVER"}, "NEVER"},
		{[]string{"delay", "Failure"}, "DELAY,FAILURE"},
		{[]string{"SUCCESS", "bogus", "SUCCESS"}, "SUCCESS"},
		{[]string{"bogus"}, ""},
	} {
		if got := notifyValue(tc.in); got != tc.want {
			t.Errorf("notifyValue(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A real Postfix (it offers DSN) receives the parameters: its smtpd logs
// the commands as received (debug_peer_list), and for NOTIFY=SUCCESS it
// sends the "delivered" report itself, carrying our ENVID and ORCPT back;
// NOTIFY=NEVER gets none.
func TestDSNParametersRealPostfix(t *testing.T) {
	pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{Domains: []string{"rcpt.test", "sender.test"},
		Main: map[string]string{"debug_peer_list": "127.0.0.1"}})
	ctx := context.Background()
	s, err := Dial(ctx, pf.Addr(), Options{HeloName: "client.test", ServerName: pf.Hostname, Timeouts: UniformTimeouts(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Supports("DSN") {
		t.Fatalf("Postfix without DSN? %v", s.Extensions())
	}
	rcpts := []Recipient{
		{Addr: "a@rcpt.test", Notify: []string{"SUCCESS"}, ORcpt: "rfc822;Original+A@orig.test"},
		{Addr: "b@rcpt.test", Notify: []string{"NEVER"}, ORcpt: "rfc822;original-b@orig.test"},
	}
	_, reps, err := s.EnvelopeTo(ctx, "alice@sender.test", MailOptions{Ret: "HDRS", EnvID: "ENV id=42"}, rcpts)
	if err != nil || len(reps) != 2 || reps[0].Code != 250 || reps[1].Code != 250 {
		t.Fatalf("envelope %v %v", reps, err)
	}
	if _, err := s.Data(ctx, strings.NewReader("Subject: dsn pass-on\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	s.Quit(ctx)
	pf.WaitMessages(t, "rcpt.test", 2, 15*time.Second)
	reports := pf.WaitMessages(t, "sender.test", 1, 15*time.Second)
	log := pf.Maillog()
	for _, want := range []string{
		": MAIL FROM:<alice@sender.test> RET=HDRS ENVID=ENV+20id+3D42",
		": RCPT TO:<a@rcpt.test> NOTIFY=SUCCESS ORCPT=rfc822;Original+2BA@orig.test",
		": RCPT TO:<b@rcpt.test> NOTIFY=NEVER ORCPT=rfc822;original-b@orig.test",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("maillog lacks %q:\n%s", want, log)
		}
	}
	perMsg, perRcpt := deliveryStatus(t, reports[0].Raw)
	if got := perMsg.Get("Original-Envelope-Id"); got != "ENV id=42" {
		t.Errorf("Postfix's report: Original-Envelope-Id = %q", got)
	}
	if len(perRcpt) != 1 {
		t.Fatalf("Postfix reported on %d recipients, want only a@ (b@ said NEVER): %v", len(perRcpt), perRcpt)
	}
	if got := perRcpt[0].Get("Original-Recipient"); !strings.EqualFold(got, "rfc822;Original+A@orig.test") && !strings.EqualFold(got, "rfc822; Original+A@orig.test") {
		t.Errorf("Original-Recipient = %q", got)
	}
	if got := perRcpt[0].Get("Action"); got != "delivered" {
		t.Errorf("Action = %q", got)
	}
	time.Sleep(500 * time.Millisecond)
	if n := len(pf.Messages("sender.test")); n != 1 {
		t.Errorf("%d reports for the sender, want 1", n)
	}
}

// deliveryStatus reads an RFC 3464 report's message/delivery-status part.
func deliveryStatus(t *testing.T, raw []byte) (textproto.MIMEHeader, []textproto.MIMEHeader) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("not a report: %v\n%s", err, raw)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("no delivery-status part: %v\n%s", err, raw)
		}
		if ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct != "message/delivery-status" {
			continue
		}
		tr := textproto.NewReader(bufio.NewReader(p))
		perMsg, err := tr.ReadMIMEHeader()
		if err != nil {
			t.Fatal(err)
		}
		var perRcpt []textproto.MIMEHeader
		for {
			h, err := tr.ReadMIMEHeader()
			if len(h) > 0 {
				perRcpt = append(perRcpt, h)
			}
			if err == io.EOF {
				return perMsg, perRcpt
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}
