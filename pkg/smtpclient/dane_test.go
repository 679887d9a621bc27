package smtpclient

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// How the peer is authenticated (SPEC §6.6): by a matching TLSA record
// (RFC 7672 §3), else by the WebPKI, else not at all; a TLSA mismatch
// is never rescued by a WebPKI-valid certificate.
func TestStartTLSAuth(t *testing.T) {
	ca := testpeer.NewCA(t)
	good := ca.Issue(t, "mx.test")
	self := testpeer.SelfSigned(t, "anything.test")
	hosted := ca.Issue(t, "mx.hosting.test")
	withCA := func(l *testpeer.Leaf) tls.Certificate {
		return tls.Certificate{Certificate: [][]byte{l.Cert.Raw, ca.Cert.Raw}, PrivateKey: l.TLS.PrivateKey}
	}
	spki := func(l *testpeer.Leaf) []byte { h := sha256.Sum256(l.Cert.RawSubjectPublicKeyInfo); return h[:] }
	caHash := sha256.Sum256(ca.Cert.Raw)
	rec := func(u, s, m uint8, d []byte) mx.TLSA { return mx.TLSA{Usage: u, Selector: s, MatchingType: m, Data: d} }
	const mismatch = "DANE: no TLSA record of _25._tcp.mx.test matched the certificate chain"
	tests := []struct {
		name     string
		cert     tls.Certificate
		tlsa     []mx.TLSA
		names    []string
		owner    string
		auth     policy.Auth
		verified bool
		record   string
		verify   string // exact VerifyError
	}{
		{name: "pkix", cert: good.TLS, auth: policy.AuthPKIX, verified: true},
		{name: "none", cert: self.TLS, auth: policy.AuthNone, verify: "x509: certificate signed by unknown authority; certificate does not name mx.test"},
		// DANE-EE: the self-signed certificate for another name is fine.
		{name: "dane-ee", cert: self.TLS, tlsa: []mx.TLSA{rec(3, 1, 1, spki(self))}, auth: policy.AuthDANE, verified: true,
			record: "3 1 1 " + fmt.Sprintf("%x", spki(self))},
		{name: "dane-ta", cert: withCA(good), tlsa: []mx.TLSA{rec(2, 0, 1, caHash[:])}, auth: policy.AuthDANE, verified: true,
			record: "2 0 1 " + fmt.Sprintf("%x", caHash)},
		// RFC 7672 §3.2.2: the leaf may name the CNAME-expanded MX host.
		{name: "dane-ta CNAME-expanded", cert: withCA(hosted), tlsa: []mx.TLSA{rec(2, 0, 1, caHash[:])},
			names: []string{"mx.test", "mx.hosting.test"}, auth: policy.AuthDANE, verified: true},
		{name: "dane-ta other name", cert: withCA(hosted), tlsa: []mx.TLSA{rec(2, 0, 1, caHash[:])}, auth: policy.AuthNone,
			verify: mismatch + fmt.Sprintf(" (trust anchor 2 0 1 %x: certificate does not name mx.test)", caHash)},
		// PKIX-valid, but the TLSA record names another key.
		{name: "dane mismatch", cert: good.TLS, tlsa: []mx.TLSA{rec(3, 1, 1, spki(self))}, auth: policy.AuthNone, verify: mismatch},
		{name: "owner from the port", cert: good.TLS, tlsa: []mx.TLSA{rec(3, 1, 1, spki(self))}, owner: "-", auth: policy.AuthNone},
		// RFC 7672 §3.1.3: unusable records authenticate nothing.
		{name: "unusable records", cert: good.TLS, tlsa: []mx.TLSA{rec(1, 1, 1, spki(good))}, auth: policy.AuthPKIX, verified: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var sni string
			cfg := &tls.Config{Certificates: []tls.Certificate{tc.cert}, GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				mu.Lock()
				sni = h.ServerName
				mu.Unlock()
				return nil, nil
			}}
			addr := serve(t, func(p *peer) {
				p.send("220 mx.test")
				p.ehlo("STARTTLS")
				p.expect("STARTTLS")
				p.send("220 go ahead")
				if p.startTLS(cfg) {
					p.ehlo("PIPELINING")
					p.expect("QUIT")
					p.send("221 bye")
				}
			})
			opts := quickOpts()
			opts.RootCAs = ca.Pool()
			opts.TLSA, opts.TLSANames, opts.TLSAOwner = tc.tlsa, tc.names, "_25._tcp.mx.test"
			if tc.owner == "-" {
				opts.TLSAOwner = ""
			}
			ctx := context.Background()
			s, err := Dial(ctx, addr, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.Hello(ctx); err != nil {
				t.Fatal(err)
			}
			out, err := s.StartTLS(ctx)
			if err != nil || !out.TLS {
				t.Fatalf("StartTLS: %+v %v", out, err)
			}
			s.Quit(ctx)
			if out.Auth != tc.auth || out.Verified != tc.verified {
				t.Fatalf("Auth %q Verified %v (%s), want %q %v", out.Auth, out.Verified, out.VerifyError, tc.auth, tc.verified)
			}
			if tc.record != "" && out.TLSA != tc.record || out.Auth != policy.AuthDANE && out.TLSA != "" {
				t.Fatalf("TLSA %q, want %q", out.TLSA, tc.record)
			}
			if tc.owner == "-" {
				_, port, _ := net.SplitHostPort(addr)
				tc.verify = "DANE: no TLSA record of _" + port + "._tcp.mx.test matched the certificate chain"
			}
			if (tc.verify != "" || tc.verified) && out.VerifyError != tc.verify {
				t.Fatalf("VerifyError %q, want %q", out.VerifyError, tc.verify)
			}
			mu.Lock()
			defer mu.Unlock()
			// RFC 7672 §8.1: SNI names the MX host.
			if sni != "mx.test" {
				t.Fatalf("SNI %q, want mx.test", sni)
			}
		})
	}
}
