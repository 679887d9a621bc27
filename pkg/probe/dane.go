package probe

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
)

// daneState is what a host's TLSA answer means for the requirement (RFC
// 7672 §2.2): validated usable records → DANE required; validated records
// none usable → TLS required; a failed lookup in a signed zone → defer
// (mxSecure stands in for the host's address records being signed);
// records without a trusted AD bit, or none → the other sources decide.
func daneState(t mx.TLSAResult, err error, mxSecure bool, host string, now time.Time) (policy.DANEState, string) {
	switch {
	case err != nil && mxSecure:
		return policy.DANEFailed, err.Error()
	case err != nil || !t.Secure || len(t.Records) == 0:
		return policy.DANENone, ""
	case matchDANE(t, nil, host, now) == DANEUnusable:
		return policy.DANEUnusable, ""
	}
	return policy.DANEUsable, ""
}

// TLSA usages SMTP may use (RFC 7672 §3.1): DANE-TA(2) and DANE-EE(3).
// PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (§3.1.3).
const (
	usageDANETA = 2
	usageDANEEE = 3
)

// tlsaData computes what a TLSA record with selector and matching type
// would hold for cert (RFC 6698 §2.1.2, §2.1.3). ok is false for
// selectors or matching types this code does not know.
func tlsaData(cert *x509.Certificate, selector, mtype uint8) ([]byte, bool) {
	var data []byte
	switch selector {
	case 0:
		data = cert.Raw
	case 1:
		data = cert.RawSubjectPublicKeyInfo
	default:
		return nil, false
	}
	switch mtype {
	case 0:
		return data, true
	case 1:
		h := sha256.Sum256(data)
		return h[:], true
	case 2:
		h := sha512.Sum512(data)
		return h[:], true
	}
	return nil, false
}

// DANEResult says how a presented chain fared against TLSA records.
type DANEResult string

const (
	DANENone     DANEResult = ""         // no TLSA records
	DANEInsecure DANEResult = "insecure" // records without a trusted AD bit: ignored (RFC 7672 §2.2)
	DANEUnusable DANEResult = "unusable" // only PKIX usages or unknown parameters (RFC 7672 §3.1.3)
	DANEMatch    DANEResult = "match"
	DANEMismatch DANEResult = "mismatch"
)

// matchDANE checks chain (leaf first) against the TLSA records of host.
// DANE-EE matches the leaf alone, ignoring names and dates (RFC 7672
// §3.1.1); DANE-TA matches a certificate of the chain that the leaf must
// chain to, and the leaf must name the host (RFC 7672 §3.1.2, §3.2.2).
func matchDANE(t mx.TLSAResult, chain []*x509.Certificate, host string, now time.Time) DANEResult {
	if len(t.Records) == 0 {
		return DANENone
	}
	if !t.Secure {
		return DANEInsecure
	}
	usable := false
	for _, r := range t.Records {
		if r.Usage != usageDANETA && r.Usage != usageDANEEE {
			continue
		}
		if _, ok := tlsaData(&x509.Certificate{}, r.Selector, r.MatchingType); !ok {
			continue
		}
		usable = true
		if len(chain) == 0 {
			continue
		}
		if r.Usage == usageDANEEE {
			if d, _ := tlsaData(chain[0], r.Selector, r.MatchingType); bytes.Equal(d, r.Data) {
				return DANEMatch
			}
			continue
		}
		for i, c := range chain {
			d, _ := tlsaData(c, r.Selector, r.MatchingType)
			if !bytes.Equal(d, r.Data) {
				continue
			}
			roots := x509.NewCertPool()
			roots.AddCert(c)
			inter := x509.NewCertPool()
			for _, ic := range chain[1:max(i, 1)] {
				inter.AddCert(ic)
			}
			if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host,
				CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil {
				return DANEMatch
			}
		}
	}
	if !usable {
		return DANEUnusable
	}
	return DANEMismatch
}
