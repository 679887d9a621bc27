package smtpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/policy"
)

func quickOpts() Options {
	return Options{HeloName: "client.test", ServerName: "mx.test", Timeouts: UniformTimeouts(3 * time.Second)}
}

func TestFullSessionPipelinedWithTLS(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.test")
	var data, helo string
	addr := serve(t, func(p *peer) {
		// A slow, multi-line banner arriving in pieces.
		p.send("220-mx.test ESMTP")
		time.Sleep(50 * time.Millisecond)
		p.send("220-more banner", "220 ready")
		p.ehlo("PIPELINING", "STARTTLS", "AUTH PLAIN")
		p.expect("STARTTLS")
		p.send("220 2.0.0 go ahead")
		if !p.startTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}}) {
			t.Error("server handshake failed")
			return
		}
		helo = p.expect("EHLO ")
		p.send("250-mx.test", "250-PIPELINING", "250-SIZE 1000000", "250 8BITMIME")
		// PIPELINING: every command arrives before any reply is sent;
		// a client that waited for the MAIL reply would hang here.
		p.expect("MAIL FROM:<a@client.test> SIZE=42 BODY=8BITMIME")
		p.expect("RCPT TO:<x@mx.test>")
		p.expect("RCPT TO:<y@mx.test>")
		p.send("250 2.1.0 ok", "550 5.1.1 no such user", "250 2.1.5 ok")
		p.expect("DATA")
		p.send("354 go")
		data = p.readData()
		p.send("250 2.0.0 queued as X")
		p.expect("RSET")
		p.send("250 ok")
		p.expect("QUIT")
		p.send("221 bye")
	})
	opts := quickOpts()
	opts.RootCAs = ca.Pool()
	ctx := context.Background()
	s, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Banner(); b.Code != 220 || len(b.Lines) != 3 {
		t.Fatalf("banner %+v", b)
	}
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if !s.Supports("starttls") || !s.Supports("AUTH") {
		t.Fatalf("extensions before TLS: %v", s.Extensions())
	}
	out, err := s.StartTLS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !out.TLS || out.Version != tls.VersionTLS13 || out.Bits() < 128 || !out.Verified || out.VerifyError != "" {
		t.Fatalf("outcome %+v", out)
	}
	// RFC 3207 §4.2: what was learnt before TLS is forgotten.
	if s.Supports("AUTH") || s.Supports("STARTTLS") || !s.Supports("SIZE") {
		t.Fatalf("extensions after TLS: %v", s.Extensions())
	}
	if v := policy.Evaluate(policy.DefaultRequirement(), out); !v.Met {
		t.Fatalf("verdict %+v", v)
	}
	mail, rcpts, err := s.Envelope(ctx, "a@client.test", MailOptions{Size: 42, Body8BIT: true}, []string{"x@mx.test", "y@mx.test"})
	if err != nil {
		t.Fatal(err)
	}
	if mail.Code != 250 || len(rcpts) != 2 || rcpts[0].Code != 550 || rcpts[0].Enhanced != "5.1.1" || rcpts[1].Code != 250 {
		t.Fatalf("mail %v rcpts %v", mail, rcpts)
	}
	rep, err := s.Data(ctx, strings.NewReader("Subject: t\n\n.leading dot\r\nbare\rcr\nlast"))
	if err != nil || rep.Code != 250 {
		t.Fatalf("data: %v %v", rep, err)
	}
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "Subject: t\r\n\r\n..leading dot\r\nbare\r\ncr\r\nlast\r\n"; data != want {
		t.Fatalf("data = %q, want %q", data, want)
	}
	if helo != "EHLO client.test" {
		t.Fatalf("second EHLO = %q", helo)
	}
	names := []string{}
	for _, st := range s.Steps() {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, ","); got != "connect,banner,EHLO,STARTTLS,handshake,EHLO,MAIL,RCPT,RCPT,DATA,DATA,RSET,QUIT" {
		t.Fatalf("steps %s", got)
	}
	if len(s.PeerCertificates()) != 1 || s.PeerCertificates()[0].Subject.CommonName != "mx.test" {
		t.Fatalf("peer chain %v", s.PeerCertificates())
	}
}

func TestBanner(t *testing.T) {
	tests := []struct {
		name      string
		script    func(p *peer)
		timeout   time.Duration
		code      int
		temporary bool
		errHas    string
	}{
		{name: "421", script: func(p *peer) { p.send("421 4.3.2 too busy") }, code: 421, temporary: true},
		{name: "554 then QUIT", script: func(p *peer) {
			p.send("554 5.7.1 no service for you")
			p.expect("QUIT")
			p.send("221 bye")
		}, code: 554},
		{name: "silent tarpit", script: func(p *peer) { time.Sleep(time.Second) }, timeout: 200 * time.Millisecond, temporary: true, errHas: "no reply within"},
		{name: "dribbling tarpit", script: func(p *peer) {
			for range 10 {
				p.send("220-wait")
				time.Sleep(100 * time.Millisecond)
			}
		}, timeout: 300 * time.Millisecond, temporary: true, errHas: "no reply within"},
		{name: "closed", script: func(p *peer) {}, temporary: true, errHas: "closed"},
		{name: "garbage", script: func(p *peer) { p.send("HTTP/1.1 400 Bad Request") }, temporary: true, errHas: "malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, tc.script)
			opts := quickOpts()
			if tc.timeout > 0 {
				opts.Timeouts.Banner = tc.timeout
			}
			s, err := Dial(context.Background(), addr, opts)
			if err == nil {
				t.Fatal("Dial succeeded")
			}
			if IsTemporary(err) != tc.temporary {
				t.Fatalf("err %v: temporary = %v", err, IsTemporary(err))
			}
			rep, ok := ReplyOf(err)
			if tc.code != 0 && (!ok || rep.Code != tc.code) {
				t.Fatalf("err %v: reply %v", err, rep)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err %q does not say %q", err, tc.errHas)
			}
			if s == nil || !s.Closed() {
				t.Fatal("session not returned closed")
			}
		})
	}
}

func TestConnectRefused(t *testing.T) {
	addr := serve(t, func(p *peer) {})
	// Connect once to consume the listener, then it is closed.
	if s, err := Dial(context.Background(), addr, quickOpts()); err == nil {
		s.Close()
	}
	_, err := Dial(context.Background(), addr, quickOpts())
	var e *Error
	if !errors.As(err, &e) || e.Step != "connect" || !e.Temporary() {
		t.Fatalf("err = %v", err)
	}
}

func TestStartTLSCases(t *testing.T) {
	ca := testpeer.NewCA(t)
	good := ca.Issue(t, "mx.test")
	rsa := ca.IssueRSA(t, "mx.test")
	wrongName := ca.Issue(t, "other.test")
	self := testpeer.SelfSigned(t, "mx.test")
	tlsServer := func(cfg *tls.Config) func(p *peer) {
		return func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("STARTTLS")
			p.expect("STARTTLS")
			p.send("220 go ahead")
			if p.startTLS(cfg) {
				p.ehlo("PIPELINING")
				p.expect("QUIT")
				p.send("221 bye")
			}
		}
	}
	tests := []struct {
		name       string
		script     func(p *peer)
		wantErr    error // errors.Is, or errAny, or nil
		tls        bool
		version    uint16
		bits       int
		verified   bool
		verifyHas  string
		failureHas string
		diagnostic string // policy.Evaluate against the default requirement
	}{
		{name: "not offered", script: func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("PIPELINING")
			p.expect("QUIT")
			p.send("221 bye")
		}, failureHas: "STARTTLS not offered", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
		{name: "454 refused", script: func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("STARTTLS")
			p.expect("STARTTLS")
			p.send("454 4.7.0 TLS not available due to temporary reason")
			p.expect("QUIT")
			p.send("221 bye")
		}, failureHas: "454 4.7.0", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
		{name: "injected after 220", script: func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("STARTTLS")
			p.expect("STARTTLS")
			p.send("220 go ahead", "250-injected", "250 AUTH PLAIN")
			time.Sleep(200 * time.Millisecond)
		}, wantErr: ErrInjection, failureHas: "injection", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
		{name: "modern verified", script: tlsServer(&tls.Config{Certificates: []tls.Certificate{good.TLS}}),
			tls: true, version: tls.VersionTLS13, bits: 128, verified: true},
		{name: "wrong name", script: tlsServer(&tls.Config{Certificates: []tls.Certificate{wrongName.TLS}}),
			tls: true, version: tls.VersionTLS13, bits: 128, verifyHas: "does not name mx.test"},
		{name: "self-signed", script: tlsServer(&tls.Config{Certificates: []tls.Certificate{self.TLS}}),
			tls: true, version: tls.VersionTLS13, bits: 128, verifyHas: "unknown authority"},
		{name: "TLS 1.0 only", script: tlsServer(&tls.Config{Certificates: []tls.Certificate{good.TLS}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}),
			tls: true, version: tls.VersionTLS10, bits: 128, verified: true},
		// The wide offer: a peer with only 3DES and RSA key exchange
		// still gets encryption, judged at 112 bits.
		{name: "3DES only", script: tlsServer(&tls.Config{Certificates: []tls.Certificate{rsa.TLS}, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}}),
			tls: true, version: tls.VersionTLS12, bits: 112, verified: true},
		{name: "handshake fails", script: func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("STARTTLS")
			p.expect("STARTTLS")
			p.send("220 go ahead")
			buf := make([]byte, 512)
			p.r.Read(buf) // the ClientHello
			p.conn.Write([]byte("this is not TLS\r\n"))
			time.Sleep(100 * time.Millisecond)
		}, wantErr: errAny, failureHas: "handshake", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, tc.script)
			opts := quickOpts()
			opts.RootCAs = ca.Pool()
			ctx := context.Background()
			s, err := Dial(ctx, addr, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Hello(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := s.StartTLS(ctx)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("StartTLS: %v", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Fatalf("StartTLS err = %v, want %v", err, tc.wantErr)
			}
			if err != nil && !s.Closed() {
				t.Fatal("a dead session was left open")
			}
			if out.TLS != tc.tls || out.Version != tc.version || out.Bits() != tc.bits || out.Verified != tc.verified {
				t.Fatalf("outcome %+v (bits %d)", out, out.Bits())
			}
			if !strings.Contains(out.VerifyError, tc.verifyHas) || (tc.verifyHas == "" && out.VerifyError != "") {
				t.Fatalf("VerifyError %q, want %q", out.VerifyError, tc.verifyHas)
			}
			if !strings.Contains(out.Failure, tc.failureHas) {
				t.Fatalf("Failure %q, want %q", out.Failure, tc.failureHas)
			}
			if v := policy.Evaluate(policy.DefaultRequirement(), out); v.Diagnostic != tc.diagnostic {
				t.Fatalf("diagnostic %q, want %q", v.Diagnostic, tc.diagnostic)
			}
			if err == nil {
				if err := s.Quit(ctx); err != nil {
					t.Fatalf("session unusable after StartTLS: %v", err)
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func TestHeloFallback(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.send("220 old.test SMTP")
		p.expect("EHLO client.test")
		p.send("502 5.5.1 command not implemented")
		p.expect("HELO client.test")
		p.send("250 old.test")
		p.expect("MAIL FROM:<a@b.test>")
		p.send("250 ok")
		p.expect("RCPT TO:<c@d.test>")
		p.send("451 4.7.1 greylisted")
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := context.Background()
	s, err := Dial(ctx, addr, quickOpts())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if s.ESMTP() || len(s.Extensions()) != 0 {
		t.Fatal("HELO session claims extensions")
	}
	out, err := s.StartTLS(ctx)
	if err != nil || out.TLS || out.Failure != "STARTTLS not offered" {
		t.Fatalf("%+v %v", out, err)
	}
	// No PIPELINING: MAIL and RCPT go one by one; the 4xx stays a reply.
	mail, rcpts, err := s.Envelope(ctx, "a@b.test", MailOptions{Size: 10, SMTPUTF8: false}, []string{"c@d.test"})
	if err != nil || mail.Code != 250 || len(rcpts) != 1 || !rcpts[0].Temporary() {
		t.Fatalf("%v %v %v", mail, rcpts, err)
	}
	s.Quit(ctx)
}

func TestEnvelopeRefusals(t *testing.T) {
	t.Run("MAIL rejected while pipelining", func(t *testing.T) {
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("PIPELINING")
			p.expect("MAIL")
			p.expect("RCPT")
			p.expect("DATA")
			p.send("451 4.3.0 try later", "503 5.5.1 need MAIL", "503 5.5.1 need RCPT")
			p.expect("QUIT")
			p.send("221 bye")
		})
		ctx := context.Background()
		s, err := Dial(ctx, addr, quickOpts())
		if err != nil {
			t.Fatal(err)
		}
		s.Hello(ctx)
		mail, rcpts, err := s.Envelope(ctx, "a@b.test", MailOptions{}, []string{"c@mx.test"})
		if err == nil || !IsTemporary(err) || mail.Code != 451 || len(rcpts) != 1 {
			t.Fatalf("%v %v %v", mail, rcpts, err)
		}
		// The session stays in step: QUIT gets its own reply.
		if err := s.Quit(ctx); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SMTPUTF8 not offered", func(t *testing.T) {
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo("PIPELINING")
			p.expect("QUIT")
			p.send("221 bye")
		})
		ctx := context.Background()
		s, _ := Dial(ctx, addr, quickOpts())
		s.Hello(ctx)
		_, _, err := s.Envelope(ctx, "ü@b.test", MailOptions{SMTPUTF8: true}, []string{"c@mx.test"})
		if !errors.Is(err, ErrSMTPUTF8) || IsTemporary(err) {
			t.Fatalf("err = %v", err)
		}
		s.Quit(ctx)
	})
	t.Run("CRLF smuggling in an address", func(t *testing.T) {
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo()
			p.expect("QUIT")
			p.send("221 bye")
		})
		ctx := context.Background()
		s, _ := Dial(ctx, addr, quickOpts())
		s.Hello(ctx)
		if _, err := s.Rcpt(ctx, "a@b.test>\r\nDATA"); err == nil || IsTemporary(err) {
			t.Fatalf("err = %v", err)
		}
		s.Quit(ctx)
	})
	t.Run("421 mid-transaction", func(t *testing.T) {
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo()
			p.expect("MAIL")
			p.send("250 ok")
			p.expect("RCPT")
			p.send("421 4.4.2 idle too long")
		})
		ctx := context.Background()
		s, _ := Dial(ctx, addr, quickOpts())
		s.Hello(ctx)
		_, rcpts, err := s.Envelope(ctx, "a@b.test", MailOptions{}, []string{"c@mx.test"})
		if err == nil || !IsTemporary(err) || !s.Closed() || len(rcpts) != 0 {
			t.Fatalf("rcpts %v err %v closed %v", rcpts, err, s.Closed())
		}
	})
	t.Run("DATA rejected at the end", func(t *testing.T) {
		addr := serve(t, func(p *peer) {
			p.send("220 mx.test")
			p.ehlo()
			p.expect("DATA")
			p.send("354 go")
			p.readData()
			p.send("554 5.7.1 spam")
		})
		ctx := context.Background()
		s, _ := Dial(ctx, addr, quickOpts())
		s.Hello(ctx)
		rep, err := s.Data(ctx, strings.NewReader("x"))
		if err == nil || IsTemporary(err) || rep.Code != 554 {
			t.Fatalf("%v %v", rep, err)
		}
	})
}

func TestContextCancelInterrupts(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		p.expect("EHLO")
		time.Sleep(time.Second) // tarpit
	})
	ctx, cancel := context.WithCancel(context.Background())
	opts := quickOpts()
	opts.Timeouts.Command = time.Minute
	s, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err = s.Hello(ctx)
	if !errors.Is(err, context.Canceled) || !IsTemporary(err) {
		t.Fatalf("err = %v", err)
	}
}

// On a reused connection RSET, MAIL, RCPT and DATA go out in one write
// (RFC 2920: RSET may lead a group, DATA must end it), then the content:
// two round trips per message.
func TestPipelinedTransaction(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		p.ehlo("PIPELINING")
		for i := range 2 {
			if i == 1 {
				p.expectBatch("RSET")
				p.send("250 ok")
			}
			p.expectBatch("MAIL FROM:<a@b.test>", "RCPT TO:<c@mx.test>", "RCPT TO:<d@mx.test>", "DATA")
			p.send("250 ok", "250 ok", "550 5.1.1 no such user", "354 go")
			if got := p.readData(); got != "hello\r\n" {
				p.t.Errorf("content %q", got)
			}
			p.send("250 2.0.0 queued")
		}
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := context.Background()
	s, err := Dial(ctx, addr, quickOpts())
	if err != nil {
		t.Fatal(err)
	}
	s.Hello(ctx)
	for i := range 2 {
		if i == 1 {
			s.ResetNext()
		}
		mail, rcpts, err := s.Envelope(ctx, "a@b.test", MailOptions{}, []string{"c@mx.test", "d@mx.test"})
		if err != nil || mail.Code != 250 || len(rcpts) != 2 || rcpts[0].Code != 250 || rcpts[1].Code != 550 {
			t.Fatalf("transaction %d: %v %v %v", i, mail, rcpts, err)
		}
		if rep, err := s.Data(ctx, strings.NewReader("hello")); err != nil || rep.Code != 250 {
			t.Fatalf("transaction %d: data %v %v", i, rep, err)
		}
	}
	if err := s.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// A cached connection the server has closed shows as a failed RSET, so
// the relay can take another connection: nothing was handed over.
func TestPipelinedResetOnDeadConnection(t *testing.T) {
	for _, how := range []string{"closed", "421"} {
		t.Run(how, func(t *testing.T) {
			addr := serve(t, func(p *peer) {
				p.send("220 mx.test")
				p.ehlo("PIPELINING")
				if how == "421" {
					p.expectBatch("RSET", "MAIL", "RCPT", "DATA")
					p.send("421 4.4.2 mx.test Error: timeout exceeded")
				}
			})
			ctx := context.Background()
			s, err := Dial(ctx, addr, quickOpts())
			if err != nil {
				t.Fatal(err)
			}
			s.Hello(ctx)
			time.Sleep(50 * time.Millisecond) // the server is gone or going
			s.ResetNext()
			_, _, err = s.Envelope(ctx, "a@b.test", MailOptions{}, []string{"c@mx.test"})
			var e *Error
			if !errors.As(err, &e) || e.Step != "RSET" || !IsTemporary(err) {
				t.Fatalf("err = %#v, want a temporary *Error at RSET", err)
			}
		})
	}
}

// A server that answers a pipelined DATA with 354 although it refused
// every recipient gets an empty message it has no one to deliver to.
func TestPipelinedDataWithoutRecipients(t *testing.T) {
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		p.ehlo("PIPELINING")
		p.expectBatch("MAIL", "RCPT", "DATA")
		p.send("250 ok", "550 5.1.1 no such user", "354 go ahead anyway")
		if got := p.readData(); got != "" {
			p.t.Errorf("content %q, want none", got)
		}
		p.send("554 5.5.1 no valid recipients")
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := context.Background()
	s, _ := Dial(ctx, addr, quickOpts())
	s.Hello(ctx)
	_, rcpts, err := s.Envelope(ctx, "a@b.test", MailOptions{}, []string{"c@mx.test"})
	if err != nil || len(rcpts) != 1 || rcpts[0].Code != 550 {
		t.Fatalf("%v %v", rcpts, err)
	}
	if err := s.EndData(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Quit(ctx); err != nil {
		t.Fatal(err)
	}
}

// Issue 10 point 5: addresses are parsed and written again, never copied.
// A quoted local part goes out quoted, as one address with no parameter
// after it; only the quoting needed is used; a string that is not a
// Mailbox never reaches the wire.
func TestEnvelopeAddressesSerialised(t *testing.T) {
	want := []string{
		`MAIL FROM:<"a b"@sender.test>`,
		`RCPT TO:<"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test>`,
		`RCPT TO:<plain@good.test>`,
		`RCPT TO:<User@plain.test>`,
		`RCPT TO:<"a\\b\"c"@good.test>`,
		`DATA`,
	}
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		p.ehlo("PIPELINING")
		for _, w := range want {
			if got := p.expect(w); got != w {
				t.Errorf("server got %q, want %q", got, w)
			}
		}
		p.send("250 ok", "250 ok", "250 ok", "250 ok", "250 ok", "554 5.5.1 no")
		p.expect("QUIT")
		p.send("221 bye")
	})
	ctx := context.Background()
	s, err := Dial(ctx, addr, quickOpts())
	if err != nil {
		t.Fatal(err)
	}
	s.Hello(ctx)
	for _, bad := range []string{"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x@good.test", "a b@good.test", "u@plain.test..", ""} {
		if _, _, err := s.Envelope(ctx, "a@b.test", MailOptions{}, []string{bad}); err == nil || IsTemporary(err) {
			t.Errorf("Envelope to %q: err = %v, want a permanent error", bad, err)
		}
	}
	_, rcpts, err := s.Envelope(ctx, `"a\ b"@sender.test`, MailOptions{}, []string{
		`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`, `"plain"@good.test`, "User@PLAIN.Test.", `"a\\b\"c"@good.test`,
	})
	if err != nil || len(rcpts) != 4 {
		t.Fatalf("%v %v", rcpts, err)
	}
	s.Quit(ctx)
}
