package testpeer

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireTLSServer is a next hop that offers REQUIRETLS (RFC 8689), which
// the Postfix on this machine (3.7) cannot: a small SMTP server of the
// project's own, in process, on a loopback socket. It offers STARTTLS
// with a certificate from a test CA and, after STARTTLS only (RFC 8689
// §2), REQUIRETLS; it accepts every message and records the MAIL line as
// the client sent it, so a test can prove the flag was passed on.
//
// It speaks just enough SMTP for an MTA's client: EHLO/HELO, STARTTLS,
// MAIL, RCPT, DATA (with PIPELINING), RSET, NOOP, QUIT. It is not a
// stand-in for a real MTA in any other respect.
type RequireTLSServer struct {
	// CA issued the server's certificate: its Pool or CertFile is what a
	// client must trust.
	CA   *CA
	Leaf *Leaf

	ln       net.Listener
	opts     RequireTLSOptions
	mu       sync.Mutex
	messages []RequireTLSMessage
	wg       sync.WaitGroup
	closing  chan struct{}
}

// RequireTLSOptions configure a RequireTLSServer.
type RequireTLSOptions struct {
	// Addr is the listen address; "" means 127.0.0.1 on a free port.
	// A relay that only dials port 25 needs FreeLoopbackIP(t)+":25"
	// (and root).
	Addr string
	// Hostname is the name in the greeting and the certificate; default
	// "mx.requiretls.test". The certificate also names the listen IP.
	Hostname string
	// CA issues the certificate; nil makes a fresh one.
	CA *CA
	// NoRequireTLS leaves REQUIRETLS out of the EHLO after STARTTLS: a
	// hop with TLS that does not offer the extension, and refuses the
	// parameter as any server refuses one it did not offer.
	NoRequireTLS bool
}

// RequireTLSMessage is one message the server accepted.
type RequireTLSMessage struct {
	// TLS: the transaction ran over TLS.
	TLS bool
	// TLSVersion is the negotiated version (tls.VersionTLS13, ...).
	TLSVersion uint16
	// MailLine is the MAIL command exactly as received, without CRLF.
	MailLine string
	// From is the reverse-path; Params the MAIL parameters, upper-cased
	// keywords with their values ("REQUIRETLS", "SIZE=123").
	From   string
	Params []string
	Rcpts  []string
	// Data is the message with CRLF line ends, dot-stuffing undone.
	Data []byte
}

// RequireTLS reports whether MAIL carried the REQUIRETLS parameter.
func (m RequireTLSMessage) RequireTLS() bool {
	for _, p := range m.Params {
		if p == "REQUIRETLS" {
			return true
		}
	}
	return false
}

// StartRequireTLSServer starts the server; it stops when the test ends.
func StartRequireTLSServer(t testing.TB, o RequireTLSOptions) *RequireTLSServer {
	t.Helper()
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Hostname == "" {
		o.Hostname = "mx.requiretls.test"
	}
	if o.CA == nil {
		o.CA = NewCA(t)
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		t.Fatalf("testpeer: REQUIRETLS server: %v", err)
	}
	ip := ln.Addr().(*net.TCPAddr).IP.String()
	s := &RequireTLSServer{CA: o.CA, Leaf: o.CA.Issue(t, o.Hostname, ip), ln: ln, opts: o, closing: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		close(s.closing)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// Addr is the listen address, "ip:port".
func (s *RequireTLSServer) Addr() string { return s.ln.Addr().String() }

// Messages returns the accepted messages, oldest first.
func (s *RequireTLSServer) Messages() []RequireTLSMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]RequireTLSMessage(nil), s.messages...)
}

// WaitMessages waits until n messages have arrived and returns them; the
// test fails after timeout.
func (s *RequireTLSServer) WaitMessages(t testing.TB, n int, timeout time.Duration) []RequireTLSMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := s.Messages()
		if len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("testpeer: REQUIRETLS server got %d messages in %v, want %d", len(m), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *RequireTLSServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() { // the test's end closes open sessions too
				select {
				case <-s.closing:
					c.Close()
				case <-stop:
				}
			}()
			s.serve(c)
		}()
	}
}

// rtSession is one connection's state.
type rtSession struct {
	conn  net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	tls   *tls.ConnectionState
	hello bool
	msg   *RequireTLSMessage // the open transaction
}

func (ss *rtSession) reply(lines ...string) error {
	for _, l := range lines {
		ss.w.WriteString(l + "\r\n")
	}
	return ss.w.Flush()
}

func (s *RequireTLSServer) serve(c net.Conn) {
	ss := &rtSession{conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	if ss.reply("220 "+s.opts.Hostname+" ESMTP testpeer") != nil {
		return
	}
	for {
		c.SetDeadline(time.Now().Add(time.Minute))
		line, err := ss.r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			ss.hello, ss.msg = true, nil
			err = ss.reply(s.ehlo(ss.tls != nil)...)
		case "HELO":
			ss.hello, ss.msg = true, nil
			err = ss.reply("250 " + s.opts.Hostname)
		case "STARTTLS":
			if ss.tls != nil {
				err = ss.reply("503 5.5.1 TLS already active")
				break
			}
			if err = ss.reply("220 2.0.0 Ready to start TLS"); err != nil {
				return
			}
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.Leaf.TLS}})
			if tc.Handshake() != nil {
				return
			}
			st := tc.ConnectionState()
			// RFC 3207 §4.2: everything learnt before is forgotten.
			*ss = rtSession{conn: tc, r: bufio.NewReader(tc), w: bufio.NewWriter(tc), tls: &st}
			c = tc
		case "MAIL":
			err = ss.reply(s.mail(ss, line, arg))
		case "RCPT":
			err = ss.reply(ss.rcpt(arg))
		case "DATA":
			if ss.msg == nil || len(ss.msg.Rcpts) == 0 {
				err = ss.reply("503 5.5.1 need MAIL and RCPT first")
				break
			}
			if err = ss.reply("354 End data with <CR><LF>.<CR><LF>"); err != nil {
				return
			}
			data, derr := readDotData(ss.r)
			if derr != nil {
				return
			}
			ss.msg.Data = data
			s.mu.Lock()
			s.messages = append(s.messages, *ss.msg)
			s.mu.Unlock()
			ss.msg = nil
			err = ss.reply("250 2.0.0 Ok: queued")
		case "RSET":
			ss.msg = nil
			err = ss.reply("250 2.0.0 Ok")
		case "NOOP":
			err = ss.reply("250 2.0.0 Ok")
		case "QUIT":
			ss.reply("221 2.0.0 Bye")
			return
		default:
			err = ss.reply("502 5.5.2 Error: command not recognized")
		}
		if err != nil {
			return
		}
	}
}

// ehlo is the EHLO reply: REQUIRETLS only over TLS (RFC 8689 §2),
// STARTTLS only before it (RFC 3207 §4.2).
func (s *RequireTLSServer) ehlo(overTLS bool) []string {
	ext := []string{s.opts.Hostname, "PIPELINING", "SIZE 52428800", "8BITMIME", "ENHANCEDSTATUSCODES"}
	switch {
	case !overTLS:
		ext = append(ext, "STARTTLS")
	case !s.opts.NoRequireTLS:
		ext = append(ext, "REQUIRETLS")
	}
	for i := range ext {
		sep := "-"
		if i == len(ext)-1 {
			sep = " "
		}
		ext[i] = "250" + sep + ext[i]
	}
	return ext
}

// mail answers MAIL FROM:<path> [params] and opens the transaction.
// REQUIRETLS where it was not offered gets 555, as RFC 5321 §4.1.1.11
// answers any parameter the server did not announce.
func (s *RequireTLSServer) mail(ss *rtSession, line, arg string) string {
	if !ss.hello {
		return "503 5.5.1 Error: send HELO/EHLO first"
	}
	if ss.msg != nil {
		return "503 5.5.1 Error: nested MAIL command"
	}
	path, params, ok := cutPath(arg, "FROM:")
	if !ok {
		return "501 5.5.4 Syntax: MAIL FROM:<address>"
	}
	m := &RequireTLSMessage{TLS: ss.tls != nil, MailLine: line, From: path}
	if ss.tls != nil {
		m.TLSVersion = ss.tls.Version
	}
	for _, p := range strings.Fields(params) {
		k, v, hasV := strings.Cut(p, "=")
		k = strings.ToUpper(k)
		if k == "REQUIRETLS" && (ss.tls == nil || s.opts.NoRequireTLS) {
			return "555 5.5.4 Unsupported option: REQUIRETLS"
		}
		if hasV {
			k += "=" + v
		}
		m.Params = append(m.Params, k)
	}
	ss.msg = m
	return "250 2.1.0 Ok"
}

func (ss *rtSession) rcpt(arg string) string {
	if ss.msg == nil {
		return "503 5.5.1 Error: need MAIL command"
	}
	path, _, ok := cutPath(arg, "TO:")
	if !ok || path == "" {
		return "501 5.5.4 Syntax: RCPT TO:<address>"
	}
	ss.msg.Rcpts = append(ss.msg.Rcpts, path)
	return "250 2.1.5 Ok"
}

// cutPath splits "FROM:<path> params" (prefix "FROM:" or "TO:", any case).
func cutPath(arg, prefix string) (path, params string, ok bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", "", false
	}
	return rest[1:end], rest[end+1:], true
}

// errDataTooLong bounds a message, so a broken client cannot fill memory.
var errDataTooLong = errors.New("message over 64 MiB")

// readDotData reads DATA up to the lone "." line, undoing dot-stuffing
// (RFC 5321 §4.5.2).
func readDotData(r *bufio.Reader) ([]byte, error) {
	var b bytes.Buffer
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if line == ".\r\n" || line == ".\n" {
			return b.Bytes(), nil
		}
		b.WriteString(strings.TrimPrefix(line, "."))
		if b.Len() > 64<<20 {
			return nil, errDataTooLong
		}
	}
}
