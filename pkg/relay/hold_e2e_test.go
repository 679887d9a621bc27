package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/queuectl"
)

// queue hold keeps a message from delivery even with its MX up, asked to
// retry, and across a relay restart; queue release delivers it at once
// (postsuper -h / -H).
func TestQueueHoldReleaseAcrossRestart(t *testing.T) {
	w := startWorld(t, "modern")
	ops := opsPeer(t, w, "hold.test")
	l := startRelay(t, w, "corp.test mode=off\n", nil)
	l.send(t, "alice@corp.test", "a@hold.test")
	l.record(t, "a@hold.test", audit.Deferred)
	q := openQueue(t, l)
	var id string
	for deadline := time.Now().Add(10 * time.Second); id == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		id = queued(t, q)["a@hold.test"].ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res := q.Hold(ctx, []string{id}); !res[0].Done {
		t.Fatalf("hold: %+v", res)
	}
	bringUp(w, ops, "hold.test")
	if res := q.Retry(ctx, []string{id}); !res[0].Done {
		t.Fatalf("retry of a held message: %+v", res)
	}
	time.Sleep(1500 * time.Millisecond)
	if n := len(ops.Messages("hold.test")); n != 0 {
		t.Fatalf("held message delivered %d times", n)
	}

	// A restart reads the hold back from the envelope.
	cfg := l.cfg
	l.stop()
	l2 := runRelay(t, w, cfg)
	queuectl.Wake(cfg.Spool)
	time.Sleep(1500 * time.Millisecond)
	if n := len(ops.Messages("hold.test")); n != 0 {
		t.Fatalf("held message delivered %d times after a restart", n)
	}
	q2 := openQueue(t, l2)
	if m := queued(t, q2)["a@hold.test"]; !m.Held || m.ID != id {
		t.Fatalf("after the restart the message is not listed as held: %+v", m)
	}

	if res := q2.Release(ctx, []string{id}); !res[0].Done {
		t.Fatalf("release: %+v", res)
	}
	ops.WaitMessages(t, "hold.test", 1, 15*time.Second)
	if rec := l2.record(t, "a@hold.test", audit.Delivered); !rec.TLS {
		t.Errorf("released delivery: %+v", rec)
	}
}
