package queuectl

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

func newQueue(t *testing.T, from string, rcpts ...string) (*Queue, *spool.Spool, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "spool")
	sp, err := spool.Open(dir, nil) // the relay's handle
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	env := &spool.Envelope{From: from}
	for _, r := range rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Address: r, Attempts: 1, NextAttempt: time.Now().Add(time.Hour)})
	}
	env.Recipients = append(env.Recipients, spool.Recipient{Address: "done@x.test", State: spool.Delivered})
	if err := sp.Put(env, strings.NewReader("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	q, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q, sp, env.ID
}

func TestOpenRefusesMissingSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo")
	if _, err := Open(dir, nil); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(missing) = %v", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("Open created the spool")
	}
}

// A change waits for the relay's attempt (which holds the lock), and
// gives up with a clear error when told to.
func TestChangesWaitForAttempt(t *testing.T) {
	q, sp, id := newQueue(t, "a@corp.test", "b@p.test")
	unlock, err := sp.Lock(id) // the relay is delivering it
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if res := q.Delete(ctx, []string{id}); res[0].Done || !strings.Contains(res[0].Error, "being delivered") {
		t.Fatalf("delete during an attempt: %+v", res)
	}
	if _, err := sp.Envelope(id); err != nil {
		t.Fatalf("message gone after a refused delete: %v", err)
	}
	released := make(chan struct{})
	go func() { time.Sleep(50 * time.Millisecond); close(released); unlock() }()
	res := q.Delete(context.Background(), []string{id})
	select {
	case <-released:
	default:
		t.Errorf("delete did not wait for the lock")
	}
	if !res[0].Done || len(res[0].Recipients) != 1 || res[0].Recipients[0] != "b@p.test" {
		t.Fatalf("delete: %+v", res)
	}
}

// The relay read the envelope before the delete; its write-back must not
// bring the message back.
func TestDeletedMessageNotResurrected(t *testing.T) {
	q, sp, id := newQueue(t, "a@corp.test", "b@p.test")
	env, _ := sp.Envelope(id)
	if res := q.Delete(context.Background(), []string{id}); !res[0].Done {
		t.Fatal(res)
	}
	env.Recipients[0].State = spool.Delivered
	if err := sp.Update(env); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Update after delete = %v", err)
	}
	if ids, _ := sp.List(); len(ids) != 0 {
		t.Errorf("queue after delete: %v", ids)
	}
	if _, err := sp.Lock(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lock of a deleted message = %v", err)
	}
}

func TestRetryMakesPendingDue(t *testing.T) {
	q, sp, id := newQueue(t, "a@corp.test", "b@p.test", "c@p.test")
	res := q.Retry(context.Background(), []string{id})
	if !res[0].Done || len(res[0].Recipients) != 2 {
		t.Fatalf("retry: %+v", res)
	}
	env, _ := sp.Envelope(id)
	for _, r := range env.Recipients {
		if !r.NextAttempt.IsZero() || (r.Address == "done@x.test" && r.State != spool.Delivered) {
			t.Errorf("after retry: %+v", r)
		}
	}
}

func TestBounceNeverBouncesABounce(t *testing.T) {
	q, sp, id := newQueue(t, "", "a@corp.test")
	res := q.Bounce(context.Background(), []string{id})
	if !res[0].Done || res[0].DSN != "" {
		t.Fatalf("bounce of a DSN: %+v", res)
	}
	if ids, _ := sp.List(); len(ids) != 0 {
		t.Errorf("queue after bounce: %v", ids)
	}
}

func TestBounceQueuesDSN(t *testing.T) {
	q, sp, id := newQueue(t, "a@corp.test", "b@p.test")
	q.Hostname = "relay.corp.test"
	res := q.Bounce(context.Background(), []string{id})
	if !res[0].Done || res[0].DSN == "" {
		t.Fatalf("bounce: %+v", res)
	}
	d, err := sp.Envelope(res[0].DSN)
	if err != nil || d.From != "" || d.DSNOf != id || d.Recipients[0].Address != "a@corp.test" {
		t.Fatalf("DSN envelope: %+v %v", d, err)
	}
	var b strings.Builder
	if _, err := q.Show(res[0].DSN, &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"From: MAILER-DAEMON@relay.corp.test", "Final-Recipient: rfc822; b@p.test", "Status: 5.0.0",
		"Diagnostic-Code: smtp; " + smtpreply.AdminReturn.String(), "Subject: hi"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("DSN lacks %q:\n%s", want, b.String())
		}
	}
	if _, err := q.Show(id, nil); !errors.Is(err, ErrNotQueued) {
		t.Errorf("bounced message still queued: %v", err)
	}
}

// RFC 3461 §4.1: an operator's bounce reports only on recipients whose
// NOTIFY asks for failures; the message leaves the queue either way.
func TestBounceHonoursNotify(t *testing.T) {
	q, sp, id := newQueue(t, "a@corp.test", "never@p.test", "b@p.test")
	env, err := sp.Envelope(id)
	if err != nil {
		t.Fatal(err)
	}
	env.Recipients[0].Notify = []string{"NEVER"}
	env.Recipients[1].ORcpt = "rfc822;B.Orig@corp.test"
	if err := sp.Update(env); err != nil {
		t.Fatal(err)
	}
	res := q.Bounce(context.Background(), []string{id})
	if !res[0].Done || res[0].DSN == "" {
		t.Fatalf("bounce: %+v", res)
	}
	var b strings.Builder
	if _, err := q.Show(res[0].DSN, &b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "never@p.test") || !strings.Contains(b.String(), "Original-Recipient: rfc822; B.Orig@corp.test") {
		t.Errorf("DSN:\n%s", b.String())
	}
	q2, sp2, id2 := newQueue(t, "a@corp.test", "never@p.test")
	env2, _ := sp2.Envelope(id2)
	env2.Recipients[0].Notify = []string{"NEVER"}
	if err := sp2.Update(env2); err != nil {
		t.Fatal(err)
	}
	if res := q2.Bounce(context.Background(), []string{id2}); !res[0].Done || res[0].DSN != "" {
		t.Errorf("bounce with NOTIFY=NEVER: %+v", res)
	}
	if ids, _ := sp2.List(); len(ids) != 0 {
		t.Errorf("queue after bounce: %v", ids)
	}
}

func TestWake(t *testing.T) {
	dir := t.TempDir()
	if ok, err := Wake(dir); ok || err != nil {
		t.Errorf("Wake with no relay = %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	woke := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() { done <- ListenWake(ctx, dir, func() { woke <- struct{}{} }) }()
	// Wake reports a listener once the FIFO is open for reading.
	for {
		if ok, err := Wake(dir); err != nil {
			t.Fatal(err)
		} else if ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	<-woke
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenWake: %v", err)
	}
	// After the relay stopped, the FIFO stays but nobody reads: no error.
	if ok, err := Wake(dir); ok || err != nil {
		t.Errorf("Wake after stop = %v, %v", ok, err)
	}
}

func TestListenWakeRefusesNonFIFO(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(WakePath(dir), nil, 0o600)
	if err := ListenWake(context.Background(), dir, func() {}); err == nil || !strings.Contains(err.Error(), "not a FIFO") {
		t.Errorf("ListenWake on a regular file = %v", err)
	}
}
