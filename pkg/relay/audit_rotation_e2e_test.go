package relay_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/verify"
	"github.com/smgctl/smgctl/pkg/relay"
)

// TestAuditRotationUnderRunningRelay: a relay with a tiny audit-max-size
// delivers to a real Postfix MX; the audit log rotates several times
// while deliveries run, and the whole set — rotated files, live file,
// seal — verifies as one chain with every delivery in it.
func TestAuditRotationUnderRunningRelay(t *testing.T) {
	w := startWorld(t, "modern", "none")
	l := startRelay(t, w, "modern.test bits=112\n", func(c *relay.Config) { c.AuditMaxSize = 1500 })
	const n = 8
	for i := range n {
		l.send(t, "alice@corp.test", fmt.Sprintf("rcpt%d@modern.test", i))
	}
	// l.record reads only the live file; records rotate away here.
	delivered := func() int {
		files, _ := audit.Files(l.cfg.AuditLog)
		got := 0
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				continue
			}
			audit.Scan(fh, func(r audit.Record) error {
				if r.Event == audit.Delivered && strings.HasSuffix(r.Recipient, "@modern.test") {
					got++
				}
				return nil
			})
			fh.Close()
		}
		return got
	}
	deadline := time.Now().Add(60 * time.Second)
	for delivered() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries in the audit log after 60s", delivered(), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	l.stop()

	files, err := audit.Files(l.cfg.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("audit files %v: want several rotations at 1500 bytes", files)
	}
	for _, f := range files[:len(files)-1] {
		if st, err := os.Stat(f); err != nil || st.Size() > 1500 {
			t.Errorf("%s: %v, %d bytes", f, err, st.Size())
		}
	}
	rep, err := verify.Log(context.Background(), l.cfg.AuditLog)
	if err != nil || !rep.OK() || !rep.Sealed || rep.MidChain || rep.Lines < n {
		t.Fatalf("verify: %+v, break %v, err %v", rep, rep.Break, err)
	}
	t.Logf("%d records in %d files verified, last %s", rep.Lines, len(rep.Files), rep.Last[:12])
}
