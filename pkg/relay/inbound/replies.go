package inbound

import (
	"log/slog"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Every reply text the inbound session chooses is made here; the
// protocol's own replies (syntax, sequence, limits, timeouts, bare CR/LF,
// AUTH exchange) are pkg/smtpserver's (codes.go). Codes follow RFC 5321
// §4.2 and the enhanced codes RFC 3463. No reply carries internal detail:
// that is in the log under the session ID.

func reply(code int, enh, msg string) *smtpreply.Reply {
	return &smtpreply.Reply{Code: code, Enhanced: enh, Lines: []string{msg}}
}

var (
	// RFC 5321 §3.6.2: without permission to relay, refuse the recipient.
	errRelayDenied = reply(554, "5.7.1", "Relay access denied")
	// RFC 3463 X.3.1: disk full; temporary, the client keeps the message.
	errNoSpace = reply(452, "4.3.1", "Insufficient system storage")
	// SPEC §4: any other spool failure gets the same 452 4.3.1 (RFC 3463
	// X.3.1, "mail system full" covers the spool being unable to take the
	// message); temporary, the client keeps the message.
	errSpool = reply(452, "4.3.1", "Local error in processing: message not queued")
	// RFC 3463 X.1.2 / X.1.8: the address is well formed, but the system
	// it names (an address literal) is not one the relay sends to. The
	// recipient's is the one delivery returns a queued literal with.
	errRecipientLiteral = new(smtpreply.AddressLiteral)
	errSenderLiteral    = reply(550, "5.1.8", "Sender address rejected: address literals are not accepted; use the domain name")
	// RFC 5321 §4.1.1.3: <Postmaster> without a domain is a local
	// mailbox, and the relay has none.
	errNoLocalMailbox = reply(550, "5.1.1", "Recipient address rejected: no local mailboxes")
	// RFC 4954 §6: the credentials were wrong.
	errAuthFailed = reply(535, "5.7.8", "Authentication failed")
	// RFC 5321 §4.2.3 451 and RFC 3463 X.3.0: the relay cannot take
	// responsibility for mail now (its audit log cannot be written);
	// temporary, the client keeps the message.
	errRefused = reply(451, "4.3.0", "Mail not accepted now: the gateway cannot record deliveries; try again later")
)

// queuedReply is the only reply that takes responsibility for a message
// (RFC 5321 §6.1): sent after the spool has it on disk.
func queuedReply(id string) *smtpreply.Reply {
	return reply(250, "2.0.0", "Ok: queued as "+id)
}

// slogLevel logs our storage failures as errors and the rest as warnings.
func slogLevel(r *smtpreply.Reply) slog.Level {
	if r == errNoSpace || r == errSpool {
		return slog.LevelError
	}
	return slog.LevelWarn
}
