package probe

import (
	"github.com/smgctl/smgctl/pkg/dane"
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
