package probe

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

func TestMatchDANE(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.a.test").Cert
	other := ca.Issue(t, "mx.a.test").Cert
	spki256 := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	cert512 := sha512.Sum512(leaf.Raw)
	ca256 := sha256.Sum256(ca.Cert.Raw)
	caSPKI := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
	chain := []*x509.Certificate{leaf, ca.Cert}
	now := time.Now()
	rec := func(u, s, m uint8, d []byte) mx.TLSA { return mx.TLSA{Usage: u, Selector: s, MatchingType: m, Data: d} }
	tests := []struct {
		name   string
		recs   []mx.TLSA
		secure bool
		chain  []*x509.Certificate
		host   string
		want   DANEResult
	}{
		{name: "none", want: DANENone},
		{name: "insecure", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, want: DANEInsecure},
		{name: "EE spki sha256", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, secure: true, want: DANEMatch},
		{name: "EE cert sha512", recs: []mx.TLSA{rec(3, 0, 2, cert512[:])}, secure: true, want: DANEMatch},
		{name: "EE full cert", recs: []mx.TLSA{rec(3, 0, 0, leaf.Raw)}, secure: true, want: DANEMatch},
		// DANE-EE ignores the name (RFC 7672 §3.1.1).
		{name: "EE any name", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, secure: true, host: "other.test", want: DANEMatch},
		{name: "EE other key", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, secure: true, chain: []*x509.Certificate{other, ca.Cert}, want: DANEMismatch},
		{name: "TA cert sha256", recs: []mx.TLSA{rec(2, 0, 1, ca256[:])}, secure: true, want: DANEMatch},
		{name: "TA spki", recs: []mx.TLSA{rec(2, 1, 1, caSPKI[:])}, secure: true, want: DANEMatch},
		// DANE-TA checks the name (RFC 7672 §3.2.2).
		{name: "TA wrong name", recs: []mx.TLSA{rec(2, 0, 1, ca256[:])}, secure: true, host: "other.test", want: DANEMismatch},
		{name: "TA not in chain", recs: []mx.TLSA{rec(2, 0, 1, ca256[:])}, secure: true, chain: []*x509.Certificate{leaf}, want: DANEMismatch},
		{name: "PKIX-EE unusable", recs: []mx.TLSA{rec(1, 1, 1, spki256[:])}, secure: true, want: DANEUnusable},
		{name: "unknown matching type", recs: []mx.TLSA{rec(3, 1, 9, spki256[:])}, secure: true, want: DANEUnusable},
		{name: "second record matches", recs: []mx.TLSA{rec(3, 1, 1, make([]byte, 32)), rec(3, 1, 1, spki256[:])}, secure: true, want: DANEMatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.chain
			if c == nil {
				c = chain
			}
			host := tc.host
			if host == "" {
				host = "mx.a.test"
			}
			got := matchDANE(mx.TLSAResult{Records: tc.recs, Secure: tc.secure, AD: tc.secure}, c, host, now)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// What a TLSA answer means for the requirement (RFC 7672 §2.2).
func TestDANEState(t *testing.T) {
	ee := mx.TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	pkixEE := mx.TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}
	now := time.Now()
	for _, c := range []struct {
		name     string
		t        mx.TLSAResult
		err      error
		mxSecure bool
		want     policy.DANEState
	}{
		{"validated usable record", mx.TLSAResult{Secure: true, Records: []mx.TLSA{ee}}, nil, true, policy.DANEUsable},
		{"validated, only PKIX usages", mx.TLSAResult{Secure: true, Records: []mx.TLSA{pkixEE}}, nil, true, policy.DANEUnusable},
		{"records without trusted AD are ignored", mx.TLSAResult{Records: []mx.TLSA{ee}}, nil, true, policy.DANENone},
		{"no records", mx.TLSAResult{Secure: true}, nil, true, policy.DANENone},
		{"SERVFAIL in a signed zone defers", mx.TLSAResult{}, errors.New("SERVFAIL"), true, policy.DANEFailed},
		{"lookup failure in an unsigned zone", mx.TLSAResult{}, errors.New("SERVFAIL"), false, policy.DANENone},
	} {
		if got, _ := daneState(c.t, c.err, c.mxSecure, "mx.p.test", now); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
