package relay

import (
	"encoding/hex"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy/store"
	"github.com/smgctl/smgctl/pkg/relay/policywatch"
)

// policyLoaded audits a policy put in force whose content is not what
// the last `smgctl policy` edit left in the file, as its journal records
// (sha256): a hand edit, a config-management run, or tampering. The
// journal is written before its file is renamed into place, so an edit
// through `smgctl policy` is never taken for one made outside it.
func (r *Relay) policyLoaded(l policywatch.Load) {
	journal := (&store.Store{Path: l.Path}).JournalPath()
	want, err := store.LastSHA256(journal)
	got := hex.EncodeToString(l.Sum[:])
	if err == nil && (got == want || want == "" && l.Size == 0) {
		return // journaled, or no content and no journal: a fresh install
	}
	rec := audit.Record{
		Time:          time.Now().UTC(),
		Event:         audit.PolicyOutsideJournal,
		PolicyFile:    l.Path,
		PolicySHA256:  got,
		JournalSHA256: want,
	}
	if !l.First {
		rec.PolicyPrevSHA256 = hex.EncodeToString(l.Prev[:])
	}
	if err != nil {
		rec.Diagnostic = "cannot read the policy journal: " + err.Error()
	}
	r.log.Warn("policy content did not come through `smgctl policy`; audited",
		"path", l.Path, "sha256", got, "journal_sha256", want, "journal_err", err)
	if err := r.gate.Write(rec); err != nil {
		r.log.Error("writing the audit log", "err", err)
	}
}
