package relay

import (
	"errors"
	"io"

	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// spoolInboundHealthPart is the health board's part for new mail refused
// for want of spool space. The delivery runner reports its own writes
// (delivery state) as "spool"; each clears only its own.
const spoolInboundHealthPart = "spool-inbound"

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
		q.board.Set(spoolInboundHealthPart, health.Failing, "spool full: new mail refused (452 4.3.1): "+err.Error())
	case err == nil && q.board.Level(spoolInboundHealthPart) != health.OK:
		q.board.Clear(spoolInboundHealthPart)
	}
	return err
}
