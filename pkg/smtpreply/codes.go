package smtpreply

import (
	"fmt"
	"strconv"
	"strings"
)

// The replies the relay makes itself on the delivery side: its TLS
// policy verdicts, routing failures, the queue's expiry and the
// administrator's return. Each text lives here once; the DSN builder and
// the audit read these values (or, for text stored on disk, the readers
// below), never their own copies. Codes are RFC 5321 §4.2's, enhanced
// codes RFC 3463's. The inbound server's replies are in
// pkg/smtpserver/codes.go.

// one builds a one-line reply.
func one(code int, enhanced, text string) Reply {
	return Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// The TLS policy verdicts (SPEC §4): 503 and 5.7.0 as Sendmail's TLS_Rcpt
// rule answers, whatever on-fail says (RFC 3463 X.7.0: other security
// status). The texts are Sendmail's, which operators already know.
const (
	tooWeakText       = "encryption too weak "
	tooOldText        = "protocol too old "
	notVerifiedText   = "certificate not verified: "
	policyCode        = 503
	policyEnhanced    = "5.7.0"
	policyPrefix      = "503 5.7.0 "
	lessThan          = " less than "
	nullMXText        = "Recipient address rejected: %s does not accept mail (null MX)"
	adminReturnText   = "delivery cancelled by the administrator"
	requireTLSText    = "REQUIRETLS support required"
	addressLiteralTxt = "Recipient address rejected: address literals are not relayed; use the domain name"
)

// EncryptionTooWeak: the hop offered got bits of encryption (0: no TLS),
// the policy wants want.
func EncryptionTooWeak(got, want int) Reply {
	return one(policyCode, policyEnhanced, tooWeakText+strconv.Itoa(got)+lessThan+strconv.Itoa(want))
}

// ProtocolTooOld: the hop's TLS version got is older than want.
func ProtocolTooOld(got, want string) Reply {
	return one(policyCode, policyEnhanced, tooOldText+got+lessThan+want)
}

// CertificateNotVerified: the policy wants a verified certificate.
func CertificateNotVerified(reason string) Reply {
	return one(policyCode, policyEnhanced, notVerifiedText+reason)
}

// ReadEncryptionTooWeak reads EncryptionTooWeak's bits back from its
// one-line text, as a DSN built from a stored envelope has only that.
func ReadEncryptionTooWeak(s string) (got, want int, ok bool) {
	g, w, ok := readLessThan(s, policyPrefix+tooWeakText)
	if !ok {
		return 0, 0, false
	}
	got, err1 := strconv.Atoi(g)
	want, err2 := strconv.Atoi(w)
	return got, want, err1 == nil && err2 == nil
}

// ReadProtocolTooOld reads ProtocolTooOld's versions back.
func ReadProtocolTooOld(s string) (got, want string, ok bool) {
	return readLessThan(s, policyPrefix+tooOldText)
}

// ReadCertificateNotVerified reads CertificateNotVerified's reason back.
func ReadCertificateNotVerified(s string) (reason string, ok bool) {
	return strings.CutPrefix(s, policyPrefix+notVerifiedText)
}

func readLessThan(s, prefix string) (got, want string, ok bool) {
	rest, ok := strings.CutPrefix(s, prefix)
	f := strings.Fields(rest)
	if !ok || len(f) != 4 || f[1] != "less" || f[2] != "than" {
		return "", "", false
	}
	return f[0], f[3], true
}

// Routing failures, found before any connection.

// NullMX: the domain publishes a null MX (RFC 7505 §4.2, with RFC 7504's
// 556 and 5.1.10).
func NullMX(domain string) Reply {
	return one(556, "5.1.10", fmt.Sprintf(nullMXText, domain))
}

// NoDomain: the domain does not exist (RFC 3463 X.4.4: unable to route).
func NoDomain(err error) Reply {
	return one(550, "5.4.4", fmt.Sprintf("Host or domain name not found: %v", err))
}

// LookupFailed: DNS did not answer (RFC 3463 X.4.3: directory server
// failure); temporary.
func LookupFailed(cause any) Reply {
	return one(451, "4.4.3", fmt.Sprintf("Host or domain name lookup failed: %v", cause))
}

// NoMXReached: no MX host of domain could be reached (RFC 3463 X.4.4);
// temporary.
func NoMXReached(domain string) Reply {
	return one(451, "4.4.4", "no MX host of "+domain+" could be reached")
}

// BadRecipientSyntax: a stored address that is not a Mailbox (queued
// before the relay checked at RCPT); RFC 5321 §4.1.2, RFC 3463 X.1.3.
func BadRecipientSyntax(err error) Reply {
	return one(501, "5.1.3", fmt.Sprintf("Bad recipient address syntax: %v", err))
}

// AddressLiteral: an address literal names no domain, so no TLS policy;
// the relay refuses them at RCPT and never sends to one (RFC 3463 X.1.2).
var AddressLiteral = one(550, "5.1.2", addressLiteralTxt)

// NeedsSMTPUTF8: the message needs SMTPUTF8 and the hop lacks it
// (RFC 6531 §3.2, RFC 3463 X.6.7).
func NeedsSMTPUTF8(why string) Reply { return one(550, "5.6.7", why) }

// RequireTLS: a REQUIRETLS message found no next hop that meets RFC 8689
// §4.2.1 (TLS with an authenticated server that offers REQUIRETLS).
// 5.7.30 and its text are RFC 8689 §7.3's registration ("REQUIRETLS
// support required"); why names the hop and what it lacked, "" for
// none. 550 as RFC 3463 X.7 failures usually get.
func RequireTLS(why string) Reply {
	if why == "" {
		return one(550, StatusRequireTLS, requireTLSText)
	}
	return one(550, StatusRequireTLS, requireTLSText+": "+why)
}

// StatusRequireTLS is RequireTLS's enhanced status code, for the DSN
// builder to recognise the return whoever sent it.
const StatusRequireTLS = "5.7.30"

// AdminReturn: recipients returned by `queue bounce` (RFC 3463 X.0.0,
// undefined permanent failure; Exim's wording for exim -Mg).
var AdminReturn = one(550, "5.0.0", adminReturnText)

// StatusExpired is the DSN status of recipients whose queue lifetime ran
// out (RFC 3463 X.4.7: delivery time expired).
const StatusExpired = "4.4.7"

// Published policies and REQUIRETLS (RFC 7672, RFC 8461, RFC 8689). A
// failure of what the partner publishes is temporary: DANE (RFC 7672
// §2.2) and MTA-STS (RFC 8461 §5) defer, never bounce. The enhanced codes
// are RFC 5248's registry: X.7.10 encryption needed, X.7.5 cryptographic
// failure (RFC 3463), X.7.30 REQUIRETLS support required (RFC 8689 §6).
const (
	daneText         = "DANE: "
	stsText          = "MTA-STS: "
	requireTLSPrefix = "REQUIRETLS: "
)

// DANENoTLS: hop has usable TLSA records, so TLS is required (RFC 7672
// §2.2), and the session got none.
func DANENoTLS(hop, failure string) Reply {
	return one(451, "4.7.10", daneText+hop+" has usable TLSA records but TLS failed: "+failure)
}

// DANEUnusableNoTLS: hop's TLSA records are all unusable, which still
// makes TLS mandatory, unauthenticated (RFC 7672 §2.2).
func DANEUnusableNoTLS(hop, failure string) Reply {
	return one(451, "4.7.10", daneText+hop+" has TLSA records (none usable), so TLS is required, and it failed: "+failure)
}

// DANENotAuthenticated: hop's certificate matches none of its usable
// TLSA records (RFC 7672 §2.2, RFC 7671 §5).
func DANENotAuthenticated(hop, reason string) Reply {
	return one(451, "4.7.5", daneText+"certificate of "+hop+" matches no usable TLSA record: "+reason)
}

// DANELookupFailed: the TLSA lookup for hop failed (SERVFAIL, bogus,
// timeout): no plaintext, no downgrade (RFC 7672 §2.2).
func DANELookupFailed(hop, reason string) Reply {
	return one(451, "4.7.5", daneText+"TLSA lookup for "+hop+" failed: "+reason)
}

// DANERequired: a verify=dane entry, and hop has no usable TLSA record
// (Postfix dane-only): the list entry's failure, in its 503 5.7.0 form.
func DANERequired(hop string) Reply {
	return one(policyCode, policyEnhanced, "DANE required: "+hop+" has no usable TLSA record")
}

// NotDANEAuthenticated: a verify=dane entry, and the certificate was not
// authenticated by DANE.
func NotDANEAuthenticated(reason string) Reply {
	return one(policyCode, policyEnhanced, "certificate not DANE-authenticated: "+reason)
}

// STSMXNotListed: MX hop matches none of the policy's mx patterns (RFC
// 8461 §4.1).
func STSMXNotListed(hop, policyID string) Reply {
	return one(451, "4.7.5", stsText+"MX "+hop+" does not match the mx patterns of policy "+policyID)
}

// STSNoTLS: an enforce policy and no TLS with hop (RFC 8461 §4.2).
func STSNoTLS(hop, failure string) Reply {
	return one(451, "4.7.10", stsText+hop+" offers no usable TLS: "+failure)
}

// STSProtocolTooOld: the policy requires TLS 1.2 or later (RFC 8461
// §4.2).
func STSProtocolTooOld(hop, got string) Reply {
	return one(451, "4.7.5", stsText+hop+" negotiated "+got+", the policy requires TLSv1.2 or later")
}

// STSCertificateInvalid: hop's certificate is not PKIX-valid for its
// name (RFC 8461 §4.2).
func STSCertificateInvalid(hop, reason string) Reply {
	return one(451, "4.7.5", stsText+"certificate of "+hop+" not valid for its name: "+reason)
}

// RequireTLSNoTLS: a REQUIRETLS message and no TLS with hop (RFC 8689
// §4.2.1).
func RequireTLSNoTLS(hop, failure string) Reply {
	return one(550, StatusRequireTLS, requireTLSPrefix+"no TLS with "+hop+": "+failure)
}

// RequireTLSNotAuthenticated: a REQUIRETLS message and hop's certificate
// authenticated by neither PKIX nor DANE (RFC 8689 §4.2.1).
func RequireTLSNotAuthenticated(hop, reason string) Reply {
	return one(550, StatusRequireTLS, requireTLSPrefix+"server "+hop+" not authenticated: "+reason)
}

// RequireTLSNotOffered: a REQUIRETLS message and hop does not advertise
// REQUIRETLS after STARTTLS (RFC 8689 §4.2.1; §6's text for 5.7.30).
func RequireTLSNotOffered(hop string) Reply {
	return RequireTLS(hop + " does not offer REQUIRETLS")
}
