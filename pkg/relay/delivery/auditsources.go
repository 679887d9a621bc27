package delivery

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
)

// auditPublished fills what an audit record says beyond the list (SPEC
// §6.6, docs/audit.md): the requirement's sources, how the peer was
// authenticated, the MTA-STS policy, and the TLS-RPT policy and result
// type (RFC 8460 §4.3) that `smgctl audit tlsrpt` and the daily reports
// read back.
func auditPublished(rec *audit.Record, req policy.Requirement, sts stsInfo, hop courier.Hop) {
	srcs := hop.Verdict.Sources
	if len(srcs) == 0 {
		srcs = req.Sources() // no hop judged (DNS failure, no MX reached)
	}
	for _, s := range srcs {
		rec.Sources = append(rec.Sources, auditSource(s, hop))
	}
	if o := hop.Outcome; o.TLS {
		rec.Auth = string(o.Auth)
		if rec.Auth == "" {
			rec.Auth = string(policy.AuthNone)
			if o.Verified {
				rec.Auth = string(policy.AuthPKIX)
			}
		}
		rec.TLSA = o.TLSA
	}
	if req.STS != nil {
		rec.STSPolicyID, rec.STSMode, rec.STSMX = req.STS.ID, string(req.STS.Mode), req.STS.MX
	}
	rec.SendingIP = hop.LocalIP

	// The TLS-RPT policy: DANE where the host has TLSA records (RFC 8461
	// §2: it takes precedence), else MTA-STS, else none.
	switch {
	case req.Ignore == policy.IgnoredPublishedOff:
		rec.PolicyType = audit.PolicyNotFound
	case hop.Facts.DANE == policy.DANEUsable || hop.Facts.DANE == policy.DANEUnusable || hop.Facts.DANE == policy.DANEFailed:
		rec.PolicyType, rec.PolicyStrings = audit.PolicyTLSA, hop.TLSA
	case req.STS != nil && req.STS.Mode != policy.STSNone:
		rec.PolicyType, rec.PolicyStrings = audit.PolicySTS, sts.lines
	default:
		rec.PolicyType = audit.PolicyNotFound
	}
	if req.Ignore != "" && (req.Ignore == policy.IgnoredPublishedOff || req.STS != nil || hop.Facts.DANE != policy.DANENone) {
		rec.PublishedIgnored = true
	}
	for _, f := range hop.Verdict.Failures {
		if f.Source != policy.SourceDANE && f.Source != policy.SourceMTASTS &&
			!(f.Source == policy.SourceList && req.Verify == policy.VerifyDANE && hop.Facts.DANE != policy.DANEUsable) {
			continue
		}
		rec.ResultType = resultType(f.Source, req, hop)
		if !f.Enforced {
			rec.PublishedIgnored = true // MTA-STS testing: would have failed
		}
		break
	}
	if rec.ResultType == "" && sts.failure != "" {
		rec.ResultType = sts.failure // a record, but no policy to apply
	}
}

// resultType maps a published policy's failure on hop to its RFC 8460
// §4.3 result type.
func resultType(src policy.SourceKind, req policy.Requirement, hop courier.Hop) string {
	o := hop.Outcome
	switch src {
	case policy.SourceList: // verify=dane and no usable TLSA record
		return audit.ResultDANERequired
	case policy.SourceDANE:
		switch {
		case hop.Facts.DANE == policy.DANEFailed:
			return audit.ResultDNSSECInvalid
		case !o.TLS:
			return audit.ResultSTARTTLSNotSupported
		}
		return audit.ResultTLSAInvalid // no usable record matched the chain
	}
	switch {
	case req.STS != nil && !req.STS.Allows(hop.MX):
		return audit.ResultValidationFailure // MX not in the policy
	case !o.TLS:
		return audit.ResultSTARTTLSNotSupported
	case o.Version < tls.VersionTLS12:
		return audit.ResultValidationFailure
	}
	// smtpclient's VerifyError: crypto/x509's chain error and/or
	// "certificate does not name HOST", joined by "; ". The chain's
	// problem comes first: a name on an untrusted certificate means
	// nothing.
	why := strings.ToLower(o.VerifyError)
	switch {
	case strings.Contains(why, "expired") || strings.Contains(why, "not yet valid"):
		return audit.ResultCertExpired
	case strings.Contains(why, "unknown authority"):
		return audit.ResultCertNotTrusted
	case strings.Contains(why, "does not name") || strings.Contains(why, "is valid for"):
		return audit.ResultCertHostMismatch
	}
	return audit.ResultValidationFailure
}

// auditSource writes one source with the detail an auditor checks.
func auditSource(s policy.Source, hop courier.Hop) audit.Source {
	var d string
	switch s.Kind {
	case policy.SourceList:
		d = fmt.Sprintf("%s line %d mode %s", s.Target, s.Line, s.Mode)
	case policy.SourceMTASTS:
		d = fmt.Sprintf("policy %s mode %s mx %s", s.PolicyID, s.Mode, strings.Join(s.MX, ","))
	case policy.SourceDANE:
		d = fmt.Sprintf("%s TLSA %s", s.Host, s.DANE)
		if hop.Outcome.Auth == policy.AuthDANE && hop.Outcome.TLSA != "" {
			d += ", matched " + hop.Outcome.TLSA
		}
		if s.DANE == policy.DANEFailed && hop.Facts.DANEError != "" {
			d += ": " + hop.Facts.DANEError
		}
	}
	if s.Ignored != "" {
		d += "; ignored: " + s.Ignored
	}
	return audit.Source{Kind: audit.SourceKind(s.Kind), Detail: strings.TrimPrefix(d, "; ")}
}
