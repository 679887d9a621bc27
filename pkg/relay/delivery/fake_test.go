package delivery

import (
	"bufio"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// fakeMX is a scripted SMTP server for the cases a real peer cannot be
// made to produce on demand (a 454 to STARTTLS, injected plaintext, a
// broken handshake), and for fast unit tests of the queue logic.
type fakeMX struct {
	t    testing.TB
	ln   net.Listener
	Addr string

	// TLS, when set, makes the server offer STARTTLS.
	TLS *tls.Config
	// DSN makes the server offer DSN (RFC 3461).
	DSN bool
	// StartTLSReply replaces "220 2.0.0 Ready to start TLS".
	StartTLSReply string
	// Inject is sent right after the 220 to STARTTLS, before the handshake.
	Inject string
	// BreakHandshake closes the connection after the 220 to STARTTLS.
	BreakHandshake bool
	// Rcpt answers RCPT TO for an address; nil accepts everyone.
	Rcpt func(addr string) string
	// MailReply and DataReply replace the 250 replies to MAIL and ".".
	MailReply, DataReply string
	// HangUp, when set, is sent (if not empty) at the first command after
	// an accepted message, and the connection closed: an idle timeout or
	// a restart while the relay kept the connection cached.
	HangUp *string

	mu        sync.Mutex
	mails     int           // MAIL commands seen
	rsets     int           // RSET commands seen
	conns     int           // connections accepted
	msgs      []fakeMessage // messages accepted after DATA
	rcpts     []string      // RCPT command lines as received
	mailLines []string      // MAIL command lines as received
}

type fakeMessage struct {
	From  string
	Rcpts []string
	Data  string
	TLS   *tls.ConnectionState
}

// startFake listens on addr ("127.0.0.1:0" for any port).
func startFake(t testing.TB, addr string, setup func(*fakeMX)) *fakeMX {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeMX{t: t, ln: ln, Addr: ln.Addr().String()}
	if setup != nil {
		setup(f)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			wg.Go(func() { f.serve(c) })
		}
	})
	return f
}

func (f *fakeMX) Mails() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mails
}

func (f *fakeMX) Rsets() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rsets
}

func (f *fakeMX) Conns() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// RcptLines are the RCPT commands received, as sent.
func (f *fakeMX) RcptLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.rcpts...)
}

// MailLines are the MAIL commands received, as sent.
func (f *fakeMX) MailLines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.mailLines...)
}

func (f *fakeMX) Messages() []fakeMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeMessage(nil), f.msgs...)
}

func (f *fakeMX) serve(c net.Conn) {
	defer func() { c.Close() }()
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	say := func(s string) {
		w.WriteString(s + "\r\n")
		w.Flush()
	}
	say("220 fake.test ESMTP")
	var cur fakeMessage
	var state *tls.ConnectionState
	accepted := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if accepted && f.HangUp != nil {
			if *f.HangUp != "" {
				say(*f.HangUp)
			}
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(line)
		switch {
		case strings.HasPrefix(verb, "EHLO"):
			ext := []string{"250-fake.test", "250-PIPELINING", "250-8BITMIME", "250-SIZE 10000000"}
			if f.DSN {
				ext = append(ext, "250-DSN")
			}
			if f.TLS != nil && state == nil {
				ext = append(ext, "250-STARTTLS")
			}
			ext = append(ext, "250 ENHANCEDSTATUSCODES")
			say(strings.Join(ext, "\r\n"))
		case verb == "STARTTLS" && f.TLS != nil && state == nil:
			if f.StartTLSReply != "" {
				say(f.StartTLSReply)
				continue
			}
			w.WriteString("220 2.0.0 Ready to start TLS\r\n" + f.Inject)
			w.Flush()
			if f.BreakHandshake {
				c.Write([]byte("this is not TLS\r\n"))
				return
			}
			tc := tls.Server(c, f.TLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			cs := tc.ConnectionState()
			state = &cs
			c = tc
			r = bufio.NewReader(tc)
			w = bufio.NewWriter(tc)
		case strings.HasPrefix(verb, "MAIL FROM:"):
			f.mu.Lock()
			f.mails++
			f.mailLines = append(f.mailLines, line)
			f.mu.Unlock()
			cur = fakeMessage{From: addrArg(line), TLS: state}
			if f.MailReply != "" {
				say(f.MailReply)
				continue
			}
			say("250 2.1.0 Ok")
		case strings.HasPrefix(verb, "RCPT TO:"):
			f.mu.Lock()
			f.rcpts = append(f.rcpts, line)
			f.mu.Unlock()
			a := addrArg(line)
			rep := "250 2.1.5 Ok"
			if f.Rcpt != nil {
				rep = f.Rcpt(a)
			}
			if strings.HasPrefix(rep, "2") {
				cur.Rcpts = append(cur.Rcpts, a)
			}
			say(rep)
		case verb == "DATA":
			if len(cur.Rcpts) == 0 {
				say("554 5.5.1 no valid recipients")
				continue
			}
			say("354 End data with <CR><LF>.<CR><LF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			cur.Data = data.String()
			if f.DataReply != "" {
				say(f.DataReply)
				continue
			}
			f.mu.Lock()
			f.msgs = append(f.msgs, cur)
			f.mu.Unlock()
			accepted = true
			say("250 2.0.0 Ok: queued as FAKE")
		case verb == "RSET":
			f.mu.Lock()
			f.rsets++
			f.mu.Unlock()
			cur = fakeMessage{TLS: state}
			say("250 2.0.0 Ok")
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("502 5.5.2 Error: command not recognized")
		}
	}
}

func addrArg(line string) string {
	i := strings.IndexByte(line, '<')
	j := strings.IndexByte(line, '>')
	if i < 0 || j < i {
		return ""
	}
	return line[i+1 : j]
}

// sessionGauge counts sessions inside RCPT at once and holds each there
// until gate is closed, so a test can see how many the runner allows.
type sessionGauge struct {
	cur, peak atomic.Int32
	gate      chan struct{}
}

func newSessionGauge() *sessionGauge { return &sessionGauge{gate: make(chan struct{})} }

func (g *sessionGauge) rcpt(string) string {
	n := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	<-g.gate
	g.cur.Add(-1)
	return "250 2.1.5 Ok"
}
