package testpeer

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// recTB records Skip/Fatal instead of ending the test, to check the
// require helpers' CI behaviour. Everything else goes to the real test.
type recTB struct {
	testing.TB
	mu      sync.Mutex
	skipped string
	fatal   string
}

func (r *recTB) Helper() {}
func (r *recTB) Skip(args ...any) {
	r.mu.Lock()
	r.skipped = fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recTB) Fatal(args ...any) {
	r.mu.Lock()
	r.fatal = fmt.Sprint(args...)
	r.mu.Unlock()
	runtime.Goexit()
}
func (r *recTB) Fatalf(format string, args ...any) { r.Fatal(fmt.Sprintf(format, args...)) }

// inGoroutine runs f so that runtime.Goexit in a recTB only ends f.
func inGoroutine(f func()) {
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	<-done
}

func TestRequireMissingBinary(t *testing.T) {
	t.Setenv("CI", "")
	r := &recTB{TB: t}
	inGoroutine(func() { RequireBinary(r, "no-such-tool-testpeer") })
	if !strings.Contains(r.skipped, "no-such-tool-testpeer not installed; .ci/run installs it") || r.fatal != "" {
		t.Errorf("outside CI: skipped=%q fatal=%q, want a skip", r.skipped, r.fatal)
	}

	t.Setenv("CI", "true")
	r = &recTB{TB: t}
	inGoroutine(func() { RequireBinary(r, "no-such-tool-testpeer") })
	if !strings.Contains(r.fatal, "not installed") || r.skipped != "" {
		t.Errorf("CI=true: skipped=%q fatal=%q, want a fatal error", r.skipped, r.fatal)
	}

	if os.Geteuid() == 0 {
		r = &recTB{TB: t}
		inGoroutine(func() { RequireRoot(r) })
		if r.fatal != "" || r.skipped != "" {
			t.Errorf("RequireRoot as root: skipped=%q fatal=%q", r.skipped, r.fatal)
		}
	}
}

func TestFreeLoopbackIP(t *testing.T) {
	_, block, _ := net.ParseCIDR("127.64.0.0/10")
	seen := map[string]bool{}
	for range 50 {
		ip := FreeLoopbackIP(t)
		if !block.Contains(ip) || len(ip) != 4 {
			t.Fatalf("%v not a 4-byte address in %v", ip, block)
		}
		if seen[ip.String()] {
			t.Fatalf("%v handed out twice", ip)
		}
		seen[ip.String()] = true
	}
	if os.Geteuid() == 0 {
		ip := FreeLoopbackIP(t)
		l, err := net.Listen("tcp4", net.JoinHostPort(ip.String(), "25"))
		if err != nil {
			t.Fatalf("port 25 on %v not bindable: %v", ip, err)
		}
		l.Close()
	}
}

func TestCA(t *testing.T) {
	ca := NewCA(t)
	if _, err := os.Stat(ca.CertFile()); err != nil {
		t.Fatal(err)
	}
	for _, leaf := range []*Leaf{ca.Issue(t, "mx.a.test", "127.64.0.1"), ca.IssueRSA(t, "mx.a.test")} {
		if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: "mx.a.test", Roots: ca.Pool()}); err != nil {
			t.Errorf("%s leaf: %v", leaf.Cert.PublicKeyAlgorithm, err)
		}
		for _, f := range []string{leaf.CertFile, leaf.KeyFile, leaf.ChainFile} {
			if _, err := os.Stat(f); err != nil {
				t.Error(err)
			}
		}
		// A real handshake with crypto/tls on both sides.
		srv, cli := net.Pipe()
		go func() {
			s := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}})
			s.Handshake()
			io.Copy(io.Discard, s) // until the client's close_notify
			srv.Close()
		}()
		c := tls.Client(cli, &tls.Config{ServerName: "mx.a.test", RootCAs: ca.Pool()})
		if err := c.Handshake(); err != nil {
			t.Errorf("handshake with %s leaf: %v", leaf.Cert.PublicKeyAlgorithm, err)
		}
		c.Close()
	}
	if got := ca.Issue(t, "127.64.0.1").Cert.IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.64.0.1")) {
		t.Errorf("IP SAN = %v", got)
	}
	ss := SelfSigned(t, "self.test")
	pool := x509.NewCertPool()
	pool.AddCert(ss.Cert)
	if _, err := ss.Cert.Verify(x509.VerifyOptions{DNSName: "self.test", Roots: pool}); err != nil {
		t.Errorf("self-signed against itself: %v", err)
	}
	if _, err := ss.Cert.Verify(x509.VerifyOptions{DNSName: "self.test", Roots: ca.Pool()}); err == nil {
		t.Error("self-signed verified against the CA")
	}
	short := ca.IssueOpts(t, LeafOptions{NotAfter: time.Now().Add(24 * time.Hour)}, "soon.test")
	if d := time.Until(short.Cert.NotAfter); d > 25*time.Hour {
		t.Errorf("NotAfter in %v", d)
	}
}

// startTLS does EHLO and, when offered, STARTTLS with cfg, as a relay would.
func startTLS(t *testing.T, addr string, cfg *tls.Config) (offered bool, st tls.ConnectionState, err error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := smtp.NewClient(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.testpeer.test"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		return false, st, nil
	}
	if err := c.StartTLS(cfg); err != nil {
		return true, st, err
	}
	st, _ = c.TLSConnectionState()
	c.Quit()
	return true, st, nil
}

// sslClient runs openssl s_client -starttls smtp and returns its output.
func sslClient(t *testing.T, addr string, args ...string) string {
	t.Helper()
	out, _ := OpenSSL(t, "QUIT\n", append([]string{"s_client", "-starttls", "smtp", "-connect", addr, "-name", "client.testpeer.test"}, args...)...)
	return out
}

func sendSwaks(t *testing.T, p *Postfix, to string, extra ...string) {
	t.Helper()
	args := append([]string{"--server", p.Addr(), "--helo", "client.testpeer.test",
		"--from", "sender@client.testpeer.test", "--to", to, "--header", "Subject: testpeer " + t.Name()}, extra...)
	out, code := Swaks(t, args...)
	if code != 0 {
		t.Fatalf("swaks %v: exit %d\n%s\n--- maillog:\n%s", args, code, out, p.Maillog())
	}
}

// opensslSend submits one message through openssl s_client -starttls smtp,
// for ciphers swaks cannot handle.
func opensslSend(t *testing.T, p *Postfix, to string, args ...string) {
	t.Helper()
	script := strings.Join([]string{"EHLO client.testpeer.test", "MAIL FROM:<sender@client.testpeer.test>",
		"RCPT TO:<" + to + ">", "DATA", "Subject: testpeer " + t.Name(), "", "body", ".", "QUIT", ""}, "\r\n")
	out, code := OpenSSL(t, script, append([]string{"s_client", "-quiet", "-ign_eof", "-nocommands", "-starttls", "smtp",
		"-connect", p.Addr(), "-name", "client.testpeer.test"}, args...)...)
	if code != 0 || !strings.Contains(out, "250 2.0.0 Ok: queued") {
		t.Fatalf("openssl s_client submission: exit %d\n%s\n--- maillog:\n%s", code, out, p.Maillog())
	}
}

func TestPostfixTLSModes(t *testing.T) {
	RequirePostfix(t)
	RequireSwaks(t)
	RequireOpenSSL(t)
	tests := []struct {
		mode TLSMode
		// check inspects the instance with Go's crypto/tls and openssl.
		check func(t *testing.T, p *Postfix)
		// swaks TLS arguments and the expected Received: fragment.
		swaks       []string
		opensslSend []string
		received    []string
	}{
		{
			mode: TLSNone,
			check: func(t *testing.T, p *Postfix) {
				offered, _, _ := startTLS(t, p.Addr(), &tls.Config{})
				if offered {
					t.Error("TLSNone offers STARTTLS")
				}
				if out := sslClient(t, p.Addr()); !strings.Contains(out, "STARTTLS not supported") && !strings.Contains(out, "Didn't find STARTTLS") {
					t.Errorf("openssl s_client against TLSNone:\n%s", out)
				}
			},
			received: []string{"with ESMTP id"},
		},
		{
			mode: TLSModern,
			check: func(t *testing.T, p *Postfix) {
				offered, st, err := startTLS(t, p.Addr(), &tls.Config{ServerName: p.Hostname, RootCAs: p.CA.Pool()})
				if !offered || err != nil || st.Version < tls.VersionTLS12 {
					t.Errorf("offered=%v err=%v version=%x, want verified TLS >= 1.2", offered, err, st.Version)
				}
				// The RSA chain is served to clients that only do RSA.
				offered, st, err = startTLS(t, p.Addr(), &tls.Config{ServerName: p.Hostname, RootCAs: p.CA.Pool(),
					MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})
				if err != nil || st.PeerCertificates[0].PublicKeyAlgorithm != x509.RSA {
					t.Errorf("RSA-only client: offered=%v err=%v", offered, err)
				}
				_, _, err = startTLS(t, p.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
				if err == nil {
					t.Error("TLSModern accepted TLS 1.1")
				}
				if out := sslClient(t, p.Addr()); !strings.Contains(out, "New, TLSv1.3") {
					t.Errorf("openssl s_client: no TLSv1.3:\n%s", out)
				}
			},
			swaks:    []string{"--tls"},
			received: []string{"using TLSv1.3 with cipher", "bits)", "with ESMTPS id"},
		},
		{
			mode: TLSSelfSigned,
			check: func(t *testing.T, p *Postfix) {
				if p.CA != nil {
					t.Error("self-signed instance has a CA")
				}
				_, _, err := startTLS(t, p.Addr(), &tls.Config{ServerName: p.Hostname})
				var uerr x509.UnknownAuthorityError
				var verr *tls.CertificateVerificationError
				if !errors.As(err, &uerr) && !errors.As(err, &verr) {
					t.Errorf("verifying a self-signed cert against system roots: err=%v, want unknown authority", err)
				}
				pool := x509.NewCertPool()
				for _, c := range p.Certs {
					pool.AddCert(c.Cert)
				}
				if _, st, err := startTLS(t, p.Addr(), &tls.Config{ServerName: p.Hostname, RootCAs: pool}); err != nil || st.Version != tls.VersionTLS13 {
					t.Errorf("pinned self-signed: err=%v version=%x", err, st.Version)
				}
			},
			swaks:    []string{"--tls"},
			received: []string{"using TLSv1.3 with cipher"},
		},
		{
			mode: TLS10Only,
			check: func(t *testing.T, p *Postfix) {
				offered, st, err := startTLS(t, p.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10})
				if !offered || err != nil || st.Version != tls.VersionTLS10 {
					t.Errorf("offered=%v err=%v version=%x, want TLS 1.0", offered, err, st.Version)
				}
				if _, _, err := startTLS(t, p.Addr(), &tls.Config{InsecureSkipVerify: true}); err == nil {
					t.Error("TLS10Only accepted Go's default (TLS >= 1.2)")
				}
				out := sslClient(t, p.Addr(), "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
				if !strings.Contains(out, "Protocol  : TLSv1\n") {
					t.Errorf("openssl s_client -tls1: no TLSv1:\n%s", out)
				}
			},
			swaks:    []string{"--tls", "--tls-protocol", "tlsv1", "--tls-cipher", "DEFAULT:@SECLEVEL=0"},
			received: []string{"using TLSv1 with cipher", "bits)"},
		},
		{
			mode: TLSNullOnly,
			check: func(t *testing.T, p *Postfix) {
				offered, _, err := startTLS(t, p.Addr(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10})
				if !offered || err == nil {
					t.Errorf("Go (no NULL suites): offered=%v err=%v, want a failed handshake", offered, err)
				}
				out := sslClient(t, p.Addr(), "-tls1_2", "-cipher", "eNULL:@SECLEVEL=0")
				if !strings.Contains(out, "Cipher is ") || !strings.Contains(out, "NULL") {
					t.Errorf("openssl s_client: no NULL cipher:\n%s", out)
				}
				// An RSA-only NULL suite picks the RSA chain.
				out = sslClient(t, p.Addr(), "-tls1_2", "-cipher", "NULL-SHA256:@SECLEVEL=0")
				if !strings.Contains(out, "Cipher is NULL-SHA256") {
					t.Errorf("openssl s_client NULL-SHA256:\n%s", out)
				}
			},
			// swaks gives up on 0 cipher bits, so openssl s_client sends it.
			opensslSend: []string{"-tls1_2", "-cipher", "eNULL:@SECLEVEL=0"},
			received:    []string{"using TLSv1.2 with cipher", "NULL", "(0/0 bits)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			p := StartPostfix(t, PostfixOptions{TLS: tc.mode, Domains: []string{"a.test", "B.Test"}})
			tc.check(t, p)
			if tc.opensslSend != nil {
				opensslSend(t, p, "user@a.test", tc.opensslSend...)
			} else {
				sendSwaks(t, p, "user@a.test", tc.swaks...)
			}
			msgs := p.WaitMessages(t, "a.test", 1, 10*time.Second)
			rcv := msgs[0].Received()
			if len(rcv) == 0 {
				t.Fatalf("no Received: header:\n%s", msgs[0].Raw)
			}
			for _, want := range tc.received {
				if !strings.Contains(rcv[0], want) {
					t.Errorf("Received: %q lacks %q", rcv[0], want)
				}
			}
			if tc.mode == TLSNone && strings.Contains(rcv[0], "using") {
				t.Errorf("clear-text Received: mentions TLS: %q", rcv[0])
			}
			if got := msgs[0].Header.Get("Subject"); got != "testpeer "+t.Name() {
				t.Errorf("Subject = %q", got)
			}
			if len(p.Messages("b.test")) != 0 {
				t.Error("message landed in the wrong maildir")
			}
			// Other domains are refused, not relayed.
			out, code := Swaks(t, "--server", p.Addr(), "--helo", "c.test", "--from", "s@c.test", "--to", "x@elsewhere.test")
			if code == 0 || !strings.Contains(out, "Relay access denied") {
				t.Errorf("relaying to elsewhere.test: exit %d\n%s", code, out)
			}
		})
	}
}

// captureSMTP is a minimal SMTP server that records each message's DATA.
type captureSMTP struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	got  chan struct{}
}

func newCaptureSMTP(t *testing.T) *captureSMTP {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &captureSMTP{ln: ln, got: make(chan struct{}, 100)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go c.serve(conn)
		}
	}()
	return c
}

func (c *captureSMTP) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	fmt.Fprint(conn, "220 capture.testpeer.test ESMTP\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"):
			fmt.Fprint(conn, "250-capture.testpeer.test\r\n250 8BITMIME\r\n")
		case strings.HasPrefix(cmd, "DATA"):
			fmt.Fprint(conn, "354 go ahead\r\n")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, data.String())
			c.mu.Unlock()
			c.got <- struct{}{}
			fmt.Fprint(conn, "250 2.0.0 captured\r\n")
		case strings.HasPrefix(cmd, "QUIT"):
			fmt.Fprint(conn, "221 bye\r\n")
			return
		default:
			fmt.Fprint(conn, "250 ok\r\n")
		}
	}
}

func TestPostfixRelayHost(t *testing.T) {
	RequireSwaks(t)
	capt := newCaptureSMTP(t)
	p := StartPostfix(t, PostfixOptions{RelayHost: capt.ln.Addr().String(), Domains: []string{"company.test"}})

	sendSwaks(t, p, "partner@remote.test")
	select {
	case <-capt.got:
	case <-time.After(15 * time.Second):
		t.Fatalf("relayhost got nothing\n--- maillog:\n%s", p.Maillog())
	}
	capt.mu.Lock()
	msg := capt.msgs[0]
	capt.mu.Unlock()
	if !strings.Contains(msg, "Subject: testpeer "+t.Name()) || !strings.Contains(msg, "by "+p.Hostname) {
		t.Errorf("relayed message:\n%s", msg)
	}
	// The company's own domain is still delivered locally (where NDRs land).
	sendSwaks(t, p, "sender@company.test")
	p.WaitMessages(t, "company.test", 1, 10*time.Second)
}

func TestPostfixDiscard(t *testing.T) {
	RequireSwaks(t)
	p := StartPostfix(t, PostfixOptions{Discard: true, Domains: []string{"sink.test"}})
	sendSwaks(t, p, "x@sink.test")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Maillog(), "discard: header Received:") {
		if time.Now().After(deadline) {
			t.Fatalf("no discard in maillog:\n%s", p.Maillog())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(p.Messages("sink.test")); n != 0 {
		t.Errorf("%d messages stored by a discarding sink", n)
	}
}

func TestPostfixStartFailureExplains(t *testing.T) {
	RequirePostfix(t)
	r := &recTB{TB: t}
	inGoroutine(func() {
		StartPostfix(r, PostfixOptions{Master: []string{"bogus-line-with-too-few-fields"}})
	})
	if !strings.Contains(r.fatal, "failed to start") || !strings.Contains(r.fatal, "postfix check -c") {
		t.Errorf("start failure message:\n%s", r.fatal)
	}
}

func dnsQuery(t *testing.T, d *DNS, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	return dnsQueryTimeout(t, d, proto, name, qtype, 2*time.Second)
}

func dnsQueryTimeout(t *testing.T, d *DNS, proto, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: proto, Timeout: timeout}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, true)
	r, _, err := c.Exchange(m, d.Addr())
	return r, err
}

func TestDNS(t *testing.T) {
	d := StartDNS(t)
	d.AddMX("a.test", 20, "mx2.a.test")
	d.AddMX("A.Test.", 10, "mx1.a.test")
	d.AddA("mx1.a.test", "127.64.0.1")
	d.AddAAAA("mx1.a.test", "::1")
	long := strings.Repeat("x", 300)
	d.AddTXT("_mta-sts.a.test", "v=STSv1; id=1")
	d.AddTXT("_smtp._tls.a.test", long)
	d.AddCNAME("alias.a.test", "mx1.a.test")
	d.AddTLSA("_25._tcp.mx1.a.test", 3, 1, 1, "0123456789abcdef")
	d.NullMX("null.test")
	d.ServFail("broken.test")
	d.Drop("slow.test")
	d.AddA("deep.sub.b.test", "127.64.0.2")
	d.AddCNAME("tobroken.test", "broken.test")
	d.AddRR("zone.test. 60 IN MX 5 mx.zone.test.")
	for i := range 40 {
		d.AddA("big.test", fmt.Sprintf("127.65.0.%d", i+1))
	}
	d.Truncate("tc.test")
	d.AddA("tc.test", "127.64.0.3")

	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			q := func(name string, qtype uint16, rcode int) *dns.Msg {
				t.Helper()
				r, err := dnsQuery(t, d, proto, name, qtype)
				if err != nil {
					t.Fatalf("%s %s: %v", name, dns.TypeToString[qtype], err)
				}
				if r.Rcode != rcode {
					t.Fatalf("%s %s: rcode %s, want %s", name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode])
				}
				return r
			}
			r := q("a.test", dns.TypeMX, dns.RcodeSuccess)
			if len(r.Answer) != 2 || r.Answer[1].(*dns.MX).Preference != 10 || r.Answer[1].(*dns.MX).Mx != "mx1.a.test." {
				t.Errorf("MX: %v", r.Answer)
			}
			if r.AuthenticatedData {
				t.Error("AD set before SetAD")
			}
			if r := q("MX1.a.test", dns.TypeA, dns.RcodeSuccess); len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "127.64.0.1" {
				t.Errorf("A: %v", r.Answer)
			}
			if r := q("mx1.a.test", dns.TypeAAAA, dns.RcodeSuccess); len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "::1" {
				t.Errorf("AAAA: %v", r.Answer)
			}
			if r := q("_mta-sts.a.test", dns.TypeTXT, dns.RcodeSuccess); len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "v=STSv1; id=1" {
				t.Errorf("TXT: %v", r.Answer)
			}
			if r := q("_smtp._tls.a.test", dns.TypeTXT, dns.RcodeSuccess); len(r.Answer) != 1 || strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != long {
				t.Errorf("long TXT: %v", r.Answer)
			}
			r = q("alias.a.test", dns.TypeA, dns.RcodeSuccess)
			if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || r.Answer[1].(*dns.A).A.String() != "127.64.0.1" {
				t.Errorf("CNAME chase: %v", r.Answer)
			}
			if r := q("alias.a.test", dns.TypeCNAME, dns.RcodeSuccess); len(r.Answer) != 1 {
				t.Errorf("CNAME: %v", r.Answer)
			}
			r = q("_25._tcp.mx1.a.test", dns.TypeTLSA, dns.RcodeSuccess)
			if len(r.Answer) != 1 {
				t.Fatalf("TLSA: %v", r.Answer)
			}
			if tl := r.Answer[0].(*dns.TLSA); tl.Usage != 3 || tl.Selector != 1 || tl.MatchingType != 1 || tl.Certificate != "0123456789abcdef" {
				t.Errorf("TLSA: %v", tl)
			}
			if r := q("null.test", dns.TypeMX, dns.RcodeSuccess); len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "." || r.Answer[0].(*dns.MX).Preference != 0 {
				t.Errorf("null MX: %v", r.Answer)
			}
			q("broken.test", dns.TypeMX, dns.RcodeServerFailure)
			q("tobroken.test", dns.TypeA, dns.RcodeServerFailure)
			q("unknown.test", dns.TypeMX, dns.RcodeNameError)
			if r := q("mx1.a.test", dns.TypeMX, dns.RcodeSuccess); len(r.Answer) != 0 {
				t.Errorf("NODATA has answers: %v", r.Answer)
			}
			q("sub.b.test", dns.TypeA, dns.RcodeSuccess) // empty non-terminal: NODATA
			q("zone.test", dns.TypeMX, dns.RcodeSuccess)
			if r := q("tc.test", dns.TypeA, dns.RcodeSuccess); len(r.Answer) != 1 {
				// miekg's client does not retry over TCP itself.
				if proto == "tcp" || !r.Truncated {
					t.Errorf("tc.test over %s: %v truncated=%v", proto, r.Answer, r.Truncated)
				}
			} else if proto == "udp" {
				t.Error("tc.test over UDP not truncated")
			}
			r = q("big.test", dns.TypeA, dns.RcodeSuccess)
			if proto == "tcp" && len(r.Answer) != 40 {
				t.Errorf("big.test over TCP: %d answers", len(r.Answer))
			}

			start := time.Now()
			if _, err := dnsQueryTimeout(t, d, proto, "slow.test", dns.TypeMX, 300*time.Millisecond); err == nil {
				t.Error("dropped name answered")
			} else if time.Since(start) < 250*time.Millisecond {
				t.Errorf("dropped name failed fast (%v), want a timeout: %v", time.Since(start), err)
			}
		})
	}

	d.SetAD(true)
	r, err := dnsQuery(t, d, "udp", "_25._tcp.mx1.a.test", dns.TypeTLSA)
	if err != nil || !r.AuthenticatedData {
		t.Errorf("AD not set after SetAD(true): %v %v", r, err)
	}
	d.Remove("a.test")
	if r, _ := dnsQuery(t, d, "udp", "a.test", dns.TypeMX); r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("after Remove (a.test still has subdomains, so NODATA): %v", r)
	}
	if len(d.Queries()) == 0 {
		t.Error("no queries recorded")
	}
}

// TestDNSConcurrent mutates the zone while querying (run with -race).
func TestDNSConcurrent(t *testing.T) {
	d := StartDNS(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 20 {
				name := fmt.Sprintf("h%d-%d.test", i, j)
				d.AddA(name, "127.64.0.9")
				r, err := dnsQuery(t, d, "udp", name, dns.TypeA)
				if err != nil || len(r.Answer) != 1 {
					t.Errorf("%s: %v %v", name, r, err)
				}
			}
		})
	}
	wg.Wait()
}

func TestOpenSSLServer(t *testing.T) {
	s := StartOpenSSLServer(t, "-cipher", "eNULL:@SECLEVEL=0", "-tls1_2")
	out, _ := OpenSSL(t, "", "s_client", "-connect", s.Addr(), "-cipher", "eNULL:@SECLEVEL=0", "-tls1_2")
	if !strings.Contains(out, "Cipher is ") || !strings.Contains(out, "NULL") {
		t.Errorf("s_client against NULL s_server:\n%s\n--- server:\n%s", out, s.Output())
	}
	// Go has no NULL suites, so its handshake must fail.
	c, err := tls.Dial("tcp4", s.Addr(), &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Error("Go negotiated with a NULL-only server")
	}

	m := StartOpenSSLServer(t)
	c, err = tls.Dial("tcp4", m.Addr(), &tls.Config{ServerName: "s-server.testpeer.test", RootCAs: m.CA.Pool()})
	if err != nil {
		t.Fatalf("Go against default s_server: %v\n%s", err, m.Output())
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("version %x", v)
	}
	c.Close()
}
