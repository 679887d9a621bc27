package smtpclient

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

// peer is the server side of one scripted SMTP conversation.
type peer struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// serve runs script on the first connection to a fresh loopback listener
// and returns its address. The script's failures are test errors; the
// test waits for the script to end.
func serve(t testing.TB, script func(p *peer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		script(&peer{t: t, conn: c, r: bufio.NewReader(c)})
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// send writes lines, each ended by CRLF, in one write.
func (p *peer) send(lines ...string) {
	p.conn.Write([]byte(strings.Join(lines, "\r\n") + "\r\n"))
}

// expect reads one command line and checks its prefix (case-insensitive).
func (p *peer) expect(prefix string) string {
	line, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Errorf("server: waiting for %q: %v", prefix, err)
		return ""
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(strings.ToUpper(line), strings.ToUpper(prefix)) {
		p.t.Errorf("server: got %q, want %q", line, prefix)
	}
	return line
}

// expectBatch reads one command per prefix and checks they all came in
// one write: after the first line the rest is already buffered.
func (p *peer) expectBatch(prefixes ...string) {
	p.expect(prefixes[0])
	if rest := prefixes[1:]; len(rest) > 0 && p.r.Buffered() == 0 {
		p.t.Errorf("server: %q came alone, not pipelined with %q", prefixes[0], rest)
	}
	for _, pre := range prefixes[1:] {
		p.expect(pre)
	}
}

// ehlo answers EHLO with the given extensions.
func (p *peer) ehlo(ext ...string) {
	p.expect("EHLO ")
	lines := []string{"mx.test hello"}
	lines = append(lines, ext...)
	for i := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		lines[i] = "250" + sep + lines[i]
	}
	p.send(lines...)
}

// startTLS turns the connection into a TLS server connection.
func (p *peer) startTLS(cfg *tls.Config) bool {
	tc := tls.Server(p.conn, cfg)
	if err := tc.Handshake(); err != nil {
		return false
	}
	p.conn = tc
	p.r = bufio.NewReader(tc)
	return true
}

// readData reads a DATA body up to the lone "." line, returning it raw.
func (p *peer) readData() string {
	var b strings.Builder
	for {
		line, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Errorf("server: reading data: %v", err)
			return b.String()
		}
		if line == ".\r\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}
