package inbound

import (
	"fmt"
	"log/slog"

	"github.com/emersion/go-smtp"
)

// Every reply text the inbound server chooses is made here. Codes follow
// RFC 5321 §4.2 and the enhanced codes RFC 3463; go-smtp makes the replies
// to syntax errors and the AUTH exchange itself.

func reply(code int, enh smtp.EnhancedCode, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

var (
	// RFC 5321 §3.6.2: without permission to relay, refuse the recipient.
	errRelayDenied = reply(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	// RFC 5321 §4.5.3.1.10 and RFC 3463 X.5.3.
	errTooManyRcpts = reply(452, smtp.EnhancedCode{4, 5, 3}, "Too many recipients")
	// RFC 5321 §2.3.8: only CRLF ends a line.
	errBareNewline = reply(550, smtp.EnhancedCode{5, 5, 2}, "Bare <CR> or <LF> not allowed; lines must end in <CR><LF>")
	// RFC 3463 X.3.4, RFC 1870 §6.
	errTooBig = reply(552, smtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed maximum message size")
	// RFC 3463 X.3.1: disk full; temporary, the client keeps the message.
	errNoSpace = reply(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage")
	// SPEC §4: any other spool failure gets the same 452 4.3.1 (RFC 3463
	// X.3.1, "mail system full" covers the spool being unable to take the
	// message); temporary, the client keeps the message.
	errSpool = reply(452, smtp.EnhancedCode{4, 3, 1}, "Local error in processing: message not queued")
	// RFC 5321 §4.1.2, RFC 3463 X.1.3 and X.1.7, Postfix's words: the
	// address is not a Mailbox (mailbox.go).
	errBadRecipient = reply(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax")
	errBadSender    = reply(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax")
	// RFC 3463 X.1.2 / X.1.8: the address is well formed, but the system
	// it names (an address literal) is not one the relay sends to.
	errRecipientLiteral = reply(550, smtp.EnhancedCode{5, 1, 2}, "Recipient address rejected: address literals are not relayed; use the domain name")
	errSenderLiteral    = reply(550, smtp.EnhancedCode{5, 1, 8}, "Sender address rejected: address literals are not accepted; use the domain name")
	// RFC 6531 §3.2: a UTF-8 address needs MAIL FROM ... SMTPUTF8.
	errNeedSMTPUTF8 = reply(553, smtp.EnhancedCode{5, 6, 7}, "Non-ASCII address requires SMTPUTF8")
	// RFC 4954 §6: the credentials were wrong.
	errAuthFailed = smtp.ErrAuthFailed
	// RFC 5321 §3.8: the server is going down; the client retries later.
	errShuttingDown = reply(421, smtp.EnhancedCode{4, 3, 2}, "Service shutting down")
)

// errLineTooLong is RFC 5321 §4.5.3.1.10's "500 Line too long", answered
// after the whole message has been read so client and server stay in step.
func errLineTooLong(max int) *smtp.SMTPError {
	return reply(500, smtp.EnhancedCode{5, 5, 2}, fmt.Sprintf("Line too long: more than %d octets including CRLF (RFC 5321 4.5.3.1.6)", max))
}

// queuedReply is the only reply that takes responsibility for a message
// (RFC 5321 §6.1): sent after the spool has it on disk.
func queuedReply(id string) *smtp.SMTPError {
	return reply(250, smtp.EnhancedCode{2, 0, 0}, "Ok: queued as "+id)
}

// tooManyConnections greets a client over the connection limit (§3.8).
func tooManyConnections(hostname string) string {
	return fmt.Sprintf("421 4.7.0 %s Error: too many connections, try again later\r\n", hostname)
}

// shuttingDownGreeting tells an idle client the server is stopping.
func shuttingDownGreeting(hostname string) string {
	return fmt.Sprintf("421 4.3.2 %s Service shutting down\r\n", hostname)
}

// enh renders an enhanced status code for logs: "5.7.1".
func enh(e *smtp.SMTPError) string {
	c := e.EnhancedCode
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

// slogLevel logs our storage failures as errors and client faults as
// warnings.
func slogLevel(e *smtp.SMTPError) slog.Level {
	if e == errNoSpace || e == errSpool {
		return slog.LevelError
	}
	return slog.LevelWarn
}
