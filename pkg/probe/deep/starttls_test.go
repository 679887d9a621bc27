package deep

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// smtpScript serves one scripted SMTP conversation per connection: it
// writes banner, answers EHLO and STARTTLS with the given texts, then
// records the first bytes the client sends after STARTTLS.
func smtpScript(t *testing.T, banner, ehlo, starttls string) (addr string, after chan []byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	after = make(chan []byte, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		c.Write([]byte(banner))
		if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "EHLO ") {
			return
		}
		c.Write([]byte(ehlo))
		if line, _ := r.ReadString('\n'); line != "STARTTLS\r\n" {
			return
		}
		c.Write([]byte(starttls))
		buf := make([]byte, 5)
		n, _ := r.Read(buf)
		after <- buf[:n]
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String(), after
}

func TestStartTLS(t *testing.T) {
	const ehloOK = "250-mx.example\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
	tests := []struct {
		name                   string
		banner, ehlo, starttls string
		wantErr                string
	}{
		{"ok", "220 mx.example ESMTP\r\n", ehloOK, "220 2.0.0 Ready to start TLS\r\n", ""},
		{"multi-line banner", "220-mx.example ESMTP\r\n220-no UCE\r\n220 hi\r\n", ehloOK, "220 go ahead\r\n", ""},
		{"lowercase keyword", "220 mx\r\n", "250-mx\r\n250 starttls\r\n", "220 go\r\n", ""},
		{"no starttls", "220 mx\r\n", "250-mx\r\n250 PIPELINING\r\n", "", "STARTTLS not offered"},
		{"starttls refused", "220 mx\r\n", ehloOK, "454 4.7.0 TLS not available\r\n", "454 4.7.0 TLS not available"},
		{"go away banner", "554 5.7.1 no\r\n", "", "", "SMTP banner: 554"},
		{"injection after 220", "220 mx\r\n", ehloOK, "220 go\r\n250 injected\r\n", "data after its 220"},
		{"garbage banner", "HTTP/1.1 400 Bad Request\r\n", "", "", "malformed reply"},
		{"code changes mid-reply", "220-mx\r\n250 hi\r\n", "", "", "code changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, after := smtpScript(t, tt.banner, tt.ehlo, tt.starttls)
			conn, err := STARTTLS(addr, "probe.example", 5*time.Second)(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				if tt.wantErr == "STARTTLS not offered" && !errors.Is(err, ErrNoSTARTTLS) {
					t.Errorf("err %v is not ErrNoSTARTTLS", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write([]byte{22, 3, 1, 0, 0})
			if got := <-after; string(got) != string([]byte{22, 3, 1, 0, 0}) {
				t.Errorf("server saw %q after STARTTLS, want the hello", got)
			}
		})
	}
}

// A server that stops talking mid-preamble ends in the caller's deadline,
// not a hang.
func TestStartTLSContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hold := make(chan struct{})
	defer close(hold)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		<-hold
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = STARTTLS(l.Addr().String(), "", time.Minute)(ctx)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want deadline exceeded", err)
	}
}

func FuzzReadSMTPReply(f *testing.F) {
	f.Add("220 mx ESMTP\r\n")
	f.Add("250-mx\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
	f.Add("250\r\n")
	f.Add("2")
	f.Fuzz(func(t *testing.T, s string) {
		rep, err := readSMTPReply(bufio.NewReader(strings.NewReader(s)))
		if err == nil && (rep.Code < 200 || rep.Code > 599 || len(rep.Lines) == 0) {
			t.Fatalf("accepted %+v from %q", rep, s)
		}
	})
}
