package smtpserver

import (
	"context"
	"crypto/tls"
	"io"
	"net/netip"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Backend makes a Session for each connection. NewSession is called when
// a connection is accepted, before the greeting, and again after a
// successful STARTTLS: RFC 3207 §4.2 makes both sides forget everything
// said before TLS, so the server starts a fresh session (the old one gets
// Logout first). A non-nil reply refuses the connection: the server sends
// it instead of the greeting (a 421 or 554, RFC 5321 §3.1) and closes.
type Backend interface {
	NewSession(ctx context.Context, cs ConnState) (Session, *smtpreply.Reply)
}

// ConnState is what the server knows of a connection when it makes a
// session.
type ConnState struct {
	Local, Remote netip.AddrPort
	// TLS is the handshake's result after STARTTLS, nil in clear text;
	// the Received: header records it.
	TLS *tls.ConnectionState
}

// Hello is the client's HELO or EHLO (RFC 5321 §4.1.1.1).
type Hello struct {
	// Name is the argument as sent: a domain, an address literal, or
	// whatever the client calls itself. It is the client's claim only.
	Name string
	// ESMTP is true for EHLO, false for HELO: the "with" of a Received:
	// header is ESMTP or SMTP accordingly (RFC 3848).
	ESMTP bool
}

// Session is one SMTP session's business logic. The server calls its
// methods from the connection's goroutine, one at a time, and only in an
// order RFC 5321 allows: Hello before Mail, Mail before Rcpt, at least one
// accepted Rcpt before Data. A method that returns nil gets the standard
// positive reply (codes.go); any other reply is sent as it is.
type Session interface {
	// Hello is called for each HELO and EHLO; a transaction in progress
	// has been Reset first (RFC 5321 §4.1.4).
	Hello(h Hello) *smtpreply.Reply
	// Mail starts a transaction. The path and parameters are checked:
	// syntax, SIZE against the limit, REQUIRETLS only over TLS, a
	// non-ASCII path only with SMTPUTF8.
	Mail(from Path, p MailParams) *smtpreply.Reply
	// Rcpt adds a recipient; the server enforces the recipient limit.
	Rcpt(to Path, p RcptParams) *smtpreply.Reply
	// Data reads the message: DATA's body dot-unstuffed, or BDAT's chunks
	// as one stream, always ending in CRLF. The reply is sent when Data
	// returns, so return 250 only once the message is safe (RFC 5321
	// §6.1). If a Read returns an error other than io.EOF (ErrTooBig,
	// ErrBareNewline, ErrLineTooLong, ErrNUL, ErrAborted or an I/O
	// error), the message must not be kept: the server sends its own
	// reply and ignores Data's. Data may return early without reading
	// everything; the server reads the rest away.
	Data(body io.Reader) *smtpreply.Reply
	// Reset ends a transaction: RSET, the final reply to DATA or BDAT
	// LAST, HELO/EHLO, STARTTLS, or a transaction abandoned midway.
	Reset()
	// Logout is the end of the session: QUIT, a closed connection, or
	// STARTTLS (a new session follows).
	Logout()
}

// Authenticator is implemented by sessions that accept AUTH (RFC 4954).
// The server offers AUTH PLAIN and LOGIN only over TLS (RFC 4954 §4, the
// passwords would cross in clear otherwise) and only to such sessions; it
// runs the SASL exchange and calls Auth with what the client sent.
type Authenticator interface {
	// Auth checks the credentials. nil means success (235 2.7.0); a
	// refusal is usually 535 5.7.8, a temporary failure 454 4.7.0. The
	// server delays failure replies (Config.AuthFailureDelay).
	Auth(c Credentials) *smtpreply.Reply
}

// Credentials are what a SASL PLAIN (RFC 4616) or LOGIN exchange carried.
type Credentials struct {
	Mechanism string // "PLAIN" or "LOGIN"
	// Identity is PLAIN's authorization identity, "" when the client
	// asked for none (it acts as Username).
	Identity string
	Username string
	Password string
}
