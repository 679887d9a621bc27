package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/audit/verify"
	"github.com/smgctl/smgctl/pkg/relay"
)

func init() { auditSubcommands = append(auditSubcommands, newAuditVerifyCmd) }

// verifyOutput is `audit verify --output json` (docs/json-schemas.md).
type verifyOutput struct {
	OK     bool            `json:"ok"`
	Chains []verify.Report `json:"chains"`
}

func newAuditVerifyCmd(g *globals) *cobra.Command {
	var out *outputFlag
	var anchorFlag string
	c := &cobra.Command{
		Use:   "verify [FILE...]",
		Short: "Check the hash chain of the audit log or the policy journal",
		Long: `Check that no line of the relay's audit log or of the policy change
journal was altered, inserted or removed (docs/audit.md, "Tamper
evidence"). Every line carries the SHA-256 of the line before it.

An audit log is checked with its rotated files (audit.log.20260102T030405.000Z:
the UTC time of rotation; oldest first) and its seal (audit.log.seal), which
catches lines cut from the end.
A FILE ending in .journal, or whose records are policy changes, is checked
as a journal.

Several FILEs — the logs of a fleet's relays, or a quoted glob such as
'/srv/smgctl-fleet/*/audit.log' — are each checked on their own, one line
per chain, so a broken one is named.

With no FILE: the relay's audit log (the config file's audit-log, SMGCTL_AUDIT_LOG, else
` + relay.DefaultAuditLog + `) and the policy journal (the policy file's name + .journal), each
if it exists.

Both end every write with a checkpoint line (the count of lines before
it): a chain that ends with anything else lost its end or was appended
to. A chain without any checkpoint (written by an older relay) verifies
with a note. --anchor COUNT:HASH, as ` + "`smgctl audit head`" + ` printed it
earlier, checks that line COUNT still hashes to HASH: kept off the host,
it catches a chain cut back to a checkpoint or rewritten with its seal.

The first line that cannot be trusted is reported as FILE:LINE. Exit 0:
every chain is intact; 1: one is broken; 2: nothing to read.`,
		Example: `  smgctl audit verify
  smgctl audit verify /var/log/smgctl/audit.log
  smgctl audit verify /srv/smgctl-fleet/*/audit.log
  smgctl audit verify --anchor 1234:9f2c… /var/log/smgctl/audit.log
  smgctl audit verify /etc/smgctl/policy.conf.journal --output json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			args, err := expandLogGlobs(args)
			if err != nil {
				return err
			}
			var opt verify.Options
			if anchorFlag != "" {
				a, err := verify.ParseAnchor(anchorFlag)
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				if len(args) != 1 {
					return &exitError{code: exitUsage, err: errors.New("--anchor needs exactly one FILE: the log or journal it was taken from")}
				}
				opt.Anchor = &a
			}
			paths := args
			explicit := len(args) > 0
			if !explicit {
				paths = []string{g.settings().AuditLog, g.policyFile() + ".journal"}
			}
			res := verifyOutput{OK: true, Chains: []verify.Report{}}
			for _, p := range paths {
				rep, err := verify.PathWith(cmd.Context(), p, opt)
				if errors.Is(err, verify.ErrNothing) && !explicit {
					continue
				}
				if err != nil {
					return &exitError{code: exitUsage, err: err}
				}
				res.Chains = append(res.Chains, rep)
				res.OK = res.OK && rep.OK()
			}
			if len(res.Chains) == 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("nothing to verify: no audit log and no policy journal at %s", strings.Join(paths, " or "))}
			}
			w := cmd.OutOrStdout()
			if out.json() {
				if err := writeJSON(w, res); err != nil {
					return err
				}
			} else {
				p := newPainter(w)
				for _, r := range res.Chains {
					what := "audit log"
					if r.Kind == verify.Journal {
						what = "policy journal"
					}
					if !r.OK() {
						fmt.Fprintf(w, "%s %s %s: %s\n", p.bad("BROKEN"), what, r.Path, r.Break)
						continue
					}
					detail := fmt.Sprintf("%d lines", r.Lines)
					if len(r.Files) > 1 {
						detail += fmt.Sprintf(" in %d files", len(r.Files))
					}
					if r.Sealed {
						detail += ", sealed"
					}
					if r.MidChain {
						detail += ", continues a chain whose start was removed"
					}
					if r.Anchored {
						detail += ", holds the anchor " + opt.Anchor.String()
					}
					if h := r.Head(); h != "" {
						detail += ", head " + h
					} else if r.Last != "" {
						detail += ", last " + r.Last
					}
					fmt.Fprintf(w, "%s %s %s: %s\n", p.good("ok"), what, r.Path, detail)
				}
				for _, r := range res.Chains {
					for _, n := range r.Notes {
						fmt.Fprintf(w, "%s %s\n", p.warn("note"), n)
					}
				}
			}
			if !res.OK {
				return checkFailed()
			}
			return nil
		},
	}
	out = addOutputFlag(c, "table", "json")
	c.Flags().StringVar(&anchorFlag, "anchor", "", "COUNT:HASH from `smgctl audit head`: the chain must still hold it")
	return c
}
