package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

// intermediate issues a CA certificate under ca and a leaf for names
// under it: a three-certificate chain as real servers send.
func intermediate(t *testing.T, ca *testpeer.CA, names ...string) (inter, leaf *x509.Certificate) {
	t.Helper()
	now := time.Now()
	ikey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	itmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign,
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, itmpl, ca.Cert, ikey.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ = x509.ParseCertificate(der)
	lkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ltmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err = x509.CreateCertificate(rand.Reader, ltmpl, inter, lkey.Public(), ikey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return inter, leaf
}

func sum256(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
func sum512(b []byte) []byte { h := sha512.Sum512(b); return h[:] }

func TestVerify(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.a.test").Cert
	other := ca.Issue(t, "mx.a.test").Cert
	expired := ca.IssueOpts(t, testpeer.LeafOptions{NotBefore: time.Now().AddDate(-1, 0, 0), NotAfter: time.Now().AddDate(0, 0, -1)}, "elsewhere.test").Cert
	wild := ca.Issue(t, "*.hosting.test").Cert
	inter, ileaf := intermediate(t, ca, "mx.a.test")
	otherCA := testpeer.NewCA(t)
	chain := []*x509.Certificate{leaf, ca.Cert}
	now := time.Now()
	rec := func(u, s, m uint8, d []byte) mx.TLSA { return mx.TLSA{Usage: u, Selector: s, MatchingType: m, Data: d} }
	const owner = "_25._tcp.mx.a.test"
	mismatch := "DANE: no TLSA record of _25._tcp.mx.a.test matched the certificate chain"
	tests := []struct {
		name  string
		recs  []mx.TLSA
		chain []*x509.Certificate
		names []string
		want  Status
		diag  string // the exact Diagnostic, when set
	}{
		// DANE-EE: selectors 0/1, matching types 0/1/2 (RFC 6698 §2.1).
		{name: "EE 3 0 0", recs: []mx.TLSA{rec(3, 0, 0, leaf.Raw)}, want: Match},
		{name: "EE 3 0 1", recs: []mx.TLSA{rec(3, 0, 1, sum256(leaf.Raw))}, want: Match},
		{name: "EE 3 0 2", recs: []mx.TLSA{rec(3, 0, 2, sum512(leaf.Raw))}, want: Match},
		{name: "EE 3 1 0", recs: []mx.TLSA{rec(3, 1, 0, leaf.RawSubjectPublicKeyInfo)}, want: Match},
		{name: "EE 3 1 1", recs: []mx.TLSA{rec(3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Match},
		{name: "EE 3 1 2", recs: []mx.TLSA{rec(3, 1, 2, sum512(leaf.RawSubjectPublicKeyInfo))}, want: Match},
		// RFC 7672 §3.1.1: DANE-EE ignores names, dates and the issuer.
		{name: "EE other name, expired, leaf alone", recs: []mx.TLSA{rec(3, 1, 1, sum256(expired.RawSubjectPublicKeyInfo))},
			chain: []*x509.Certificate{expired}, want: Match},
		{name: "EE matches the leaf only", recs: []mx.TLSA{rec(3, 0, 1, sum256(ca.Cert.Raw))}, want: Mismatch, diag: mismatch},
		{name: "EE other key", recs: []mx.TLSA{rec(3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo))},
			chain: []*x509.Certificate{other, ca.Cert}, want: Mismatch, diag: mismatch},
		{name: "second record matches", recs: []mx.TLSA{rec(3, 1, 1, make([]byte, 32)), rec(3, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Match},
		// DANE-TA (RFC 7672 §3.1.2, §3.2.2).
		{name: "TA 2 0 1", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))}, want: Match},
		{name: "TA 2 1 1", recs: []mx.TLSA{rec(2, 1, 1, sum256(ca.Cert.RawSubjectPublicKeyInfo))}, want: Match},
		{name: "TA 2 0 2", recs: []mx.TLSA{rec(2, 0, 2, sum512(ca.Cert.Raw))}, want: Match},
		{name: "TA 2 0 0", recs: []mx.TLSA{rec(2, 0, 0, ca.Cert.Raw)}, want: Match},
		{name: "TA wrong name", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))}, names: []string{"other.test"}, want: Mismatch,
			diag: mismatch + " (trust anchor 2 0 1 " + strings.ToLower(hexs(sum256(ca.Cert.Raw))) + ": certificate does not name other.test)"},
		// RFC 7672 §3.2.2: the CNAME-expanded MX name is a reference identifier.
		{name: "TA CNAME-expanded name", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))},
			chain: []*x509.Certificate{wild, ca.Cert}, names: []string{"mx.a.test", "mx7.hosting.test"}, want: Match},
		{name: "TA wildcard covers one label only", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))},
			chain: []*x509.Certificate{wild, ca.Cert}, names: []string{"a.b.hosting.test"}, want: Mismatch},
		{name: "TA checks dates", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))},
			chain: []*x509.Certificate{expired, ca.Cert}, names: []string{"elsewhere.test"}, want: Mismatch},
		{name: "TA not presented, 2 1 1", recs: []mx.TLSA{rec(2, 1, 1, sum256(ca.Cert.RawSubjectPublicKeyInfo))},
			chain: []*x509.Certificate{leaf}, want: Mismatch, diag: mismatch},
		// RFC 7671 §5.2.2: "2 1 0" holds the key that signed the top of the chain.
		{name: "TA key not presented, 2 1 0", recs: []mx.TLSA{rec(2, 1, 0, ca.Cert.RawSubjectPublicKeyInfo)},
			chain: []*x509.Certificate{leaf}, want: Match},
		{name: "TA key 2 1 0 over an intermediate", recs: []mx.TLSA{rec(2, 1, 0, ca.Cert.RawSubjectPublicKeyInfo)},
			chain: []*x509.Certificate{ileaf, inter}, want: Match},
		{name: "TA key 2 1 0 of another CA", recs: []mx.TLSA{rec(2, 1, 0, otherCA.Cert.RawSubjectPublicKeyInfo)},
			chain: []*x509.Certificate{leaf}, want: Mismatch, diag: mismatch},
		{name: "TA root over an intermediate", recs: []mx.TLSA{rec(2, 0, 1, sum256(ca.Cert.Raw))},
			chain: []*x509.Certificate{ileaf, inter, ca.Cert}, want: Match},
		{name: "TA is the intermediate", recs: []mx.TLSA{rec(2, 1, 1, sum256(inter.RawSubjectPublicKeyInfo))},
			chain: []*x509.Certificate{ileaf, inter, ca.Cert}, want: Match},
		{name: "TA the leaf does not chain to", recs: []mx.TLSA{rec(2, 0, 1, sum256(otherCA.Cert.Raw))},
			chain: []*x509.Certificate{leaf, otherCA.Cert}, want: Mismatch},
		// RFC 7672 §3.1.3: PKIX usages and unknown parameters are unusable.
		{name: "PKIX-TA unusable", recs: []mx.TLSA{rec(0, 0, 1, sum256(ca.Cert.Raw))}, want: Unusable,
			diag: "DANE: no usable TLSA record at _25._tcp.mx.a.test; TLS required without authentication"},
		{name: "PKIX-EE unusable", recs: []mx.TLSA{rec(1, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Unusable},
		{name: "unknown usage", recs: []mx.TLSA{rec(4, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Unusable},
		{name: "unknown selector", recs: []mx.TLSA{rec(3, 2, 1, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Unusable},
		{name: "unknown matching type", recs: []mx.TLSA{rec(3, 1, 9, sum256(leaf.RawSubjectPublicKeyInfo))}, want: Unusable},
		{name: "unusable beside a usable mismatch", recs: []mx.TLSA{rec(1, 1, 1, sum256(leaf.RawSubjectPublicKeyInfo)), rec(3, 1, 1, make([]byte, 32))},
			want: Mismatch, diag: mismatch},
		{name: "no chain", recs: []mx.TLSA{rec(3, 1, 1, make([]byte, 32))}, chain: []*x509.Certificate{}, want: Mismatch,
			diag: "DANE: no certificate presented to match the TLSA records of _25._tcp.mx.a.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.chain
			if c == nil {
				c = chain
			}
			names := tc.names
			if names == nil {
				names = []string{"mx.a.test"}
			}
			got := Verify(tc.recs, c, owner, names, now)
			if got.Status != tc.want {
				t.Fatalf("got %+v, want %q", got, tc.want)
			}
			if tc.diag != "" && got.Diagnostic != tc.diag {
				t.Fatalf("diagnostic %q, want %q", got.Diagnostic, tc.diag)
			}
			if got.Status == Match && (got.TLSA() != got.Record.String() || got.Diagnostic != "") {
				t.Fatalf("match %+v: TLSA() %q", got, got.TLSA())
			}
			if got.Status != Match && (got.TLSA() != "" || !strings.HasPrefix(got.Diagnostic, "DANE: ")) {
				t.Fatalf("non-match %+v", got)
			}
		})
	}
}

func TestMatchedRecordInPresentationForm(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.a.test").Cert
	d := sum256(leaf.RawSubjectPublicKeyInfo)
	recs := []mx.TLSA{{Usage: 2, Selector: 0, MatchingType: 1, Data: make([]byte, 32)}, {Usage: 3, Selector: 1, MatchingType: 1, Data: d}}
	got := Verify(recs, []*x509.Certificate{leaf}, "_25._tcp.mx.a.test", []string{"mx.a.test"}, time.Now())
	if want := "3 1 1 " + hexs(d); got.TLSA() != want {
		t.Fatalf("TLSA() = %q, want %q", got.TLSA(), want)
	}
}

func hexs(b []byte) string { return strings.ToLower(hex.EncodeToString(b)) }
