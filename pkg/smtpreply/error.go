package smtpreply

import "errors"

// Error is a failure that carries the reply it stands for, so callers
// decide retry or bounce from the code, never from the text.
type Error struct {
	Reply Reply
}

func (e *Error) Error() string { return e.Reply.String() }

// Temporary: retrying later could succeed (4yz, RFC 5321 §4.2.1).
func (e *Error) Temporary() bool { return e.Reply.Temporary() }

// Permanent: the same request will fail again (5yz).
func (e *Error) Permanent() bool { return e.Reply.Permanent() }

// Err wraps r as an error.
func (r Reply) Err() error { return &Error{Reply: r} }

// ErrorOf returns the reply an *Error in err's chain carries.
func ErrorOf(err error) (Reply, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reply, true
	}
	return Reply{}, false
}
