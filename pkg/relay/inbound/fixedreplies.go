package inbound

import (
	"errors"
	"io"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// fixedReplies is the session as go-smtp sees it. go-smtp writes the text
// of any error that is not an *smtp.SMTPError into the reply ("451 4.0.0
// read tcp 127.0.0.1:2525->...: i/o timeout"); here such an error, an
// internal failure by definition, is logged under the session ID and
// answered with a fixed text, so that no path added later can leak one.
type fixedReplies struct{ *session }

func (f fixedReplies) Mail(from string, opts *smtp.MailOptions) error {
	return f.fixed(f.session.Mail(from, opts))
}

func (f fixedReplies) Rcpt(to string, opts *smtp.RcptOptions) error {
	return f.fixed(f.session.Rcpt(to, opts))
}

func (f fixedReplies) Data(r io.Reader) error { return f.fixed(f.session.Data(r)) }

func (f fixedReplies) Auth(mech string) (sasl.Server, error) {
	srv, err := f.session.Auth(mech)
	return srv, f.fixed(err)
}

// fixed returns err's reply: its own if it is (or wraps, which go-smtp
// would not see) an *smtp.SMTPError, else errInternal.
func (f fixedReplies) fixed(err error) error {
	if err == nil {
		return nil
	}
	var reply *smtp.SMTPError
	if errors.As(err, &reply) {
		return reply
	}
	f.c.s.log.Error("internal error", "session", f.c.id, "client", f.c.remote.String(), "err", err)
	return errInternal
}
