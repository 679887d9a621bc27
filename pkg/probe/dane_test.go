package probe

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// The matching rules are pkg/dane's (its tests); here the probe's
// mapping of them, and of absent or unauthenticated records.
func TestMatchDANE(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.a.test").Cert
	spki256 := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	ca256 := sha256.Sum256(ca.Cert.Raw)
	chain := []*x509.Certificate{leaf, ca.Cert}
	rec := func(u, s, m uint8, d []byte) mx.TLSA { return mx.TLSA{Usage: u, Selector: s, MatchingType: m, Data: d} }
	tests := []struct {
		name   string
		recs   []mx.TLSA
		secure bool
		host   string
		want   DANEResult
	}{
		{name: "none", want: DANENone},
		{name: "insecure", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, want: DANEInsecure},
		{name: "EE match", recs: []mx.TLSA{rec(3, 1, 1, spki256[:])}, secure: true, want: DANEMatch},
		{name: "TA match", recs: []mx.TLSA{rec(2, 0, 1, ca256[:])}, secure: true, want: DANEMatch},
		// DANE-TA checks the probed host's name (RFC 7672 §3.2.2).
		{name: "TA wrong name", recs: []mx.TLSA{rec(2, 0, 1, ca256[:])}, secure: true, host: "other.test", want: DANEMismatch},
		{name: "PKIX-EE unusable", recs: []mx.TLSA{rec(1, 1, 1, spki256[:])}, secure: true, want: DANEUnusable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.host
			if host == "" {
				host = "mx.a.test"
			}
			got := matchDANE(mx.TLSAResult{Name: "_25._tcp." + host, Records: tc.recs, Secure: tc.secure, AD: tc.secure}, chain, host, time.Now())
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
