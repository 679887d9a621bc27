package smtpclient

import (
	"errors"
	"fmt"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Error is a failed step of a session: the step, the server's reply if
// there was one, and the cause. Temporary() is what the relay's queue
// asks, so a 4xx or a dropped connection is retried, never bounced.
type Error struct {
	Step  string           // "connect", "banner", "EHLO", "STARTTLS", "handshake", "MAIL", "RCPT", "DATA", ...
	Reply *smtpreply.Reply // nil when the server did not answer
	Err   error            // the cause when there is no reply, or a sentinel such as ErrSMTPUTF8
	// permanent marks failures without a 5xx reply that retrying
	// cannot fix (ErrSMTPUTF8).
	permanent bool
}

func (e *Error) Error() string {
	switch {
	case e.Reply != nil && e.Err != nil:
		return fmt.Sprintf("%s: %s (%v)", e.Step, e.Reply, e.Err)
	case e.Reply != nil:
		return fmt.Sprintf("%s: %s", e.Step, e.Reply)
	}
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying again later could succeed: every
// failure except a 5xx reply and the few local permanent ones. Network
// errors, timeouts and malformed replies are temporary (RFC 5321 §4.5.4.1:
// a failed connection is retried).
func (e *Error) Temporary() bool {
	if e.permanent {
		return false
	}
	return e.Reply == nil || !e.Reply.Permanent()
}

// IsTemporary reports whether err is worth retrying. Errors of unknown
// origin count as temporary: when unsure, defer rather than bounce.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return err != nil
}

// ReplyOf returns the server reply carried by err, if any.
func ReplyOf(err error) (smtpreply.Reply, bool) {
	var e *Error
	if errors.As(err, &e) && e.Reply != nil {
		return *e.Reply, true
	}
	return smtpreply.Reply{}, false
}
