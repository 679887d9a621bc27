package inbound

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
)

// TestRefuse: while Config.Refuse says no, MAIL FROM gets 451 4.3.0 and
// nothing is queued; once it says yes, the same session's next
// transaction goes through.
func TestRefuse(t *testing.T) {
	var full atomic.Bool
	full.Store(true)
	r := startRelay(t, Config{Refuse: func() error {
		if full.Load() {
			return errors.New("audit log: no space left on device")
		}
		return nil
	}})
	c := r.dial()
	c.hello()
	reply := c.expect("MAIL FROM:<alice@corp.test>", "451 4.3.0")
	if want := "cannot record deliveries"; !strings.Contains(reply, want) || strings.Contains(reply, "no space") {
		t.Errorf("reply %q: want a plain reason, no internals", reply)
	}
	c.expect("RCPT TO:<bob@partner.test>", "503 5.5.1 Error: need MAIL command") // no transaction was started
	full.Store(false)
	c.expect("MAIL FROM:<alice@corp.test>", "250")
	c.expect("RCPT TO:<bob@partner.test>", "250")
	c.expect("DATA", "354")
	c.send("Subject: t\r\n\r\nhi\r\n.\r\n")
	queuedID(t, c.reply())
	if n := len(r.queued()); n != 1 {
		t.Errorf("%d messages queued, want 1", n)
	}
}
