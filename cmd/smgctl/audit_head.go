package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/audit/verify"
	"github.com/smgctl/smgctl/pkg/relay"
)

func init() { auditSubcommands = append(auditSubcommands, newAuditHeadCmd) }

// headOutput is `audit head --output json`.
type headOutput struct {
	File   string `json:"file"`   // the file the head line is in
	Count  int64  `json:"count"`  // lines in the whole chain
	Hash   string `json:"hash"`   // hash of the last line
	Anchor string `json:"anchor"` // COUNT:HASH, for audit verify --anchor
}

func newAuditHeadCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "head [FILE]",
		Short: "Print the head of the audit log or policy journal, to keep elsewhere as an anchor",
		Long: `Verify the chain and print its head: the file it ends in, the number of
lines in the whole chain (rotated files included) and the hash of the last
line. Keep the anchor line (COUNT:HASH) somewhere the relay's host cannot
write — a ticket, another machine — and check it later with
` + "`smgctl audit verify --anchor COUNT:HASH FILE`" + `: a chain cut back or
rewritten since no longer holds it (docs/audit.md).

FILE defaults to the relay's audit log (the config file's audit-log, SMGCTL_AUDIT_LOG, else
` + relay.DefaultAuditLog + `); a FILE ending in .journal is a policy journal.
Exit 1 when the chain is broken (there is no head to trust), 2 when there
is nothing to read.`,
		Example: `  smgctl audit head
  smgctl audit head /etc/smgctl/policy.conf.journal --output json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			path := g.settings().AuditLog
			if len(args) == 1 {
				path = args[0]
			}
			rep, err := verify.Path(cmd.Context(), path)
			if err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			if !rep.OK() {
				return &exitError{code: exitFailed, err: fmt.Errorf("the chain is broken, so it has no head to anchor: %s", rep.Break)}
			}
			if rep.Head() == "" || len(rep.Files) == 0 {
				return &exitError{code: exitUsage, err: errors.New("no head: the chain is empty, or its start was removed before it had a checkpoint")}
			}
			h := headOutput{File: rep.Files[len(rep.Files)-1].Path, Count: rep.Count, Hash: rep.Last, Anchor: rep.Head()}
			w := cmd.OutOrStdout()
			if out.json() {
				return writeJSON(w, h)
			}
			fmt.Fprintf(w, "file   %s\ncount  %d\nhash   %s\nanchor %s\n", h.File, h.Count, h.Hash, h.Anchor)
			return nil
		},
	}
	out = addOutputFlag(c, "table", "json")
	return c
}
