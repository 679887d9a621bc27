package probe

import (
	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/policy"
)

// DANEResult says how a presented chain fared against the host's usable
// TLSA records (pkg/dane's Status, as the session judged it), or that
// its records were none usable.
type DANEResult string

const (
	DANENone     DANEResult = ""                        // no usable or unusable TLSA records for the host
	DANEUnusable DANEResult = DANEResult(dane.Unusable) // only PKIX usages or unknown parameters (RFC 7672 §3.1.3)
	DANEMatch    DANEResult = DANEResult(dane.Match)    // a usable record matched: DANE-authenticated
	DANEMismatch DANEResult = DANEResult(dane.Mismatch) // usable records, none matched
)

// hopFacts is what pkg/dane's verdict on a host means for the decision,
// in pkg/policy's terms (policy does not import dane).
func hopFacts(name string, h dane.Host) policy.HopFacts {
	facts := policy.HopFacts{Name: name}
	switch h.State {
	case dane.StateUsable:
		facts.DANE = policy.DANEUsable
	case dane.StateUnusable:
		facts.DANE = policy.DANEUnusable
	case dane.StateFailed:
		facts.DANE = policy.DANEFailed
		if h.Err != nil {
			facts.DANEError = h.Err.Error()
		} else {
			facts.DANEError = h.Reason
		}
	}
	return facts
}
