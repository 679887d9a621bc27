package smtpserver

import (
	"strconv"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// ehloReply lists the extensions offered now (RFC 5321 §4.1.1.1). What
// depends on TLS changes after STARTTLS: STARTTLS itself goes, AUTH
// (RFC 4954 §4) and REQUIRETLS (RFC 8689 §4) come.
func (c *conn) ehloReply() smtpreply.Reply {
	lines := []string{
		c.cfg.Hostname,
		"PIPELINING", // RFC 2920
		"SIZE " + strconv.FormatInt(c.cfg.MaxMessageBytes, 10), // RFC 1870
	}
	if c.cfg.TLS != nil && c.state.TLS == nil {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	if c.authOffered() {
		lines = append(lines, "AUTH PLAIN LOGIN") // RFC 4954, RFC 4616
	}
	lines = append(lines,
		"ENHANCEDSTATUSCODES", // RFC 2034
		"8BITMIME",            // RFC 6152
		"DSN",                 // RFC 3461
		"SMTPUTF8",            // RFC 6531
		"CHUNKING",            // RFC 3030
	)
	if c.state.TLS != nil {
		lines = append(lines, "REQUIRETLS") // RFC 8689 §4: only over TLS
	}
	return smtpreply.Reply{Code: 250, Lines: lines}
}

// authOffered: AUTH only over TLS and only for sessions that can check
// credentials.
func (c *conn) authOffered() bool {
	_, ok := c.sess.(Authenticator)
	return ok && c.state.TLS != nil
}
