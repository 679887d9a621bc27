package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/verify"
	"github.com/smgctl/smgctl/pkg/relay"
)

// TestAuditLogFull puts the audit log on a small tmpfs and fills it while
// the relay delivers to a real Postfix MX (issue 10, point 2). While the
// log cannot be written nothing is delivered without its record, new mail
// gets 451 4.3.0, /healthz says failing with the reason; when space
// returns the relay resumes by itself, every acknowledged message is
// delivered exactly once with its record, and the chain verifies.
func TestAuditLogFull(t *testing.T) {
	testpeer.RequireRoot(t)
	w := startWorld(t, "none")
	mnt := t.TempDir()
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		if testpeer.InCI() {
			t.Fatalf("mount tmpfs: %v (CI=true)", err)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	l := startRelay(t, w, "", func(c *relay.Config) {
		c.AuditLog = filepath.Join(mnt, "audit.log")
	})
	addr := l.relay.Addr().String()
	body := func(n int) string { return fmt.Sprintf("Subject: m%d\r\n\r\nmessage %d\r\n", n, n) }

	acked := 0
	send := func() error {
		err := submit(addr, fmt.Sprintf("u%d@clear.test", acked), body(acked))
		if err == nil {
			acked++
		}
		return err
	}
	for range 3 {
		if err := send(); err != nil {
			t.Fatal(err)
		}
	}
	w.none.WaitMessages(t, "clear.test", 3, 30*time.Second)
	l.record(t, "u2@clear.test", audit.Delivered)

	// Fill the log's filesystem.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	// Mail keeps coming: the first delivery whose record cannot be
	// written holds the relay; new mail is then refused with 451.
	refused := ""
	for deadline := time.Now().Add(20 * time.Second); refused == "" && time.Now().Before(deadline); {
		err := send()
		var te *textproto.Error
		switch {
		case err == nil:
			time.Sleep(100 * time.Millisecond)
		case errors.As(err, &te):
			refused = fmt.Sprintf("%d %s", te.Code, te.Msg)
		default:
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(refused, "451 4.3.0") {
		t.Fatalf("after %d messages: %q, want 451 4.3.0 while the audit log is full", acked, refused)
	}
	t.Logf("refused after %d acknowledged messages: %s", acked, refused)
	resp, err := http.Get("http://" + l.relay.AdminAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := l.healthz(t)
	if resp.StatusCode != http.StatusServiceUnavailable || h["status"] != "failing" || !strings.Contains(fmt.Sprint(h["problems"]), "audit log cannot be written") {
		t.Errorf("/healthz while the audit log is full: %d %v", resp.StatusCode, h)
	}
	// Held: nothing more leaves while the log is full. (Postfix files
	// what it accepted into the maildir a moment later: let it settle.)
	time.Sleep(time.Second)
	held := len(w.none.Messages("clear.test"))
	time.Sleep(2 * time.Second)
	if n := len(w.none.Messages("clear.test")); n != held {
		t.Errorf("%d messages delivered while held, before %d: delivery did not pause", n, held)
	}
	if err := send(); err == nil {
		t.Error("mail accepted while the audit log is full")
	}

	// Space returns: the relay resumes by itself.
	os.Remove(filler)
	w.none.WaitMessages(t, "clear.test", acked, 60*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if l.healthz(t)["status"] == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health after recovery: %v", l.healthz(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := send(); err != nil {
		t.Fatalf("mail refused after recovery: %v", err)
	}
	msgs := w.none.WaitMessages(t, "clear.test", acked, 30*time.Second)
	l.record(t, fmt.Sprintf("u%d@clear.test", acked-1), audit.Delivered)

	// Every acknowledged message delivered once, each with its record.
	got := map[string]int{}
	for _, m := range msgs {
		got[m.Header.Get("Subject")]++
	}
	delivered := map[string]int{}
	fl, err := os.Open(l.cfg.AuditLog)
	if err != nil {
		t.Fatal(err)
	}
	audit.Scan(fl, func(r audit.Record) error {
		if r.Event == audit.Delivered {
			delivered[r.Recipient]++
		}
		return nil
	})
	fl.Close()
	for i := range acked {
		if n := got[fmt.Sprintf("m%d", i)]; n != 1 {
			t.Errorf("message %d delivered %d times, want once", i, n)
		}
		if n := delivered[fmt.Sprintf("u%d@clear.test", i)]; n != 1 {
			t.Errorf("u%d@clear.test has %d delivered records, want 1", i, n)
		}
	}
	if len(msgs) != acked {
		t.Errorf("%d messages at the MX, %d acknowledged", len(msgs), acked)
	}
	l.stop()
	rep, err := verify.Log(context.Background(), l.cfg.AuditLog)
	if err != nil || !rep.OK() {
		t.Fatalf("audit verify after recovery: %+v %v %v", rep, rep.Break, err)
	}
	t.Logf("verified %d lines; notes: %v", rep.Lines, rep.Notes)
}
