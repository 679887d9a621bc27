package smtpserver

import (
	"bytes"
	"encoding/base64"
	"strings"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// auth runs AUTH PLAIN (RFC 4616) or LOGIN (draft-murchison-sasl-login,
// still what Outlook and many devices send) per RFC 4954.
func (c *conn) auth(arg string) error {
	a, ok := c.sess.(Authenticator)
	switch {
	case c.state.TLS == nil:
		// RFC 4954 §4 and RFC 3207 §4: no passwords in clear.
		return c.fail(replyNeedTLS)
	case !ok:
		return c.fail(replyAuthDisabled)
	case c.helo == "" || !c.esmtp:
		return c.fail(replyNeedEhlo)
	case c.authUser != "":
		return c.fail(replyAuthAgain)
	case c.inMail:
		return c.fail(replyAuthInTx)
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	if mech == "" {
		return c.fail(replySyntax("AUTH mechanism [initial-response]"))
	}
	cred := Credentials{Mechanism: strings.ToUpper(mech)}
	switch cred.Mechanism {
	case "PLAIN":
		resp, r, err := c.saslStep(initial, hasInitial, "")
		if r != nil || err != nil {
			return c.saslFailed(r, err)
		}
		// message = [authzid] NUL authcid NUL passwd (RFC 4616 §2)
		parts := bytes.Split(resp, []byte{0})
		if len(parts) != 3 || len(parts[1]) == 0 {
			return c.authRefused(nil)
		}
		cred.Identity, cred.Username, cred.Password = string(parts[0]), string(parts[1]), string(parts[2])
	case "LOGIN":
		user, r, err := c.saslStep(initial, hasInitial, "Username:")
		if r != nil || err != nil {
			return c.saslFailed(r, err)
		}
		pass, r, err := c.saslStep("", false, "Password:")
		if r != nil || err != nil {
			return c.saslFailed(r, err)
		}
		cred.Username, cred.Password = string(user), string(pass)
	default:
		return c.fail(replyAuthMechanism)
	}
	// Every answer from an address with recent failures waits, right
	// password or not, so that a quick answer gives nothing away
	// (auththrottle.go).
	c.w.flush()
	c.srv.throttle.pause(c.ctx, c.key)
	if c.ctx.Err() != nil {
		return errQuit
	}
	if r := a.Auth(cred); r != nil {
		return c.authRefused(r)
	}
	c.authUser = cred.Username
	c.srv.authenticated(c)
	c.logger().Info("smtp authenticated", "user", cred.Username)
	c.w.reply(replyAuthOK)
	return nil
}

// authRefused answers a failed AUTH and counts it; at MaxAuthFailures on
// this connection the answer is 421 and the connection closes (RFC 4954
// §4 asks servers to limit guessing).
func (c *conn) authRefused(r *smtpreply.Reply) error {
	if r == nil {
		r = &replyAuthFailed
	}
	c.srv.stats.authFailures.Add(1)
	c.srv.throttle.failed(c.key)
	c.authFailures++
	c.logger().Warn("smtp authentication failed", "failures", c.authFailures)
	if c.authFailures >= c.cfg.MaxAuthFailures {
		c.w.reply(replyTooManyAuthFailures(c.cfg.Hostname))
		return errQuit
	}
	return c.fail(*r)
}

// saslStep gets one client response: the initial response given with
// AUTH, or the answer to a 334 challenge (RFC 4954 §4).
func (c *conn) saslStep(initial string, hasInitial bool, challenge string) ([]byte, *smtpreply.Reply, error) {
	line := initial
	if !hasInitial {
		c.w.reply(smtpreply.Reply{Code: 334, Lines: []string{base64.StdEncoding.EncodeToString([]byte(challenge))}})
		b, err := c.readCommand(maxAuthLine)
		if err != nil {
			return nil, nil, err
		}
		line = string(b)
		if line == "*" {
			return nil, &replyAuthAborted, nil
		}
	} else if line == "=" {
		return nil, nil, nil // RFC 4954 §4: an empty initial response
	}
	resp, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		return nil, &replyAuthBase64, nil
	}
	return resp, nil, nil
}

func (c *conn) saslFailed(r *smtpreply.Reply, err error) error {
	if err != nil {
		return c.readFailed(err)
	}
	return c.fail(*r)
}
