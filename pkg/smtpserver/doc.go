// Package smtpserver is smgctl's own SMTP server protocol engine (RFC
// 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
// STARTTLS, CHUNKING, DSN, REQUIRETLS and AUTH PLAIN/LOGIN). It owns the
// wire: line framing, the command grammar, the order of commands, limits
// and timeouts. What to do with a sender, a recipient or a message is the
// Backend's business, asked through the Session interface; every reply is
// a smtpreply.Reply.
//
// It is strict at the reader: a line ends only in CRLF (RFC 5321 §2.3.8).
// A bare CR or LF is never repaired or passed on; see reader.go for what
// happens to the connection, and docs/smtp-server.md for every limit and
// reply.
//
// The files follow the data path: reader.go frames lines, DATA and BDAT
// bodies; command.go, path.go and xtext.go parse commands; conn.go is the
// state machine of one connection; ehlo.go, starttls.go, auth.go and
// bdat.go are the extensions; codes.go holds every fixed reply text;
// server.go accepts connections and shuts down.
package smtpserver
