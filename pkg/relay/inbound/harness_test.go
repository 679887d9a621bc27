package inbound

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// relay is a running inbound server over a real spool in a temp dir.
type relay struct {
	t     testing.TB
	srv   *Server
	spool *spool.Spool
	addr  string
	ca    *testpeer.CA

	mu       sync.Mutex
	notified []string
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRelay serves cfg (Queue, Hostname, TLS and Logger filled in unless
// set) on 127.0.0.1:0 and stops it when the test ends.
func startRelay(t testing.TB, cfg Config) *relay {
	t.Helper()
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := &relay{t: t}
	if cfg.Queue == nil {
		sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sp.Close() })
		r.spool = sp
		cfg.Queue = sp
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "relay.test"
	}
	if cfg.TLS == nil {
		r.ca = testpeer.NewCA(t)
		leaf := r.ca.Issue(t, "relay.test")
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	}
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	if cfg.Notify == nil {
		cfg.Notify = func(id string) {
			r.mu.Lock()
			r.notified = append(r.notified, id)
			r.mu.Unlock()
		}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.srv, r.addr = srv, l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := srv.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

// queued returns the spool's committed IDs.
func (r *relay) queued() []string {
	r.t.Helper()
	ids, err := r.spool.List()
	if err != nil {
		r.t.Fatal(err)
	}
	return ids
}

// message returns envelope and body of a queued message.
func (r *relay) message(id string) (*spool.Envelope, string) {
	r.t.Helper()
	env, err := r.spool.Envelope(id)
	if err != nil {
		r.t.Fatal(err)
	}
	rc, err := r.spool.Body(id)
	if err != nil {
		r.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		r.t.Fatal(err)
	}
	return env, string(b)
}

// client is a raw SMTP client for scripted and hostile conversations.
type client struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
}

func (r *relay) dial() *client { return r.dialFrom("") }

// dialFrom connects from a chosen loopback address (every 127/8 address is
// local), to test the Allow list.
func (r *relay) dialFrom(local string) *client {
	r.t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	conn, err := d.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c := &client{t: r.t, conn: conn, br: bufio.NewReader(conn)}
	return c
}

// send writes raw bytes.
func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one (possibly multi-line) reply and returns it with the
// lines joined by "\n", or "EOF" when the server closed.
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			// Closed by the server (EOF or, with unread input, a reset).
			if len(lines) == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				return "EOF"
			}
			c.t.Fatalf("read reply: %v (got %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

// expect sends a command line (CRLF added) and checks the reply's prefix.
func (c *client) expect(cmd, prefix string) string {
	c.t.Helper()
	if cmd != "" {
		c.send(cmd + "\r\n")
	}
	got := c.reply()
	if !strings.HasPrefix(got, prefix) {
		c.t.Fatalf("%q: got %q, want %q...", cmd, got, prefix)
	}
	return got
}

// hello reads the greeting and says EHLO.
func (c *client) hello() string {
	c.t.Helper()
	c.expect("", "220 ")
	return c.expect("EHLO client.test", "250")
}

// startTLS upgrades the connection, trusting ca.
func (c *client) startTLS(ca *testpeer.CA) *tls.ConnectionState {
	c.t.Helper()
	c.expect("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{ServerName: "relay.test", RootCAs: ca.Pool()})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	st := tc.ConnectionState()
	return &st
}

// queuedID extracts the ID from "250 2.0.0 Ok: queued as ID".
func queuedID(t testing.TB, reply string) string {
	t.Helper()
	const p = "250 2.0.0 Ok: queued as "
	if !strings.HasPrefix(reply, p) {
		t.Fatalf("reply %q, want %s<ID>", reply, p)
	}
	return strings.TrimPrefix(reply, p)
}

// mustPrefix parses a netip prefix.
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
