package smtpclient

import (
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/policy"
)

// TestRealPostfix runs the probe's session against real Postfix smtpd
// instances, one per TLS variant, and a full delivery into a maildir.
func TestRealPostfix(t *testing.T) {
	testpeer.RequirePostfix(t)
	tests := []struct {
		mode       testpeer.TLSMode
		tls        bool
		version    uint16 // 0: any of TLS 1.2/1.3
		minBits    int
		verified   bool
		failureHas string
		diagnostic string // against the default 112-bit requirement
	}{
		{mode: testpeer.TLSModern, tls: true, minBits: 128, verified: true},
		{mode: testpeer.TLSNone, failureHas: "STARTTLS not offered", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
		{mode: testpeer.TLSSelfSigned, tls: true, minBits: 128},
		{mode: testpeer.TLS10Only, tls: true, version: tls.VersionTLS10, minBits: 128, verified: true},
		// Go cannot negotiate NULL suites: the handshake fails, which is
		// no TLS, 0 bits.
		{mode: testpeer.TLSNullOnly, failureHas: "handshake", diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: tc.mode, Domains: []string{"rcpt.test"}})
			opts := Options{HeloName: "probe.test", ServerName: pf.Hostname, Timeouts: UniformTimeouts(10 * time.Second)}
			if pf.CA != nil {
				opts.RootCAs = pf.CA.Pool()
			}
			ctx := context.Background()
			s, err := Dial(ctx, pf.Addr(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Hello(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := s.StartTLS(ctx)
			if tc.tls != (err == nil && out.TLS) {
				t.Fatalf("outcome %+v err %v", out, err)
			}
			if tc.version != 0 && out.Version != tc.version || tc.version == 0 && tc.tls && out.Version < tls.VersionTLS12 {
				t.Fatalf("version %s", policy.VersionName(out.Version))
			}
			if out.Bits() < tc.minBits || !tc.tls && out.Bits() != 0 || out.Verified != tc.verified {
				t.Fatalf("outcome %+v bits %d", out, out.Bits())
			}
			if !strings.Contains(out.Failure, tc.failureHas) {
				t.Fatalf("failure %q, want %q", out.Failure, tc.failureHas)
			}
			if v := policy.Evaluate(policy.DefaultRequirement(), out); v.Diagnostic != tc.diagnostic {
				t.Fatalf("diagnostic %q, want %q", v.Diagnostic, tc.diagnostic)
			}
			t.Logf("%s: %s %s %d bits verified=%v %s", tc.mode, policy.VersionName(out.Version), policy.SuiteName(out.CipherSuite), out.Bits(), out.Verified, out.VerifyError)
			if s.Closed() {
				return // the NULL-only handshake failure ends the session
			}
			// A whole delivery, pipelined, lands in the maildir.
			if !s.Supports("PIPELINING") {
				t.Fatalf("Postfix without PIPELINING? %v", s.Extensions())
			}
			_, rcpts, err := s.Envelope(ctx, "sender@probe.test", MailOptions{Size: 100}, []string{"a@rcpt.test", "b@rcpt.test"})
			if err != nil || len(rcpts) != 2 || rcpts[0].Code != 250 || rcpts[1].Code != 250 {
				t.Fatalf("envelope %v %v", rcpts, err)
			}
			if _, err := s.Data(ctx, strings.NewReader("Subject: real peer\n\n.dot line\nend\n")); err != nil {
				t.Fatal(err)
			}
			if err := s.Quit(ctx); err != nil {
				t.Fatal(err)
			}
			msgs := pf.WaitMessages(t, "rcpt.test", 2, 15*time.Second)
			if !strings.HasPrefix(string(msgs[0].Body), ".dot line\nend") {
				t.Fatalf("body %q", msgs[0].Body)
			}
			rcvd := strings.Join(msgs[0].Received(), " ")
			if tc.tls != strings.Contains(rcvd, "using TLS") {
				t.Fatalf("Received: %s", rcvd)
			}
		})
	}
}
