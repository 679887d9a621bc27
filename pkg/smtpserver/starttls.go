package smtpserver

import (
	"context"
	"crypto/tls"
	"time"
)

// startTLS runs STARTTLS (RFC 3207).
func (c *conn) startTLS(arg string) error {
	switch {
	case c.cfg.TLS == nil:
		return c.fail(replyNotImplemented)
	case c.state.TLS != nil:
		return c.fail(replyTLSActive)
	case arg != "":
		return c.fail(replySyntax("STARTTLS"))
	case c.helo == "" || !c.esmtp:
		return c.fail(replyNeedEhlo) // an extension: EHLO first
	}
	// RFC 3207 §5, CVE-2011-0411: whatever the client sent after
	// STARTTLS and before the handshake was sent in clear, where anyone
	// could have added it. It is thrown away, never answered.
	if n := c.w.br.Buffered(); n > 0 {
		c.logger().Warn("smtp input after STARTTLS discarded", "octets", n)
		c.w.br.Discard(n)
	}
	c.w.reply(replyStartTLS)
	if err := c.w.flush(); err != nil {
		return errQuit
	}
	tc := tls.Server(c.raw, c.cfg.TLS)
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.TLSHandshakeTimeout)
	defer cancel()
	c.raw.SetDeadline(time.Now().Add(c.cfg.TLSHandshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		// Nothing more is written: a reply now would go out in clear
		// over a connection the client believes encrypted.
		c.logger().Info("smtp TLS handshake failed", "err", err)
		c.w.release()
		c.w = newWire(c.raw, 0) // drop buffered output; nothing is flushed
		return errQuit
	}
	c.raw.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	// RFC 3207 §4.2: everything learnt before is forgotten, EHLO included;
	// a new session starts.
	c.reset()
	c.sess.Logout()
	c.sess = nil
	c.helo, c.esmtp, c.authUser = "", false, ""
	c.state.TLS = &cs
	c.w.release() // its input was discarded above, its output flushed
	c.w = newWire(tc, c.cfg.WriteTimeout)
	if !c.startSession() {
		return errQuit
	}
	return nil
}
