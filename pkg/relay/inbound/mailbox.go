package inbound

import (
	"github.com/smgctl/smgctl/pkg/smtpreply"
	"github.com/smgctl/smgctl/pkg/smtpserver"
)

// The addresses of MAIL FROM and RCPT TO arrive parsed by pkg/smtpserver
// with pkg/address (501 5.1.7 / 5.1.3 for anything that is not an RFC
// 5321 Mailbox) and are kept as the address package writes them: every
// later step (policy, MX lookup, the audit log, DSNs, the next hop's
// command line) sees that one canonical form, never the client's text. A
// quoted local part stays quoted, so it can never become parameters on
// the next hop's command line.

// sender checks MAIL FROM's address; "" is the null reverse-path.
func sender(from smtpserver.Path) (string, *smtpreply.Reply) {
	if from.IsLiteral() {
		// A DSN to it could not be delivered (see recipient).
		return "", errSenderLiteral
	}
	return from.String(), nil
}

// recipient checks RCPT TO's address.
//
// Address literals (RFC 5321 §4.1.3) are refused: the relay enforces TLS
// per domain, and a literal names none. Accepting user@[192.0.2.1] would
// let a sender write a partner's MX address and route around the
// partner's policy entry (only the catch-all could apply), with no host
// name to verify a certificate against. An MTA like Postfix sends to the
// literal's address; a compliance gateway says no at once, and clearly.
// <Postmaster> without a domain (§4.1.1.3) is a local mailbox, and the
// relay has none.
func recipient(to smtpserver.Path) (string, *smtpreply.Reply) {
	switch {
	case to.Domain == "":
		return "", errNoLocalMailbox
	case to.IsLiteral():
		return "", errRecipientLiteral
	}
	return to.String(), nil
}
