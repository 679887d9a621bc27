package policy

import (
	"crypto/tls"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// EvaluateHop judges one hop's outcome against a combined requirement
// (Combine) and what is known of the hop (HopFacts): the list as Evaluate
// judges it, then DANE, MTA-STS and REQUIRETLS, strictest wins. The
// verdict's Reply names the first source whose demand stops delivery
// (list, DANE, MTA-STS, REQUIRETLS, in that order); Failures lists all,
// those only recorded too. A requirement without published sources is
// judged exactly as Evaluate judges it.
func EvaluateHop(req Requirement, hop HopFacts, out Outcome) Verdict {
	v := Evaluate(req, out)
	v.Sources = req.Sources()
	if hop.DANE != DANENone {
		v.Sources = append(v.Sources, Source{Kind: SourceDANE, Host: hop.Name, DANE: hop.DANE, Ignored: req.Ignore})
	}
	// verify=dane fails on the list's terms; say why when the hop has no
	// usable TLSA record at all (Postfix dane-only: no delivery).
	if req.Judged() && req.Verify == VerifyDANE && v.FailedBy == SourceList && v.Reason == ReasonUnverified && hop.DANE != DANEUsable {
		v.Reply = smtpreply.DANERequired(hop.Name)
		v.Diagnostic = v.Reply.String()
		v.Failures[0].Reply = v.Reply
	}
	add := func(src SourceKind, r smtpreply.Reply, enforced bool) {
		v.Failures = append(v.Failures, Failure{Source: src, Reply: r, Enforced: enforced})
	}
	failure := out.Failure
	if failure == "" {
		failure = "no TLS"
	}
	authReason := out.VerifyError
	if authReason == "" {
		authReason = "no verified chain"
	}
	if req.Ignore == "" {
		// RFC 7672 §2.2: usable TLSA → TLS and a matching certificate;
		// TLSA none usable → TLS, unauthenticated; lookup failure →
		// defer, never a downgrade.
		switch hop.DANE {
		case DANEFailed:
			reason := hop.DANEError
			if reason == "" {
				reason = "no answer"
			}
			add(SourceDANE, smtpreply.DANELookupFailed(hop.Name, reason), true)
		case DANEUsable:
			switch {
			case !out.TLS:
				add(SourceDANE, smtpreply.DANENoTLS(hop.Name, failure), true)
			case out.Auth != AuthDANE:
				add(SourceDANE, smtpreply.DANENotAuthenticated(hop.Name, notDANEReason(out)), true)
			}
		case DANEUnusable:
			if !out.TLS {
				add(SourceDANE, smtpreply.DANEUnusableNoTLS(hop.Name, failure), true)
			}
		}
	}
	if req.stsApplies() {
		// RFC 8461 §4: MX in the policy, TLS 1.2 or later, a certificate
		// valid for the MX name. A DANE-authenticated hop counts as
		// authenticated (RFC 8461 §2: DANE takes precedence where both
		// are published). testing: recorded only (§5).
		enforced := req.STS.Mode == STSEnforce
		switch {
		case !req.STS.Allows(hop.Name):
			add(SourceMTASTS, smtpreply.STSMXNotListed(hop.Name, req.STS.ID), enforced)
		case !out.TLS:
			add(SourceMTASTS, smtpreply.STSNoTLS(hop.Name, failure), enforced)
		case out.Version < tls.VersionTLS12:
			add(SourceMTASTS, smtpreply.STSProtocolTooOld(hop.Name, VersionName(out.Version)), enforced)
		case out.Auth == AuthNone || (out.Auth == "" && !out.Verified):
			add(SourceMTASTS, smtpreply.STSCertificateInvalid(hop.Name, authReason), enforced)
		}
	}
	if req.RequireTLS {
		// RFC 8689 §4.2.1: authenticated TLS (DANE, MTA-STS, verify=cert,
		// else PKIX for the MX name) to a hop that offers REQUIRETLS.
		// Step 2: an MX name not vouched for by DNSSEC (a DANE match
		// implies it was) must be one the domain's MTA-STS policy lists,
		// in testing mode too, or a forged MX record could name any host
		// with a valid certificate for itself.
		switch {
		case !out.TLS:
			add(SourceRequireTLS, smtpreply.RequireTLSNoTLS(hop.Name, failure), true)
		case out.Auth == AuthNone || (out.Auth == "" && !out.Verified):
			add(SourceRequireTLS, smtpreply.RequireTLSNotAuthenticated(hop.Name, authReason), true)
		case out.Auth != AuthDANE && req.stsApplies() && !req.STS.Allows(hop.Name):
			add(SourceRequireTLS, smtpreply.RequireTLSNotAuthenticated(hop.Name, "MTA-STS policy "+req.STS.ID+" does not list it"), true)
		case !out.RequireTLSOffered:
			add(SourceRequireTLS, smtpreply.RequireTLSNotOffered(hop.Name), true)
		}
	}
	if len(v.Failures) == 0 {
		return v
	}
	// The reply names the first failure that stops delivery; with none,
	// the first recorded one (delivered, and the audit says why not met).
	first := -1
	for i, f := range v.Failures {
		if f.Enforced {
			first = i
			break
		}
	}
	v.Met = false
	v.MaySend = first < 0
	if first < 0 {
		first = 0
	}
	f := v.Failures[first]
	v.FailedBy, v.Reply, v.Diagnostic = f.Source, f.Reply, f.Reply.String()
	if f.Source != SourceList && v.Reason == ReasonNone {
		v.Reason = ReasonPublished
	}
	return v
}
