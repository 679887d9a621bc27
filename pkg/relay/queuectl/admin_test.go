package queuectl

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

func TestAdminActionRoundTripInOrder(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	// Written newest first: the reader orders by the time of the action.
	later := AdminAction{Time: t0.Add(time.Second), Actor: "bob", Action: ActionReturned, QueueID: "0CT4H1P9VGA2K3QF",
		Sender: "a@corp.test", Recipients: []AdminRecipient{{Address: "x@p.test", DSN: "0CT4H1PA2N6M0S1B", Diagnostic: smtpreply.AdminReturn.String()}}}
	earlier := AdminAction{Time: t0, Actor: "carol", Action: ActionDeleted, QueueID: "0CT4H1PA2N6M0S1C",
		MessageID: "<m@corp.test>", Sender: "a@corp.test", Recipients: []AdminRecipient{{Address: "y@p.test"}, {Address: "z@p.test"}}}
	for _, a := range []AdminAction{later, earlier} {
		if _, err := WriteAdminAction(dir, a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadAdminActions(dir, nil)
	if err != nil || len(got) != 2 {
		t.Fatalf("read: %+v %v", got, err)
	}
	if got[0].Actor != "carol" || len(got[0].Recipients) != 2 || got[0].MessageID != "<m@corp.test>" ||
		got[1].Actor != "bob" || got[1].Recipients[0].DSN != "0CT4H1PA2N6M0S1B" || !got[1].Time.Equal(later.Time) {
		t.Errorf("records: %+v", got)
	}
	if err := got[0].Done(); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadAdminActions(dir, nil); len(got) != 1 || got[0].Actor != "bob" {
		t.Errorf("after Done: %+v", got)
	}
}

func TestWriteAdminActionRefusesIncomplete(t *testing.T) {
	good := AdminAction{Time: time.Now(), Actor: "a", Action: ActionDeleted, QueueID: "0CT4H1P9VGA2K3QF"}
	for _, tc := range []func(*AdminAction){
		func(a *AdminAction) { a.Actor = "" },
		func(a *AdminAction) { a.Action = "frozen" },
		func(a *AdminAction) { a.QueueID = "../x" },
		func(a *AdminAction) { a.Time = time.Time{} },
	} {
		a := good
		tc(&a)
		if _, err := WriteAdminAction(t.TempDir(), a); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}

// A torn or garbage record is logged and moved aside, the good ones are
// still returned; temporaries are left alone.
func TestReadAdminActionsKeepsBadFilesAside(t *testing.T) {
	dir := t.TempDir()
	good := AdminAction{Time: time.Now(), Actor: "a", Action: ActionDeleted, QueueID: "0CT4H1P9VGA2K3QF",
		Recipients: []AdminRecipient{{Address: "x@p.test"}}}
	path, err := WriteAdminAction(dir, good)
	if err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(path)
	ad := AdminDir(dir)
	bad := map[string]string{
		"0CT4H1PA2N6M0S1B.deleted.json":  string(full[:len(full)/2]), // torn
		"0CT4H1PA2N6M0S1C.returned.json": "\x00\xffgarbage",
		"0CT4H1PA2N6M0S1D.deleted.json":  string(full), // names another message
		"0CT4H1PA2N6M0S1E.deleted.json":  `{"time":"2026-11-28T10:00:00Z","actor":"a","action":"deleted","queue_id":"0CT4H1PA2N6M0S1E","sender":"","recipients":[],"extra":1}`,
		"0CT4H1PA2N6M0S1F.deleted.json":  "",
	}
	for name, text := range bad {
		if err := os.WriteFile(filepath.Join(ad, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(ad, ".0CT4H1PA2N6M0S1G.deleted.json.tmp123")
	os.WriteFile(tmp, []byte("{"), 0o600)

	var logs bytes.Buffer
	got, err := ReadAdminActions(dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil || len(got) != 1 || got[0].QueueID != good.QueueID {
		t.Fatalf("read: %+v %v", got, err)
	}
	for name, text := range bad {
		if _, err := os.Stat(filepath.Join(ad, name)); !os.IsNotExist(err) {
			t.Errorf("%s still pending: %v", name, err)
		}
		if b, err := os.ReadFile(filepath.Join(ad, adminCorrupt, name)); err != nil || string(b) != text {
			t.Errorf("%s not kept aside intact: %v", name, err)
		}
		if !strings.Contains(logs.String(), name) {
			t.Errorf("%s not logged:\n%s", name, logs.String())
		}
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Errorf("temporary touched: %v", err)
	}
	// A second pass finds the same good record and nothing else.
	if got, err := ReadAdminActions(dir, nil); err != nil || len(got) != 1 {
		t.Errorf("second read: %+v %v", got, err)
	}
}

func TestReadAdminActionsWithoutDirectory(t *testing.T) {
	if got, err := ReadAdminActions(t.TempDir(), nil); err != nil || got != nil {
		t.Errorf("%+v %v", got, err)
	}
}

// Delete and Bounce write their record before the message goes; a
// failed change writes none.
func TestDeleteAndBounceWriteAdminRecords(t *testing.T) {
	q, _, id := newQueue(t, "a@corp.test", "b@p.test", "c@p.test")
	q.Actor = "carol"
	ctx := context.Background()
	if res := q.Delete(ctx, []string{id, "0000000000000000"}); !res[0].Done || res[1].Done {
		t.Fatalf("delete: %+v", res)
	}
	got, err := ReadAdminActions(q.Dir(), nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	if a := got[0]; a.Action != ActionDeleted || a.QueueID != id || a.Actor != "carol" || a.Sender != "a@corp.test" ||
		len(a.Recipients) != 2 || a.Recipients[0].Address != "b@p.test" || a.Recipients[1].Address != "c@p.test" {
		t.Errorf("delete record: %+v", a)
	}

	q2, _, id2 := newQueue(t, "a@corp.test", "d@p.test")
	q2.Actor = "dave"
	res := q2.Bounce(ctx, []string{id2})
	if !res[0].Done || res[0].DSN == "" {
		t.Fatalf("bounce: %+v", res)
	}
	got, err = ReadAdminActions(q2.Dir(), nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("%+v %v", got, err)
	}
	if a := got[0]; a.Action != ActionReturned || a.Actor != "dave" || len(a.Recipients) != 1 ||
		a.Recipients[0] != (AdminRecipient{Address: "d@p.test", DSN: res[0].DSN, Diagnostic: smtpreply.AdminReturn.String()}) {
		t.Errorf("bounce record: %+v", a)
	}
}

func FuzzReadAdmin(f *testing.F) {
	f.Add([]byte(`{"time":"2026-11-28T10:00:00Z","actor":"a","action":"deleted","queue_id":"0CT4H1P9VGA2K3QF","sender":"","recipients":[{"address":"x@p.test"}]}`))
	f.Add([]byte(`{"time":"2026-11-28T10:00:00Z","actor":"a","action":"returned"`))
	f.Add([]byte("\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "r.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := readAdmin(path)
		if err == nil && a.check() != nil {
			t.Errorf("accepted an invalid record: %+v", a)
		}
	})
}
