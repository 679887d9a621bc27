// Package dane authenticates an SMTP server by its DNSSEC-signed TLSA
// records (RFC 7672, RFC 7671): Lookup finds a host's records the way
// RFC 7672 §2.2 says, Verify matches a presented certificate chain
// against them. The relay's delivery and the probe both use it, so they
// cannot judge a certificate differently.
package dane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
)

// TLSA usages SMTP may use (RFC 7672 §3.1): DANE-TA(2) and DANE-EE(3).
// PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3).
const (
	UsageDANETA = 2
	UsageDANEEE = 3
)

// Status is how a chain fared against a host's TLSA records.
type Status string

const (
	// Match: a usable record matched; the server is authenticated.
	Match Status = "match"
	// Mismatch: usable records exist and none matched; the connection
	// must not carry mail (RFC 7672 §2.2: defer).
	Mismatch Status = "mismatch"
	// Unusable: records exist but none is usable (PKIX usages, unknown
	// selectors or matching types): TLS is required, the server is not
	// authenticated (RFC 7672 §2.2, §3.1.3).
	Unusable Status = "unusable"
)

// Result of Verify.
type Result struct {
	Status Status
	// Record is the record that matched, when Status is Match.
	Record mx.TLSA
	// Diagnostic says why, for Mismatch and Unusable; it starts with
	// "DANE: " (listed in docs/ARCHITECTURE.md, "Where each reply text
	// is made").
	Diagnostic string
}

// TLSA is the matched record in presentation form ("3 1 1 ab12…"), or "".
func (r Result) TLSA() string {
	if r.Status != Match {
		return ""
	}
	return r.Record.String()
}

// Usable reports whether SMTP may use rec (RFC 7672 §3.1): a DANE-TA(2)
// or DANE-EE(3) record with a selector and matching type this package
// knows (RFC 6698 §2.1.2, §2.1.3).
func Usable(rec mx.TLSA) bool {
	if rec.Usage != UsageDANETA && rec.Usage != UsageDANEEE {
		return false
	}
	_, ok := data(&x509.Certificate{}, rec.Selector, rec.MatchingType)
	return ok
}

// data computes what a TLSA record with selector and matching type would
// hold for cert (RFC 6698 §2.1.2, §2.1.3). ok is false for selectors or
// matching types this package does not know.
func data(cert *x509.Certificate, selector, mtype uint8) ([]byte, bool) {
	var d []byte
	switch selector {
	case 0:
		d = cert.Raw
	case 1:
		d = cert.RawSubjectPublicKeyInfo
	default:
		return nil, false
	}
	switch mtype {
	case 0:
		return d, true
	case 1:
		h := sha256.Sum256(d)
		return h[:], true
	case 2:
		h := sha512.Sum512(d)
		return h[:], true
	}
	return nil, false
}

func matches(cert *x509.Certificate, rec mx.TLSA) bool {
	d, ok := data(cert, rec.Selector, rec.MatchingType)
	return ok && bytes.Equal(d, rec.Data)
}

// Verify matches chain (leaf first, as presented) against records, the
// TLSA RRset at owner ("_25._tcp.mx.example"). names are the reference
// identifiers a DANE-TA chain's leaf must carry: the MX host name and
// its CNAME-expanded forms (RFC 7672 §3.2.2); Lookup's Host.Names.
//
//   - DANE-EE(3) matches the leaf alone; names, dates and issuer do not
//     matter (RFC 7672 §3.1.1, RFC 7671 §5.1).
//   - DANE-TA(2) matches a certificate of the chain, or — "2 1 0" only —
//     the key that signed the top of the chain when the server left the
//     trust anchor out (RFC 7671 §5.2.2). The leaf must chain to it,
//     be within its dates and name one of names (RFC 7672 §3.1.2, §3.2.2).
//
// The first record that matches wins.
func Verify(records []mx.TLSA, chain []*x509.Certificate, owner string, names []string, now time.Time) Result {
	usable := false
	var why []string
	for _, rec := range records {
		if !Usable(rec) {
			continue
		}
		usable = true
		if len(chain) == 0 {
			continue
		}
		if rec.Usage == UsageDANEEE {
			if matches(chain[0], rec) {
				return Result{Status: Match, Record: rec}
			}
			continue
		}
		if found, err := verifyTA(rec, chain, names, now); found {
			if err == nil {
				return Result{Status: Match, Record: rec}
			}
			why = append(why, fmt.Sprintf("%s: %v", rec, err))
		}
	}
	switch {
	case !usable:
		return Result{Status: Unusable, Diagnostic: fmt.Sprintf("DANE: no usable TLSA record at %s; TLS required without authentication", owner)}
	case len(chain) == 0:
		return Result{Status: Mismatch, Diagnostic: fmt.Sprintf("DANE: no certificate presented to match the TLSA records of %s", owner)}
	}
	diag := fmt.Sprintf("DANE: no TLSA record of %s matched the certificate chain", owner)
	if len(why) > 0 {
		diag += " (trust anchor " + strings.Join(why, "; ") + ")"
	}
	return Result{Status: Mismatch, Diagnostic: diag}
}

// verifyTA looks for the DANE-TA rec in chain. found says whether it is
// there; err why the leaf does not pass with it as trust anchor.
func verifyTA(rec mx.TLSA, chain []*x509.Certificate, names []string, now time.Time) (found bool, err error) {
	leaf := chain[0]
	for i, c := range chain {
		if !matches(c, rec) {
			continue
		}
		roots := x509.NewCertPool()
		roots.AddCert(c)
		inter := x509.NewCertPool()
		for _, ic := range chain[1:max(i, 1)] {
			inter.AddCert(ic)
		}
		_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		if err == nil {
			err = nameCheck(leaf, names)
		}
		return true, err
	}
	// RFC 7671 §5.2.2: with "2 1 0" the server may send the chain
	// without the trust anchor; the record holds the key that signed
	// the top certificate.
	if rec.Selector != 1 || rec.MatchingType != 0 {
		return false, nil
	}
	pub, perr := x509.ParsePKIXPublicKey(rec.Data)
	if perr != nil {
		return false, nil
	}
	top := chain[len(chain)-1]
	anchor := &x509.Certificate{PublicKey: pub, PublicKeyAlgorithm: keyAlgorithm(pub), RawSubjectPublicKeyInfo: rec.Data}
	if top.CheckSignatureFrom(anchor) != nil {
		return false, nil
	}
	if len(chain) == 1 {
		if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
			return true, x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}
		}
		return true, nameCheck(leaf, names)
	}
	roots := x509.NewCertPool()
	roots.AddCert(top)
	inter := x509.NewCertPool()
	for _, ic := range chain[1 : len(chain)-1] {
		inter.AddCert(ic)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil {
		err = nameCheck(leaf, names)
	}
	return true, err
}

// nameCheck: the leaf must carry one of names (RFC 7672 §3.2.2; a
// wildcard covers one leftmost label, RFC 6125 §6.4.3).
func nameCheck(leaf *x509.Certificate, names []string) error {
	for _, n := range names {
		if leaf.VerifyHostname(n) == nil {
			return nil
		}
	}
	return fmt.Errorf("certificate does not name %s", strings.Join(names, " or "))
}

func keyAlgorithm(pub any) x509.PublicKeyAlgorithm {
	switch pub.(type) {
	case *rsa.PublicKey:
		return x509.RSA
	case *ecdsa.PublicKey:
		return x509.ECDSA
	case ed25519.PublicKey:
		return x509.Ed25519
	}
	return x509.UnknownPublicKeyAlgorithm
}
