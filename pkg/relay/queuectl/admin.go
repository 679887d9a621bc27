package queuectl

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// The audit log has one writer, the relay (its hash chain and seal allow
// no other), yet `smgctl queue delete` and `queue bounce` run in another
// process and must leave a trace (SPEC §4: how every message left). So
// before a command removes a message it durably writes an admin-action
// record into the spool's admin directory; the relay turns each into one
// audit record per recipient and only then removes the file (see
// relay.recordAdminActions). With no relay running, its next start does it.

// Admin actions, as the audit log names them.
const (
	ActionDeleted  = "deleted"
	ActionReturned = "returned"
)

const (
	adminDir = "admin"
	// Records that cannot be read go here, kept for an administrator.
	adminCorrupt = "corrupt"
	// Records whose message is still queued (the command died between
	// writing the record and removing the message) go here: the action
	// did not happen, so it must not be audited.
	adminUnapplied = "unapplied"
)

// AdminDir is the directory of pending admin-action records of the spool
// at dir.
func AdminDir(dir string) string { return filepath.Join(dir, adminDir) }

// AdminAction is what an administrator did to one queued message.
type AdminAction struct {
	Time       time.Time        `json:"time"`
	Actor      string           `json:"actor"`
	Action     string           `json:"action"` // ActionDeleted or ActionReturned
	QueueID    string           `json:"queue_id"`
	MessageID  string           `json:"message_id,omitempty"`
	Sender     string           `json:"sender"`
	Recipients []AdminRecipient `json:"recipients"`
}

// AdminRecipient is one pending recipient the action applied to.
type AdminRecipient struct {
	Address string `json:"address"`
	// DSN is the queue ID of the report to the sender (returned only).
	DSN string `json:"dsn,omitempty"`
	// Diagnostic is the text of that report (smtpreply.AdminReturn).
	Diagnostic string `json:"diagnostic,omitempty"`
}

func adminName(a *AdminAction) string { return a.QueueID + "." + a.Action + ".json" }

// check is what a reader demands of a record before it audits it.
func (a *AdminAction) check() error {
	switch {
	case a.Action != ActionDeleted && a.Action != ActionReturned:
		return fmt.Errorf("unknown action %q", a.Action)
	case !spool.ValidID(a.QueueID):
		return fmt.Errorf("bad queue ID %q", a.QueueID)
	case a.Time.IsZero():
		return errors.New("no time")
	case a.Actor == "":
		return errors.New("no actor")
	}
	return nil
}

// WriteAdminAction makes a durable in the admin directory of the spool at
// dir: temporary file, fsync, rename, directory fsync. It returns the
// record's path.
func WriteAdminAction(dir string, a AdminAction) (string, error) {
	if err := a.check(); err != nil {
		return "", fmt.Errorf("queue: admin record: %w", err)
	}
	ad := AdminDir(dir)
	if _, err := os.Stat(ad); errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(ad, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("queue: admin record: %w", err)
		}
		// The new directory's entry must survive a crash too.
		if err := safeio.SyncDir(dir); err != nil {
			return "", fmt.Errorf("queue: admin record: %w", err)
		}
	}
	b, err := json.Marshal(a)
	if err != nil {
		return "", fmt.Errorf("queue: admin record: %w", err)
	}
	path := filepath.Join(ad, adminName(&a))
	if err := safeio.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("queue: admin record: %w", err)
	}
	return path, nil
}

// PendingAdmin is an admin-action record waiting to be audited.
type PendingAdmin struct {
	AdminAction
	Path string
}

// Done removes the record once its audit records are durable.
func (p *PendingAdmin) Done() error {
	if err := os.Remove(p.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return safeio.SyncDir(filepath.Dir(p.Path))
}

// Unapplied moves the record aside: its message is still queued, so the
// action it announces never happened.
func (p *PendingAdmin) Unapplied(log *slog.Logger) {
	keepAside(p.Path, adminUnapplied, log, "the message is still queued; the action did not happen")
}

// ReadAdminActions returns the records of the spool at dir in the order
// the actions were taken. A record that cannot be read (torn, garbage,
// misnamed) is logged and moved to admin/corrupt, never returned and
// never fatal: one bad file must not stop the others from being audited.
func ReadAdminActions(dir string, log *slog.Logger) ([]PendingAdmin, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ad := AdminDir(dir)
	ents, err := os.ReadDir(ad)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: admin records: %w", err)
	}
	var out []PendingAdmin
	for _, e := range ents {
		name := e.Name()
		// Dot files are safeio.WriteFile's temporaries (one in progress,
		// or left by a crash: never renamed, so never a decision).
		if !e.Type().IsRegular() || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(ad, name)
		a, err := readAdmin(path)
		if err == nil && name != adminName(a) {
			err = fmt.Errorf("file name does not match its record (%s)", adminName(a))
		}
		if err != nil {
			keepAside(path, adminCorrupt, log, err.Error())
			continue
		}
		out = append(out, PendingAdmin{AdminAction: *a, Path: path})
	}
	slices.SortStableFunc(out, func(a, b PendingAdmin) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Path, b.Path))
	})
	return out, nil
}

func readAdmin(path string) (*AdminAction, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var a AdminAction
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("not an admin record: %w", err)
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return &a, nil
}

func keepAside(path, sub string, log *slog.Logger, why string) {
	dst := filepath.Join(filepath.Dir(path), sub)
	err := os.MkdirAll(dst, 0o700)
	if err == nil {
		dst = filepath.Join(dst, filepath.Base(path))
		err = os.Rename(path, dst)
	}
	if err != nil {
		log.Error("admin record kept in place; it could not be moved aside", "path", path, "why", why, "err", err)
		return
	}
	log.Error("admin record moved aside, not audited", "path", path, "now", dst, "why", why)
}
