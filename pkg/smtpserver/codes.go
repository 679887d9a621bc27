package smtpserver

import (
	"strconv"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Every reply text the server makes is here. Codes are RFC 5321 §4.2's,
// enhanced codes RFC 3463's (with RFC 5248's registry); where an RFC
// leaves the text open it is Postfix's, which the company's MTAs and
// their operators already know.

func reply(code int, enhanced, text string) smtpreply.Reply {
	return smtpreply.Reply{Code: code, Enhanced: enhanced, Lines: []string{text}}
}

// Positive replies.
var (
	// RFC 5321 §4.1.1.9, §4.1.1.5: RSET and NOOP.
	replyOK = reply(250, "2.0.0", "Ok")
	// RFC 5321 §4.1.1.2; RFC 3463 X.1.0 "other address status".
	replyMailOK = reply(250, "2.1.0", "Ok")
	// RFC 5321 §4.1.1.3; RFC 3463 X.1.5 "destination address valid".
	replyRcptOK = reply(250, "2.1.5", "Ok")
	// RFC 5321 §4.1.1.4: the go-ahead for the body.
	replyStartData = reply(354, "", "End data with <CR><LF>.<CR><LF>")
	// RFC 5321 §4.1.1.10.
	replyBye = reply(221, "2.0.0", "Bye")
	// RFC 5321 §3.5.3: VRFY is not answered, but the recipient may be
	// tried (252, not 502, so that callers do not give up on it).
	replyVrfy = reply(252, "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery")
	// RFC 5321 §4.1.1.8.
	replyHelp = reply(214, "2.0.0", "Commands: HELO EHLO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP")
	// RFC 3207 §4.
	replyStartTLS = reply(220, "2.0.0", "Ready to start TLS")
	// RFC 4954 §6.
	replyAuthOK = reply(235, "2.7.0", "Authentication successful")
)

// replyGreeting is the opening 220 (RFC 5321 §4.3.1), naming the server.
func replyGreeting(host string) smtpreply.Reply { return reply(220, "", host+" ESMTP smgctl") }

// replyHelo answers HELO (RFC 5321 §4.1.1.1): the server's name.
func replyHelo(host string) smtpreply.Reply { return reply(250, "", host) }

// replyChunkOK acknowledges a BDAT chunk that is not the last (RFC 3030
// §2).
func replyChunkOK(n int64) smtpreply.Reply {
	return reply(250, "2.0.0", "Ok: "+strconv.FormatInt(n, 10)+" octets received")
}

// replyInternal stands in for a reply a Session made without a valid
// code (RFC 5321 §4.2: 2yz-5yz); temporary, so no mail is lost.
var replyInternal = reply(451, "4.3.0", "Error: internal server error")

// Command syntax and sequence (RFC 5321 §4.2.2, §4.2.4, §4.3.2).
var (
	replyNotRecognized  = reply(500, "5.5.2", "Error: command not recognized")
	replyNotImplemented = reply(502, "5.5.1", "Error: command not implemented")
	// RFC 5321 §4.5.3.1.10 "500 Line too long".
	replyCommandTooLong = reply(500, "5.5.2", "Error: line too long")
	replyCommandNUL     = reply(500, "5.5.2", "Error: NUL character in command")
	// RFC 5321 §2.3.8: CR and LF only together; the connection is closed
	// after this reply (reader.go readLine).
	replyCommandBareNewline = reply(500, "5.5.2", "Error: bare <CR> or <LF> received; lines must end in <CR><LF>")
	replyNeedHelo           = reply(503, "5.5.1", "Error: send HELO/EHLO first")
	replyNestedMail         = reply(503, "5.5.1", "Error: nested MAIL command")
	replyNeedMail           = reply(503, "5.5.1", "Error: need MAIL command")
	replyNeedRcpt           = reply(503, "5.5.1", "Error: need RCPT command")
	// RFC 3030 §3: DATA and BDAT do not mix in one transaction.
	replyOnlyBdat = reply(503, "5.5.1", "Error: only BDAT, RSET, NOOP or QUIT may follow BDAT")
	replyNeedEhlo = reply(503, "5.5.1", "Error: send EHLO first")

	replyMailSyntax = reply(501, "5.5.4", "Syntax: MAIL FROM:<address>")
	replyRcptSyntax = reply(501, "5.5.4", "Syntax: RCPT TO:<address>")
	replyBdatSyntax = reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
	// RFC 3463 X.1.7 and X.1.3.
	replyBadSender    = reply(501, "5.1.7", "Bad sender address syntax")
	replyBadRecipient = reply(501, "5.1.3", "Bad recipient address syntax")
	// RFC 6531 §3.7.4.1: a UTF-8 address without MAIL ... SMTPUTF8.
	replyNeedSMTPUTF8 = reply(553, "5.6.7", "Error: non-ASCII address requires SMTPUTF8")
)

// replySyntax is "501 5.5.4 Syntax: <usage>" (RFC 5321 §4.2.2).
func replySyntax(usage string) smtpreply.Reply { return reply(501, "5.5.4", "Syntax: "+usage) }

// replyBadParam is a known MAIL or RCPT parameter with a bad value (RFC
// 5321 §4.1.1.11: 501).
func replyBadParam(key string) smtpreply.Reply {
	return reply(501, "5.5.4", "Bad "+key+" parameter syntax")
}

// replyUnknownParam is a parameter the server does not know or has not
// offered (RFC 5321 §4.1.1.11, RFC 1869 §6: 555).
func replyUnknownParam(key string) smtpreply.Reply {
	return reply(555, "5.5.4", "Unsupported option: "+key)
}

// Message content (RFC 5321 §4.1.1.4, RFC 1870, RFC 3030).
var (
	// RFC 1870 §6; RFC 3463 X.3.4, both at MAIL (SIZE=) and in the body.
	replyTooBig       = reply(552, "5.3.4", "Error: message size exceeds fixed maximum message size")
	replySizeParamBig = reply(552, "5.3.4", "Error: message size exceeds fixed limit")
	// RFC 5321 §2.3.8; as Postfix's smtpd_forbid_bare_newline=reject.
	replyBareNewline = reply(550, "5.5.2", "Error: bare <CR> or <LF> received; lines must end in <CR><LF>")
	// RFC 5321 §4.1.1.4 "text"; RFC 3463 X.6.0 "other media error".
	replyBodyNUL = reply(550, "5.6.0", "Error: message contains a NUL octet")
	// RFC 5321 §4.5.3.1.10; RFC 3463 X.5.3 "too many recipients".
	replyTooManyRcpts = reply(452, "4.5.3", "Error: too many recipients")
)

// replyLineTooLong is RFC 5321 §4.5.3.1.10's "500 Line too long", sent
// after the body was read to its end.
func replyLineTooLong(max int) smtpreply.Reply {
	return reply(500, "5.5.2", "Error: line too long: a text line is at most "+strconv.Itoa(max)+" octets including <CR><LF> (RFC 5321 4.5.3.1.6)")
}

// STARTTLS (RFC 3207) and AUTH (RFC 4954).
var (
	replyTLSActive = reply(554, "5.5.1", "Error: TLS already active")
	// RFC 3207 §4: a command that needs TLS, without it.
	replyNeedTLS = reply(530, "5.7.0", "Must issue a STARTTLS command first")
	// RFC 4954 §4: after a successful AUTH, and during a transaction.
	replyAuthAgain     = reply(503, "5.5.1", "Error: already authenticated")
	replyAuthInTx      = reply(503, "5.5.1", "Error: MAIL transaction in progress")
	replyAuthDisabled  = reply(503, "5.5.1", "Error: authentication not enabled")
	replyAuthMechanism = reply(504, "5.5.4", "Unrecognized authentication type")
	replyAuthAborted   = reply(501, "5.0.0", "Authentication aborted")
	replyAuthBase64    = reply(501, "5.5.2", "Cannot decode response")
	replyAuthFailed    = reply(535, "5.7.8", "Error: authentication failed")
)

// Replies that end the connection (RFC 5321 §3.8: 421, then close).
func replyTooManyErrors(host string) smtpreply.Reply {
	return reply(421, "4.7.0", host+" Error: too many errors")
}

// RFC 4954 §4: too many failed AUTHs on this connection.
func replyTooManyAuthFailures(host string) smtpreply.Reply {
	return reply(421, "4.7.0", host+" Error: too many failed authentication attempts")
}

func replyTooManyCommands(host string) smtpreply.Reply {
	return reply(421, "4.7.0", host+" Error: too many commands")
}

// RFC 5321 §4.5.3.2.7: the server may close after its timeout.
func replyTimeout(host string) smtpreply.Reply {
	return reply(421, "4.4.2", host+" Error: timeout exceeded")
}

func replyShuttingDown(host string) smtpreply.Reply {
	return reply(421, "4.3.2", host+" Service shutting down")
}

func replyTooManyConnections(host string) smtpreply.Reply {
	return reply(421, "4.7.0", host+" Error: too many connections, try again later")
}

func replyTooManyFromIP(host string) smtpreply.Reply {
	return reply(421, "4.7.0", host+" Error: too many connections from your address, try again later")
}
