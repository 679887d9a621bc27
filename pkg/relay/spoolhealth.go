package relay

import (
	"errors"
	"io"

	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// spoolHealthPart is the health board's part for spool writes failing
// now; the delivery runner reports its own writes under the same name.
const spoolHealthPart = "spool"

// reportingQueue is the spool as the SMTP server sees it, reporting on
// the health board when new mail cannot be stored for want of space (the
// client gets 452 4.3.1), and clearing that when a message fits again.
type reportingQueue struct {
	*spool.Spool
	board *health.Board
}

func (q reportingQueue) Put(env *spool.Envelope, body io.Reader) error {
	err := q.Spool.Put(env, body)
	switch {
	case errors.Is(err, spool.ErrNoSpace):
		q.board.Set(spoolHealthPart, health.Failing, "spool full: new mail refused (452 4.3.1): "+err.Error())
	case err == nil && q.board.Level(spoolHealthPart) != health.OK:
		q.board.Clear(spoolHealthPart)
	}
	return err
}
