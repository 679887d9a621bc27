package smtpclient

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// requireTLSServer offers STARTTLS; after it, the EHLO lists afterTLS.
// It records the MAIL line, or "" when the client sent no MAIL (the next
// command must then be QUIT).
func requireTLSServer(t *testing.T, afterTLS []string, mail *string) (string, Options) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.test")
	addr := serve(t, func(p *peer) {
		p.send("220 mx.test")
		// REQUIRETLS in clear is ignored by the client: only the EHLO
		// after STARTTLS counts (RFC 8689 §2).
		p.ehlo("PIPELINING", "STARTTLS", "REQUIRETLS")
		p.expect("STARTTLS")
		p.send("220 go ahead")
		if !p.startTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}}) {
			t.Error("server handshake failed")
			return
		}
		p.ehlo(afterTLS...)
		line := p.expect("")
		if strings.HasPrefix(line, "QUIT") {
			p.send("221 bye")
			return
		}
		*mail = line
		p.send("250 ok")
		p.expect("RCPT")
		p.send("250 ok")
		if strings.Contains(strings.Join(afterTLS, " "), "PIPELINING") {
			p.expect("DATA")
			p.send("554 no thanks")
		}
		p.expect("QUIT")
		p.send("221 bye")
	})
	opts := quickOpts()
	opts.RootCAs = ca.Pool()
	return addr, opts
}

func dialTLS(t *testing.T, addr string, opts Options) *Session {
	ctx := context.Background()
	s, err := Dial(ctx, addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if s.OffersRequireTLS() {
		t.Error("OffersRequireTLS before STARTTLS: a keyword in clear text counts")
	}
	if o, err := s.StartTLS(ctx); err != nil || !o.TLS {
		t.Fatalf("StartTLS: %+v %v", o, err)
	}
	return s
}

// RFC 8689 §4.2.1: a next hop that offers REQUIRETLS after STARTTLS gets
// the flag on MAIL FROM, pipelined or not; a message without the flag
// does not send it.
func TestRequireTLSPassedOn(t *testing.T) {
	for _, c := range []struct {
		name     string
		ext      []string
		require  bool
		wantMail string
	}{
		{"pipelined", []string{"PIPELINING", "REQUIRETLS", "SIZE 100"}, true, "MAIL FROM:<a@client.test> SIZE=10 REQUIRETLS"},
		{"one by one", []string{"REQUIRETLS"}, true, "MAIL FROM:<a@client.test> REQUIRETLS"},
		{"not asked", []string{"REQUIRETLS"}, false, "MAIL FROM:<a@client.test>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mail string
			addr, opts := requireTLSServer(t, c.ext, &mail)
			s := dialTLS(t, addr, opts)
			if !s.OffersRequireTLS() {
				t.Error("OffersRequireTLS false after STARTTLS and EHLO with REQUIRETLS")
			}
			ctx := context.Background()
			if _, _, err := s.Envelope(ctx, "a@client.test", MailOptions{Size: 10, RequireTLS: c.require}, []string{"x@mx.test"}); err != nil {
				t.Fatal(err)
			}
			s.Quit(ctx)
			if mail != c.wantMail {
				t.Errorf("MAIL %q, want %q", mail, c.wantMail)
			}
		})
	}
}

// A server that offered REQUIRETLS only in clear text, or not at all,
// never gets a REQUIRETLS message: Mail fails with ErrRequireTLS,
// permanently, and sends no MAIL.
func TestRequireTLSNotOffered(t *testing.T) {
	for _, pipelined := range []bool{true, false} {
		var mail string
		ext := []string{"SIZE 100"}
		if pipelined {
			ext = append(ext, "PIPELINING")
		}
		addr, opts := requireTLSServer(t, ext, &mail)
		s := dialTLS(t, addr, opts)
		if s.OffersRequireTLS() {
			t.Error("OffersRequireTLS true without REQUIRETLS after STARTTLS")
		}
		ctx := context.Background()
		_, _, err := s.Envelope(ctx, "a@client.test", MailOptions{RequireTLS: true}, []string{"x@mx.test"})
		var se *Error
		if !errors.Is(err, ErrRequireTLS) || !errors.As(err, &se) || se.Temporary() || se.Step != "MAIL" {
			t.Errorf("pipelined %v: err %v, want a permanent MAIL *Error with ErrRequireTLS", pipelined, err)
		}
		s.Quit(ctx)
		if mail != "" {
			t.Errorf("pipelined %v: MAIL sent: %q", pipelined, mail)
		}
	}
}
