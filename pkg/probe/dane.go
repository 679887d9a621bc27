package probe

import (
	"crypto/x509"
	"time"

	"github.com/smgctl/smgctl/pkg/dane"
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

// DANEResult says how a presented chain fared against TLSA records.
type DANEResult string

const (
	DANENone     DANEResult = ""         // no TLSA records
	DANEInsecure DANEResult = "insecure" // records without a trusted AD bit: ignored (RFC 7672 §2.2)
	DANEUnusable DANEResult = "unusable" // only PKIX usages or unknown parameters (RFC 7672 §3.1.3)
	DANEMatch    DANEResult = "match"
	DANEMismatch DANEResult = "mismatch"
)

// matchDANE reports how chain (leaf first) fares against the TLSA
// records of host, judged by pkg/dane as the relay judges it.
func matchDANE(t mx.TLSAResult, chain []*x509.Certificate, host string, now time.Time) DANEResult {
	if len(t.Records) == 0 {
		return DANENone
	}
	if !t.Secure {
		return DANEInsecure
	}
	return DANEResult(dane.Verify(t.Records, chain, t.Name, []string{host}, now).Status)
}
