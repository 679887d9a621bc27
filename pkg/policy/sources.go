package policy

import "strings"

// SourceKind names what set (part of) a requirement (SPEC §6, §6.6): the
// list, what the partner publishes, or what the sender asked.
type SourceKind string

const (
	SourceList       SourceKind = "list"       // the policy file's entry
	SourceMTASTS     SourceKind = "mta-sts"    // the domain's MTA-STS policy (RFC 8461)
	SourceDANE       SourceKind = "dane"       // the MX host's TLSA records (RFC 7672)
	SourceRequireTLS SourceKind = "requiretls" // REQUIRETLS on the message (RFC 8689)
)

// Why a source was known but did not set the requirement.
const (
	IgnoredPublishedOff  = "published policies off"
	IgnoredTLSRequiredNo = "TLS-Required: No"
)

// Source is one origin of a requirement, with what the audit record and
// the probe need to name it.
type Source struct {
	Kind SourceKind `json:"kind"`
	// List: the entry's target and line; Mode is the entry's mode.
	Target string `json:"target,omitempty"`
	Line   int    `json:"line,omitempty"`
	// MTA-STS: the policy's id, mode and mx patterns.
	PolicyID string   `json:"policy_id,omitempty"`
	MX       []string `json:"mx,omitempty"`
	Mode     string   `json:"mode,omitempty"`
	// DANE: the MX host and its TLSA state.
	Host string    `json:"host,omitempty"`
	DANE DANEState `json:"dane,omitempty"`
	// Ignored says why the source did not apply ("" when it did):
	// IgnoredPublishedOff or IgnoredTLSRequiredNo.
	Ignored string `json:"ignored,omitempty"`
}

// STSMode is an MTA-STS policy's mode (RFC 8461 §3.2).
type STSMode string

const (
	STSEnforce STSMode = "enforce"
	STSTesting STSMode = "testing"
	STSNone    STSMode = "none"
)

// STS is the part of a domain's MTA-STS policy a decision needs, as
// pkg/mtasts fetched and cached it.
type STS struct {
	ID   string   // the TXT record's id (RFC 8461 §3.1)
	Mode STSMode  // enforce, testing or none
	MX   []string // mx patterns ("mail.example.com", "*.example.net")
}

// Published is everything beyond the list that bears on one recipient's
// mail: what the partner's domain publishes, and what the message asks.
type Published struct {
	// STS is the domain's MTA-STS policy; nil when it has none.
	STS *STS
	// RequireTLS: the message was received with MAIL FROM REQUIRETLS
	// (RFC 8689 §4.1).
	RequireTLS bool
	// TLSRequiredNo: the message has "TLS-Required: No" (RFC 8689 §5):
	// MTA-STS and DANE are relaxed for it, never the list entry.
	TLSRequiredNo bool
	// Ignored: the relay's setting turns published policies (MTA-STS,
	// DANE) off; the sources are recorded as ignored.
	Ignored bool
}

// DANEState is what DNSSEC-validated TLSA lookup found for one MX host
// (RFC 7672 §2.2).
type DANEState string

const (
	// DANENone: no TLSA records (authenticated denial), or the MX or
	// its address records are not DNSSEC-signed: the other sources
	// decide.
	DANENone DANEState = ""
	// DANEUsable: usable DANE-TA(2) or DANE-EE(3) records: TLS required
	// and the certificate must match one (Outcome.Auth == AuthDANE).
	DANEUsable DANEState = "usable"
	// DANEUnusable: TLSA records, none usable: TLS required,
	// unauthenticated.
	DANEUnusable DANEState = "unusable"
	// DANEFailed: the TLSA lookup failed (SERVFAIL, bogus, timeout):
	// defer, never plaintext, never a downgrade.
	DANEFailed DANEState = "failed"
)

// HopFacts is what is known about one hop before its session: its name
// and its DANE state. pkg/dane fills it; the decision does not import it.
type HopFacts struct {
	Name string // the MX host name (or the route's host)
	DANE DANEState
	// DANEError says why the TLSA lookup failed (DANEFailed).
	DANEError string
}

// Combine joins a list requirement (Match.Requirement, or the zero
// Requirement when no entry applies) with what is published and asked
// into the one requirement for a recipient (SPEC §6): the strictest of all
// wins. DANE is per hop, so its part is judged by EvaluateHop from
// HopFacts; Combine records whether it applies. mode=off on the entry
// exempts from the list only, never from MTA-STS or DANE. TLS-Required:
// No relaxes MTA-STS and DANE, never the list, and is itself ignored when
// the message asks REQUIRETLS (RFC 8689 §5). With pub.Ignored the relay's
// setting turns MTA-STS and DANE off, and the sources say so.
func Combine(list Requirement, pub Published) Requirement {
	req := list
	req.STS, req.RequireTLS, req.Ignore = nil, pub.RequireTLS, ""
	if pub.STS != nil {
		sts := *pub.STS
		sts.MX = append([]string(nil), pub.STS.MX...)
		req.STS = &sts
	}
	switch {
	case pub.Ignored:
		req.Ignore = IgnoredPublishedOff
	case pub.TLSRequiredNo && !pub.RequireTLS:
		req.Ignore = IgnoredTLSRequiredNo
	}
	return req
}

// MatchMX reports whether MX host name matches an MTA-STS mx pattern
// (RFC 8461 §4.1): exactly, or "*." standing for one left-most label;
// case-insensitive, a trailing dot ignored.
func MatchMX(pattern, host string) bool {
	p := strings.ToLower(strings.TrimSuffix(pattern, "."))
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		label, parent, found := strings.Cut(h, ".")
		return found && label != "" && parent == rest
	}
	return p != "" && p == h
}

// Allows reports whether host matches any of the policy's mx patterns.
func (s *STS) Allows(host string) bool {
	for _, p := range s.MX {
		if MatchMX(p, host) {
			return true
		}
	}
	return false
}

// STSRulesOut reports whether an MTA-STS policy in enforce mode (applied,
// not ignored) has no mx pattern for host: the relay must not even
// connect to it (RFC 8461 §4.1: "senders MUST NOT deliver" to an MX
// outside the patterns). A testing policy rules nothing out; EvaluateHop
// records the would-be failure instead.
func (r Requirement) STSRulesOut(host string) bool {
	return r.stsApplies() && r.STS.Mode == STSEnforce && !r.STS.Allows(host)
}
