package smtpserver

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// message is what a testSession received in one transaction.
type message struct {
	hello Hello
	tls   bool
	from  Path
	mail  MailParams
	rcpts []Path
	rps   []RcptParams
	body  []byte
}

// testBackend keeps what its sessions accepted. It is a real Backend,
// the way the relay's inbound will be one: Data reads the whole body and
// answers 250 only after it has it.
type testBackend struct {
	auth bool // sessions implement Authenticator

	mu       sync.Mutex
	msgs     []message
	sessions int
	logouts  int
	resets   int
	dataErrs []error
}

func (b *testBackend) NewSession(_ context.Context, cs ConnState) (Session, *smtpreply.Reply) {
	b.mu.Lock()
	b.sessions++
	b.mu.Unlock()
	s := &testSession{b: b, cs: cs}
	if b.auth {
		return &authSession{s}, nil
	}
	return s, nil
}

func (b *testBackend) messages() []message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]message(nil), b.msgs...)
}

type testSession struct {
	b   *testBackend
	cs  ConnState
	cur message
}

func (s *testSession) Hello(h Hello) *smtpreply.Reply {
	if h.Name == "refuse.example" {
		return ptr(reply(550, "5.7.1", "go away"))
	}
	s.cur.hello = h
	return nil
}

func (s *testSession) Mail(from Path, p MailParams) *smtpreply.Reply {
	s.cur.from, s.cur.mail, s.cur.tls = from, p, s.cs.TLS != nil
	return nil
}

func (s *testSession) Rcpt(to Path, p RcptParams) *smtpreply.Reply {
	switch to.Local {
	case "denied":
		return ptr(reply(554, "5.7.1", "Relay access denied"))
	case "inject":
		return ptr(reply(550, "5.1.1", "no\r\n250 2.1.5 Ok"))
	case "broken":
		return ptr(reply(0, "", "a reply\r\n250 injected"))
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	s.cur.rps = append(s.cur.rps, p)
	return nil
}

func (s *testSession) Data(r io.Reader) *smtpreply.Reply {
	body, err := io.ReadAll(r)
	if err != nil {
		s.b.mu.Lock()
		s.b.dataErrs = append(s.b.dataErrs, err)
		s.b.mu.Unlock()
		return ptr(reply(250, "2.0.0", "must never be sent"))
	}
	m := s.cur
	m.body = body
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, m)
	n := len(s.b.msgs)
	s.b.mu.Unlock()
	return ptr(reply(250, "2.0.0", fmt.Sprintf("Ok: queued as %d", n)))
}

func (s *testSession) Reset() {
	s.b.mu.Lock()
	s.b.resets++
	s.b.mu.Unlock()
	s.cur = message{hello: s.cur.hello}
}

func (s *testSession) Logout() {
	s.b.mu.Lock()
	s.b.logouts++
	s.b.mu.Unlock()
}

type authSession struct{ *testSession }

func (s *authSession) Auth(c Credentials) *smtpreply.Reply {
	if c.Username == "user" && c.Password == "secret" && (c.Identity == "" || c.Identity == "user") {
		return nil
	}
	return ptr(replyAuthFailed)
}

// testServer runs a Server on a loopback port with a self-signed
// certificate for STARTTLS.
type testServer struct {
	*Server
	addr    string
	backend *testBackend
	client  *tls.Config
}

func startServer(t *testing.T, cfg Config, b *testBackend) *testServer {
	t.Helper()
	leaf := testpeer.SelfSigned(t, "mx.test")
	if cfg.Hostname == "" {
		cfg.Hostname = "mx.test"
	}
	if cfg.TLS == nil {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	}
	cfg.AuthFailureDelay = max(cfg.AuthFailureDelay, time.Millisecond)
	if b == nil {
		b = &testBackend{}
	}
	srv, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		srv.Serve(context.Background(), l)
		close(done)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return &testServer{Server: srv, addr: l.Addr().String(), backend: b, client: &tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"}}
}

// rawClient speaks SMTP octet by octet as a test tells it to.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (ts *testServer) dial(t *testing.T) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220 ")
	return c
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send %q: %v", trunc(s), err)
	}
}

// reply reads one reply.
func (c *rawClient) reply() smtpreply.Reply {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := smtpreply.Read(c.br)
	if err != nil {
		c.t.Fatalf("reading a reply: %v", err)
	}
	return r
}

// expect reads one reply and checks that its rendering starts with want
// ("250 2.1.0", "550 5.5.2 Error").
func (c *rawClient) expect(want string) smtpreply.Reply {
	c.t.Helper()
	r := c.reply()
	if !strings.HasPrefix(r.String()+" ", want) {
		c.t.Fatalf("got %q, want %q...", r.String(), want)
	}
	return r
}

// closed checks that the server has closed the connection, with nothing
// more to read.
func (c *rawClient) closed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.br)
	if err != nil || len(rest) > 0 {
		c.t.Fatalf("connection not closed cleanly: %q %v", rest, err)
	}
}

// startTLS upgrades the client's connection.
func (c *rawClient) startTLS(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	c.send("STARTTLS\r\n")
	c.expect("220 2.0.0")
	return c.handshake(cfg)
}

// handshake runs the client side of TLS on the connection.
func (c *rawClient) handshake(cfg *tls.Config) *tls.ConnectionState {
	c.t.Helper()
	tc := tls.Client(c.nc, cfg)
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	cs := tc.ConnectionState()
	return &cs
}

func (c *rawClient) ehlo() smtpreply.Reply {
	c.t.Helper()
	c.send("EHLO client.test\r\n")
	return c.expect("250 ")
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func dialRaw(t *testing.T, ts *testServer) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func readReply(t *testing.T, nc net.Conn) smtpreply.Reply {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := smtpreply.Read(bufio.NewReader(nc))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dialAddr(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func newReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }

func mbox(local, domain string) Path {
	return Path{Mailbox: address.Mailbox{Local: local, Domain: domain}}
}
