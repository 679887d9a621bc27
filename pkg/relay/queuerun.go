package relay

import (
	"context"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/queuectl"
)

// operate runs the relay's clock- and operator-driven queue work until
// ctx ends: the wake-up trigger of `smgctl queue` (a FIFO in the spool,
// like Postfix's qmgr trigger) and the timer for delayed DSNs and queue
// expiry, which must not wait for a message's next attempt.
func (r *Relay) operate(ctx context.Context) {
	go func() {
		if err := queuectl.ListenWake(ctx, r.cfg.Spool, r.runner.Rescan); err != nil {
			// Not fatal: the runner's periodic scan still finds changes.
			r.log.Warn("queue wake-up trigger unavailable; queue changes wait for the next scan", "err", err)
		}
	}()
	tick := time.NewTicker(r.runner.TimerInterval())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			r.runner.CheckTimers()
		}
	}
}
