package inbound

import (
	"github.com/emersion/go-smtp"

	"github.com/smgctl/smgctl/pkg/address"
)

// The addresses of MAIL FROM and RCPT TO, read once here and kept as the
// address package writes them: every later step (policy, MX lookup, the
// audit log, DSNs, the next hop's command line) sees that one canonical
// form, never the client's text.
//
// go-smtp hands the backend the address with a quoted local part already
// unquoted (`"a b"@x` arrives as `a b@x`), and cannot be asked for the
// text it read (and the fork in third_party is not changed for this). RFC 5321 §4.1.2 keeps "@" out
// of domains, so its last "@" still separates the two parts, and
// address.ParseValue reads the value back; Mailbox.String quotes it again
// for the wire. Everything go-smtp let through that no Quoted-string can
// carry (control characters, NUL), and every domain that is not a host
// name, is refused here. One form cannot be told apart: `<a@b@c>`, which
// go-smtp passes as local part "a", domain "b@c", reads like `"a@b"@c`.
// Postfix takes the rightmost "@" the same way; the mail still goes only
// to c, under c's policy, as one quoted address.

// sender reads MAIL FROM's address; "" is the null reverse-path.
func sender(from string) (addr string, refused *smtp.SMTPError, why error) {
	if from == "" {
		return "", nil, nil
	}
	m, err := address.ParseValue(from)
	if err != nil {
		return "", errBadSender, err
	}
	if m.IsLiteral() {
		// A DSN to it could not be delivered (see recipient).
		return "", errSenderLiteral, nil
	}
	return m.String(), nil, nil
}

// recipient reads RCPT TO's address.
//
// Address literals (RFC 5321 §4.1.3) are refused: the relay enforces TLS
// per domain, and a literal names none. Accepting user@[192.0.2.1] would
// let a sender write a partner's MX address and route around the
// partner's policy entry (only the catch-all could apply), with no host
// name to verify a certificate against. An MTA like Postfix sends to the
// literal's address; a compliance gateway says no at once, and clearly
// (before this, the relay looked the literal up as an MX name and
// deferred the mail until it expired).
func recipient(to string) (addr string, refused *smtp.SMTPError, why error) {
	m, err := address.ParseValue(to)
	if err != nil {
		return "", errBadRecipient, err
	}
	if m.IsLiteral() {
		return "", errRecipientLiteral, nil
	}
	return m.String(), nil, nil
}
