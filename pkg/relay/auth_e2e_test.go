package relay_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
)

// SPEC §4: relaying only for clients in the allowed networks or
// authenticated, AUTH only after TLS. Here the allowed network is
// 10.0.0.0/8 and every client comes from 127.0.0.1, so only AUTH can
// open the relay; the message is judged where the real Postfix stored it.

// htpasswdLine is what `htpasswd -nbB user password` prints: the "2y"
// bcrypt variant at htpasswd's default cost 5.
func htpasswdLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), 5)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":$2y$" + strings.TrimPrefix(string(h), "$2a$") + "\n"
}

func TestRelayAuthEndToEnd(t *testing.T) {
	testpeer.RequirePostfix(t)
	testpeer.RequireSwaks(t)
	w := &world{dns: testpeer.StartDNS(t), ca: testpeer.NewCA(t)}
	mx := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: testpeer.TLSNone, Domains: []string{"auth.test"}})
	leaf := w.ca.Issue(t, "relay.corp.test")
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# relay users\n\n"+htpasswdLine(t, "u", "p")+htpasswdLine(t, "app@corp.test", "other")), 0o600); err != nil {
		t.Fatal(err)
	}
	// auth.test is not in the policy: opportunistic delivery.
	l := startRelay(t, w, "listed.test\n", func(c *relay.Config) {
		c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		c.TLSCert, c.TLSKey = leaf.CertFile, leaf.KeyFile
		c.AuthFile = users
		c.Routes["auth.test"] = mx.Addr()
	})
	addr := l.relay.Addr().String()
	swaks := func(subject string, args ...string) (string, int) {
		t.Helper()
		return testpeer.Swaks(t, append([]string{"--server", addr, "--helo", "branch.corp.test",
			"--from", "alice@corp.test", "--header", "Subject: " + subject, "--body", "auth e2e\n"}, args...)...)
	}
	delivered := 0

	for _, mech := range []string{"PLAIN", "LOGIN"} {
		t.Run("AUTH "+mech+" over TLS from outside --allow: delivered", func(t *testing.T) {
			rcpt := "bob-" + strings.ToLower(mech) + "@auth.test"
			out, code := swaks("auth "+mech, "--to", rcpt, "--tls", "--auth", mech, "--auth-user", "u", "--auth-password", "p")
			if code != 0 || !strings.Contains(out, "<~  235 ") || !strings.Contains(out, "250 2.0.0 Ok: queued as") {
				t.Fatalf("swaks exit %d:\n%s", code, out)
			}
			delivered++
			msgs := mx.WaitMessages(t, "auth.test", delivered, 30*time.Second)
			var got *testpeer.Message
			for i := range msgs {
				if strings.Contains(string(msgs[i].Raw), "Subject: auth "+mech) {
					got = &msgs[i]
				}
			}
			if got == nil {
				t.Fatalf("no message with Subject: auth %s in the maildir (%d messages)", mech, len(msgs))
			}
			// The relay's own Received: line says the client authenticated
			// over TLS (RFC 3848 ESMTPSA).
			recv := strings.Join(got.Received(), "\n")
			if !strings.Contains(recv, "by relay.corp.test (smgctl) with ESMTPSA") || !strings.Contains(recv, "(using TLSv1.") {
				t.Errorf("Received: %s", recv)
			}
			if rec := l.record(t, rcpt, audit.Delivered); rec.MX == "" {
				t.Errorf("audit record: %+v", rec)
			}
		})
	}

	for _, tc := range []struct{ name, user, pass string }{
		{"wrong password", "u", "wrong"},
		{"unknown user", "mallory", "p"},
		{"another user's password", "u", "other"},
	} {
		t.Run(tc.name+": 535", func(t *testing.T) {
			out, code := swaks("refused", "--to", "eve@auth.test", "--tls", "--auth", "PLAIN", "--auth-user", tc.user, "--auth-password", tc.pass)
			if code == 0 || !strings.Contains(out, "535 5.7.8") || strings.Contains(out, "queued as") {
				t.Fatalf("swaks exit %d:\n%s", code, out)
			}
		})
	}

	t.Run("TLS without AUTH: RCPT 554 5.7.1", func(t *testing.T) {
		out, code := swaks("no auth", "--to", "eve@auth.test", "--tls")
		if code == 0 || !strings.Contains(out, "554 5.7.1") || strings.Contains(out, "queued as") {
			t.Fatalf("swaks exit %d:\n%s", code, out)
		}
	})

	t.Run("no TLS: AUTH not offered, refused, and no relaying", func(t *testing.T) {
		c := dialSMTP(t, addr)
		ehlo := c.cmd(t, 250, "EHLO branch.corp.test")
		if strings.Contains(ehlo, "AUTH") || !strings.Contains(ehlo, "STARTTLS") {
			t.Errorf("EHLO in clear: %q", ehlo)
		}
		plain := base64.StdEncoding.EncodeToString([]byte("\x00u\x00p"))
		c.cmd(t, 523, "AUTH PLAIN "+plain) // 523 5.7.10 TLS is required
		c.cmd(t, 250, "MAIL FROM:<alice@corp.test>")
		if msg := c.cmd(t, 554, "RCPT TO:<eve@auth.test>"); !strings.HasPrefix(msg, "5.7.1") {
			t.Errorf("RCPT in clear: %q", msg)
		}
		c.cmd(t, 250, "RSET")
		c.cmd(t, 220, "STARTTLS")
		c.startTLS(t, w.ca, "relay.corp.test")
		if ehlo := c.cmd(t, 250, "EHLO branch.corp.test"); !strings.Contains(ehlo, "AUTH PLAIN LOGIN") {
			t.Errorf("EHLO after STARTTLS: %q", ehlo)
		}
		c.cmd(t, 235, "AUTH PLAIN "+plain)
		c.cmd(t, 221, "QUIT")
	})

	t.Run("Reload (SIGHUP) re-reads the auth file; a broken one is refused", func(t *testing.T) {
		if err := os.WriteFile(users, []byte(htpasswdLine(t, "u", "p2")), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := l.relay.Reload(); err != nil {
			t.Fatal(err)
		}
		if out, code := swaks("old password", "--to", "eve@auth.test", "--tls", "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p"); code == 0 || !strings.Contains(out, "535 5.7.8") {
			t.Errorf("old password after reload: exit %d:\n%s", code, out)
		}
		if out, code := swaks("new password", "--to", "carol@auth.test", "--tls", "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p2"); code != 0 {
			t.Errorf("new password after reload: exit %d:\n%s", code, out)
		}
		delivered++
		mx.WaitMessages(t, "auth.test", delivered, 30*time.Second)

		if err := os.WriteFile(users, []byte(htpasswdLine(t, "u", "p3")+"broken line\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := l.relay.Reload(); err == nil || !strings.Contains(err.Error(), users+":2: ") {
			t.Errorf("Reload of a broken auth file: %v", err)
		}
		if out, code := swaks("kept", "--to", "eve@auth.test", "--tls", "--auth", "PLAIN", "--auth-user", "u", "--auth-password", "p2", "--quit-after", "AUTH"); code != 0 {
			t.Errorf("users in force lost after a broken reload: exit %d:\n%s", code, out)
		}
	})

	// Only what was authenticated reached the mailbox.
	for _, m := range mx.Messages("auth.test") {
		if s := string(m.Raw); strings.Contains(s, "Subject: refused") || strings.Contains(s, "Subject: no auth") || strings.Contains(s, "Subject: old password") {
			t.Errorf("a refused message was delivered:\n%s", s)
		}
	}
}

// TestRelayAuthStartupErrors: an auth file that cannot work stops the
// relay before it listens, naming the problem.
func TestRelayAuthStartupErrors(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "relay.corp.test")
	dir := t.TempDir()
	good := filepath.Join(dir, "users")
	os.WriteFile(good, []byte(htpasswdLine(t, "u", "p")), 0o600)
	bad := filepath.Join(dir, "bad-users")
	os.WriteFile(bad, []byte("# users\n"+htpasswdLine(t, "u", "p")+"v:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"), 0o600)

	for _, tc := range []struct {
		name   string
		tweak  func(*relay.Config)
		want   string
		prefix bool
	}{
		{"auth without a certificate", func(c *relay.Config) { c.AuthFile = good },
			"auth-file needs tls-cert and tls-key: AUTH is offered only over TLS", false},
		{"malformed line", func(c *relay.Config) { c.AuthFile, c.TLSCert, c.TLSKey = bad, leaf.CertFile, leaf.KeyFile },
			bad + `:3: user "v": not a bcrypt hash`, true},
		{"missing file", func(c *relay.Config) {
			c.AuthFile, c.TLSCert, c.TLSKey = filepath.Join(dir, "none"), leaf.CertFile, leaf.KeyFile
		}, "auth-file: open " + filepath.Join(dir, "none"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub := t.TempDir()
			cfg := relay.DefaultConfig()
			cfg.Listen = "127.0.0.1:0"
			cfg.Hostname = "relay.corp.test"
			cfg.Spool = filepath.Join(sub, "spool")
			cfg.AuditLog = filepath.Join(sub, "audit.log")
			cfg.Policy = filepath.Join(sub, "policy.conf")
			cfg.Resolver = "127.0.0.1:53"
			os.WriteFile(cfg.Policy, nil, 0o644)
			tc.tweak(&cfg)
			r, err := relay.New(cfg, nil)
			if err == nil {
				t.Fatalf("relay started on %v", r.Addr())
			}
			if tc.prefix && !strings.HasPrefix(err.Error(), tc.want) || !tc.prefix && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
		})
	}
	// With a certificate and a good file it starts.
	cfg := relay.DefaultConfig()
	sub := t.TempDir()
	cfg.Listen, cfg.Hostname, cfg.Resolver = "127.0.0.1:0", "relay.corp.test", "127.0.0.1:53"
	cfg.Spool, cfg.AuditLog, cfg.Policy = filepath.Join(sub, "spool"), filepath.Join(sub, "audit.log"), filepath.Join(sub, "policy.conf")
	os.WriteFile(cfg.Policy, nil, 0o644)
	cfg.AuthFile, cfg.TLSCert, cfg.TLSKey = good, leaf.CertFile, leaf.KeyFile
	r, err := relay.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // New opened everything; Run with a done context closes it
	if err := r.Run(ctx); err != nil {
		t.Error(err)
	}
}

// smtpConn is a hand-driven SMTP client for what swaks will not do
// (AUTH on a clear connection).
type smtpConn struct {
	raw net.Conn
	*textproto.Conn
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := &smtpConn{raw: raw, Conn: textproto.NewConn(raw)}
	t.Cleanup(func() { c.Close() })
	if _, _, err := c.ReadResponse(220); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return c
}

// cmd sends line and wants code; it returns the reply text.
func (c *smtpConn) cmd(t *testing.T, code int, line string) string {
	t.Helper()
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Fatalf("%s: %v", strings.Fields(line)[0], err)
	}
	return msg
}

func (c *smtpConn) startTLS(t *testing.T, ca *testpeer.CA, name string) {
	t.Helper()
	tc := tls.Client(c.raw, &tls.Config{RootCAs: ca.Pool(), ServerName: name})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.raw = tc
	c.Conn = textproto.NewConn(tc)
}
