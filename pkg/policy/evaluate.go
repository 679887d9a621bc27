package policy

import "github.com/smgctl/smgctl/pkg/smtpreply"

// Requirement is what one recipient's connection must achieve, and where
// the demand comes from so every decision can be explained.
type Requirement struct {
	Options
	Target string // the entry's key; "" when no entry applies
	Line   int    // the entry's line in the policy file; 0 when none

	// Set by Combine from what is published and asked (SPEC §6); zero
	// for the list alone, which Evaluate judges. Requirement stays
	// comparable (the relay groups recipients by it): Sources() is
	// computed, not stored.

	// STS is the domain's MTA-STS policy as published (any mode); nil
	// when it has none.
	STS *STS
	// RequireTLS: the message asked REQUIRETLS (RFC 8689).
	RequireTLS bool
	// Ignore says why MTA-STS and DANE are not applied ("" when they
	// are): IgnoredPublishedOff or IgnoredTLSRequiredNo.
	Ignore string
}

// Sources names every source known for the recipient's domain, in the
// order list, MTA-STS, REQUIRETLS, those ignored included with why; a
// hop's DANE source is added by EvaluateHop (Verdict.Sources).
func (r Requirement) Sources() []Source {
	var out []Source
	if r.Target != "" {
		out = append(out, Source{Kind: SourceList, Target: r.Target, Line: r.Line, Mode: r.Mode.String()})
	}
	if r.STS != nil {
		out = append(out, Source{Kind: SourceMTASTS, PolicyID: r.STS.ID, Mode: string(r.STS.Mode), MX: r.STS.MX, Ignored: r.Ignore})
	}
	if r.RequireTLS {
		out = append(out, Source{Kind: SourceRequireTLS})
	}
	return out
}

// stsApplies reports whether an MTA-STS policy judges the hops (enforce
// or testing, not ignored).
func (r Requirement) stsApplies() bool {
	return r.STS != nil && r.Ignore == "" && r.STS.Mode != STSNone
}

// DefaultRequirement is what the probe judges a domain not on the list
// against: the entry it would get if added with no options.
func DefaultRequirement() Requirement {
	return Requirement{Options: DefaultOptions()}
}

// Enforced reports whether a failed requirement stops delivery.
func (r Requirement) Enforced() bool { return r.Judged() && r.Mode == ModeEnforce }

// Judged reports whether the outcome is judged at all: enforce and testing
// entries are, "off" entries and recipients without an entry are not.
func (r Requirement) Judged() bool {
	return r.Mode != ModeOff && (r.Target != "" || r.Bits > 0)
}

// Outcome is what one TLS attempt on one SMTP connection achieved.
type Outcome struct {
	// TLS is true when the handshake completed.
	TLS bool
	// Version and CipherSuite come from tls.ConnectionState, or from a
	// ServerHello read by a deep probe.
	Version     uint16
	CipherSuite uint16
	// Verified: the chain verified against the trust roots and names the
	// MX host (or a DANE TLSA record matched).
	Verified bool
	// VerifyError says why the certificate did not verify.
	VerifyError string
	// Failure says why there is no TLS: "STARTTLS not offered", the
	// STARTTLS reply, or the handshake error.
	Failure string
	// Auth is how the peer was authenticated (SPEC §6.6): by DANE when
	// a usable TLSA record matched, by PKIX when the chain verified to a
	// trusted root naming the host, else none. Verified is true for the
	// first two.
	Auth Auth
	// TLSA is the record that matched, in presentation form ("3 1 1
	// ab12…"), when Auth is AuthDANE.
	TLSA string
	// RequireTLSOffered: the server advertised REQUIRETLS in its EHLO
	// reply after STARTTLS (RFC 8689 §4.1). The courier fills it; only a
	// REQUIRETLS message looks at it.
	RequireTLSOffered bool
}

// Auth names how a TLS peer was authenticated.
type Auth string

const (
	AuthNone Auth = "none"
	AuthPKIX Auth = "pkix"
	AuthDANE Auth = "dane"
)

// Bits is the negotiated effective cipher strength; 0 without TLS.
func (o Outcome) Bits() int {
	if !o.TLS {
		return 0
	}
	return CipherBits(o.CipherSuite)
}

// Reason classifies why a requirement was not met.
type Reason uint8

const (
	ReasonNone Reason = iota
	ReasonWeakCipher
	ReasonOldProtocol
	ReasonUnverified
	// ReasonPublished: a published policy or REQUIRETLS was not met
	// (Verdict.FailedBy names which).
	ReasonPublished
)

func (r Reason) String() string {
	switch r {
	case ReasonWeakCipher:
		return "weak-cipher"
	case ReasonOldProtocol:
		return "old-protocol"
	case ReasonUnverified:
		return "unverified"
	case ReasonPublished:
		return "published"
	}
	return "none"
}

// Verdict is the judgment of one Outcome against one Requirement.
type Verdict struct {
	// Met is true when the outcome satisfies the requirement.
	Met    bool
	Reason Reason
	// Reply is the relay's verdict as a reply (pkg/smtpreply's codes),
	// zero when met; Diagnostic is its one-line text for a DSN, the
	// audit log and the probe, "" when met.
	Reply      smtpreply.Reply
	Diagnostic string
	// MaySend is true when a message for this recipient may go over this
	// connection: the requirement is met, or it is not enforced.
	MaySend bool
	// WouldBounce is true for mode=testing recipients whose requirement
	// failed: delivered, but recorded.
	WouldBounce bool
	Bits        int

	// FailedBy names the source whose demand Reply states; "" when met.
	// Evaluate only ever names the list.
	FailedBy SourceKind
	// Failures lists every source's unmet demand in the order list,
	// DANE, MTA-STS, REQUIRETLS — those that stop delivery and those
	// only recorded (mode=testing entries, MTA-STS testing: RFC 8461 §5).
	Failures []Failure
	// Sources names every source that set this hop's requirement
	// (EvaluateHop: Requirement.Sources and the hop's DANE).
	Sources []Source
}

// Failure is one source's unmet demand on one hop.
type Failure struct {
	Source SourceKind
	Reply  smtpreply.Reply
	// Enforced: it stops delivery over this hop. False for a would-be
	// failure that is only recorded.
	Enforced bool
}

// Evaluate is the one place that decides whether a TLS outcome is good
// enough for a requirement. The relay and the probe both call it and
// nothing else. Checks run in Sendmail's order: strength first (no TLS is
// 0 bits), then protocol version, then the certificate.
func Evaluate(req Requirement, out Outcome) Verdict {
	v := Verdict{Met: true, MaySend: true, Bits: out.Bits()}
	if !req.Judged() {
		return v
	}
	switch {
	case v.Bits < req.Bits:
		v.Met, v.Reason = false, ReasonWeakCipher
		v.Reply = smtpreply.EncryptionTooWeak(v.Bits, req.Bits)
	case out.Version < req.MinTLS:
		v.Met, v.Reason = false, ReasonOldProtocol
		v.Reply = smtpreply.ProtocolTooOld(VersionName(out.Version), VersionName(req.MinTLS))
	case req.Verify == VerifyCert && !out.Verified:
		reason := out.VerifyError
		if reason == "" {
			reason = "no verified chain"
		}
		v.Met, v.Reason = false, ReasonUnverified
		v.Reply = smtpreply.CertificateNotVerified(reason)
	case req.Verify == VerifyDANE && out.Auth != AuthDANE:
		// RFC 7672 §2.2 as Postfix's dane-only: DANE or no delivery.
		v.Met, v.Reason = false, ReasonUnverified
		v.Reply = smtpreply.NotDANEAuthenticated(notDANEReason(out))
	}
	if !v.Met {
		v.Diagnostic = v.Reply.String()
		v.MaySend = req.Mode != ModeEnforce
		v.WouldBounce = req.Mode == ModeTesting
		v.FailedBy = SourceList
		v.Failures = []Failure{{Source: SourceList, Reply: v.Reply, Enforced: req.Mode == ModeEnforce}}
	}
	return v
}

// notDANEReason says why an outcome is not DANE-authenticated: the
// DANE verifier (pkg/dane) reports a match in Auth and TLSA, so anything
// else is that no usable record matched, whatever PKIX made of the chain.
func notDANEReason(Outcome) string { return "no TLSA record matched the certificate chain" }
