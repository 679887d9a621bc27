package testpeer

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// The REQUIRETLS server offers the extension only after STARTTLS, with a
// certificate from its CA that verifies for its name, and records the
// MAIL line as sent: smgctl's own client, passing the flag on, is seen
// with it; a message without it is seen without.
func TestRequireTLSServerRecordsFlag(t *testing.T) {
	s := StartRequireTLSServer(t, RequireTLSOptions{})
	ctx := context.Background()
	opts := smtpclient.Options{HeloName: "client.test", ServerName: "mx.requiretls.test", RootCAs: s.CA.Pool(),
		Timeouts: smtpclient.UniformTimeouts(5 * time.Second)}
	c, err := smtpclient.Dial(ctx, s.Addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Supports("REQUIRETLS") {
		t.Error("REQUIRETLS offered in clear text")
	}
	o, err := c.StartTLS(ctx)
	if err != nil || !o.TLS || !o.Verified {
		t.Fatalf("STARTTLS: %+v %v", o, err)
	}
	if !c.OffersRequireTLS() {
		t.Fatalf("REQUIRETLS not offered after STARTTLS: %v", c.Extensions())
	}
	body := "Subject: one\r\n\r\n.dotted line\r\nend\r\n"
	for _, req := range []bool{true, false} {
		if _, _, err := c.Envelope(ctx, "a@client.test", smtpclient.MailOptions{RequireTLS: req, Size: int64(len(body))}, []string{"b@mx.requiretls.test"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Data(ctx, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		c.ResetNext()
	}
	c.Quit(ctx)
	got := s.WaitMessages(t, 2, 5*time.Second)
	if m := got[0]; !m.RequireTLS() || m.MailLine != "MAIL FROM:<a@client.test> SIZE=35 REQUIRETLS" || !m.TLS || m.TLSVersion != tls.VersionTLS13 ||
		m.From != "a@client.test" || strings.Join(m.Rcpts, ",") != "b@mx.requiretls.test" || string(m.Data) != body {
		t.Errorf("first message %+v, data %q", m, m.Data)
	}
	if m := got[1]; m.RequireTLS() || m.MailLine != "MAIL FROM:<a@client.test> SIZE=35" {
		t.Errorf("second message %+v", m)
	}
}

// In clear text, and on a server started with NoRequireTLS, REQUIRETLS is
// neither offered nor accepted (555), and no message is recorded.
func TestRequireTLSServerRefusesWhereNotOffered(t *testing.T) {
	for _, noReq := range []bool{false, true} {
		s := StartRequireTLSServer(t, RequireTLSOptions{NoRequireTLS: noReq})
		conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var nc net.Conn = conn
		r := bufio.NewReader(nc)
		read := func() string {
			var all []string
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("reading: %v", err)
				}
				all = append(all, strings.TrimRight(l, "\r\n"))
				if len(l) < 4 || l[3] != '-' {
					return strings.Join(all, "\n")
				}
			}
		}
		cmd := func(line string) string {
			nc.Write([]byte(line + "\r\n"))
			return read()
		}
		read()
		if noReq {
			if ehlo := cmd("EHLO client.test"); !strings.Contains(ehlo, "STARTTLS") {
				t.Fatalf("EHLO %q", ehlo)
			}
			if rep := cmd("STARTTLS"); !strings.HasPrefix(rep, "220") {
				t.Fatalf("STARTTLS %q", rep)
			}
			tc := tls.Client(conn, &tls.Config{ServerName: "mx.requiretls.test", RootCAs: s.CA.Pool()})
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			nc, r = tc, bufio.NewReader(tc)
		}
		if ehlo := cmd("EHLO client.test"); strings.Contains(ehlo, "REQUIRETLS") {
			t.Errorf("NoRequireTLS %v: EHLO offers REQUIRETLS:\n%s", noReq, ehlo)
		}
		if rep := cmd("MAIL FROM:<a@client.test> REQUIRETLS"); !strings.HasPrefix(rep, "555 5.5.4") {
			t.Errorf("NoRequireTLS %v: MAIL with REQUIRETLS got %q", noReq, rep)
		}
		cmd("QUIT")
		nc.Close()
		if n := len(s.Messages()); n != 0 {
			t.Errorf("%d messages recorded", n)
		}
	}
}
