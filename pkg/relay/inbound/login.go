package inbound

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// loginServer is the server side of the obsolete but ubiquitous LOGIN
// mechanism (draft-murchison-sasl-login): username and password, each
// prompted for. Outlook and many MTAs still use it; go-sasl has no server.
type loginServer struct {
	verify   func(user, pass string) error
	step     int
	username string
}

var _ sasl.Server = (*loginServer)(nil)

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(response) == 0 { // no initial response: prompt for it
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username = string(response)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.verify(l.username, string(response))
	}
	return nil, false, errors.New("sasl LOGIN: unexpected response")
}
