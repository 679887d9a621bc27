package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy/exchange"
	"github.com/smgctl/smgctl/pkg/policy/store"
	"github.com/smgctl/smgctl/pkg/safeio"
)

func formatNames(fs []exchange.Format) []string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return s
}

func newPolicyImportCmd(g *globals) *cobra.Command {
	var ef editFlags
	var format string
	var dryRun, permErr bool
	c := &cobra.Command{
		Use:   "import --format smg|json|sendmail|postfix [FILE|-]",
		Short: "Merge a list from another mailer (or a JSON export) into the policy",
		Long: `Read a policy list and merge it into the policy file in one edit: new
targets are added, listed ones get the imported options, identical ones are
left alone. Each change is journaled with action "import".

Formats:
  smg       the vendor's plain list: one domain or address per line; a
            blank line is the catch-all *: TLS with every
            recipient domain
  json      smgctl's own JSON (policy export --format json); all or nothing
  sendmail  TLS_Rcpt: lines of a Sendmail access file
  postfix   an smtp_tls_policy_maps table

Two kinds of trouble, handled differently:

  invalid input   a line that is not valid for the format (syntax error,
                  bad domain, bad value), binary data, invalid JSON: each
                  bad line is reported on stderr as FILE:LINE: why, nothing
                  is imported (policy file and journal untouched), exit 2.
  semantic loss   a valid line smgctl cannot represent exactly (Postfix
                  dane, fingerprint, secure without match=hostname, a
                  Sendmail CN check, ...): reported as FILE:LINE: why, the
                  rest is imported, exit 1 so a pipeline notices.

Other notes (a repeat, a blank line read as the catch-all, a Postfix
.domain key imported as the domain's entry) are printed and do not change
the exit code. See docs/policy.md for the mappings.`,
		Example: `  smgctl policy import --format smg vendor-export.txt
  smgctl policy import --format sendmail --dry-run /etc/mail/access
  postconf -h smtp_tls_policy_maps    # find the table, then:
  smgctl policy import --format postfix /etc/postfix/tls_policy
  smgctl policy export --format json | ssh gw2 smgctl policy import --format json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			f, err := exchange.ParseFormat(format, exchange.ImportFormats)
			if err != nil {
				return usageErr(fmt.Errorf("--format: %v", err))
			}
			name, data, err := stdinOrFile(g, args)
			if err != nil {
				return usageErr(err)
			}
			res, err := exchange.Read(f, name, data, exchange.ReadOptions{SendmailPermErr: permErr})
			var bad *exchange.InvalidLinesError
			if errors.As(err, &bad) {
				// One line per bad input line, so an operator can fix
				// them all in one pass; nothing has been touched.
				for _, n := range bad.Lines {
					fmt.Fprintf(c.ErrOrStderr(), "%s:%d: %s\n", name, n.Line, n.Text)
				}
				return usageErr(fmt.Errorf("%s: %d invalid line(s) for --format %s (see above); nothing imported", name, len(bad.Lines), f))
			}
			if err != nil {
				return usageErr(err)
			}
			s, actor, err := ef.store(g)
			if err != nil {
				return err
			}
			stderr := c.ErrOrStderr()
			for _, n := range res.Notes {
				fmt.Fprintf(stderr, "%s:%d: %s\n", name, n.Line, n.Text)
			}
			changes, err := s.Import(c.Context(), actor, res.Entries, dryRun)
			if err != nil {
				return usageErr(err)
			}
			w := c.OutOrStdout()
			var added, updated, same int
			for _, ch := range changes {
				switch ch.Kind() {
				case store.ActionAdd:
					added++
				case store.ActionUpdate:
					updated++
				default:
					same++
					continue
				}
				printChange(w, ch, dryRun)
			}
			verb := "imported"
			if dryRun {
				verb = "dry run, nothing written:"
			}
			fmt.Fprintf(w, "%s %d entries from %s: %d added, %d updated, %d unchanged\n",
				verb, len(changes), name, added, updated, same)
			if res.Lost() {
				return &exitError{code: exitFailed, err: fmt.Errorf("%s: some lines could not be imported exactly (see above)", name)}
			}
			return nil
		},
	}
	ef.register(c)
	c.Flags().StringVar(&format, "format", "", "input format: smg|json|sendmail|postfix (required)")
	c.Flags().BoolVarP(&dryRun, "dry-run", "n", false, "show what would change; write nothing")
	c.Flags().BoolVar(&permErr, "perm-err", false, "sendmail: the .mc defines TLS_PERM_ERR, so lines without TEMP+/PERM+ bounce rather than defer")
	c.MarkFlagRequired("format")
	c.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formatNames(exchange.ImportFormats), cobra.ShellCompDirectiveNoFileComp
	})
	return c
}

func newPolicyExportCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "export --format smg|json|postfix|sendmail [FILE|-]",
		Short: "Write the policy as JSON, the vendor's plain list, or a Postfix or Sendmail table",
		Long: `Write the policy to FILE (replaced atomically) or standard output.

  json      every entry with every option; policy import --format json
            reads it
  smg       the vendor's plain list: one target per line, the catch-all
            as a blank line. It has no options: entries that need them
            are reported on stderr and the command exits 1 (an enforced
            entry is still written; a mode=testing or mode=off one is left
            out, since as a plain line it would be enforced).
  postfix   an smtp_tls_policy_maps table for postmap(1): encrypt, verify
            or may, protocols= and ciphers=; a domain entry is written as
            "domain" and ".domain".
  sendmail  TLS_Rcpt: lines for a Sendmail access file: PERM+ or TEMP+,
            ENCR:bits or VERIFY:bits, OK for mode=off.

What the target format cannot express (Postfix: address entries, the
catch-all, more than 128 bits, mode=testing; Sendmail: min-tls,
mode=testing) is reported on stderr with its policy line, and the command
exits 1; the rest is written.`,
		Example: `  smgctl policy export --format json > policy.json
  smgctl policy export --format smg vendor-list.txt
  smgctl policy export --format postfix /etc/postfix/tls_policy && postmap /etc/postfix/tls_policy`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			f, err := exchange.ParseFormat(format, exchange.ExportFormats)
			if err != nil {
				return usageErr(fmt.Errorf("--format: %v", err))
			}
			pf, err := readPolicy(g)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			var notes []exchange.Note
			switch f {
			case exchange.JSON:
				err = exchange.WriteJSON(&buf, pf.Entries())
			case exchange.Postfix:
				notes, err = exchange.WritePostfix(&buf, pf.Entries())
			case exchange.Sendmail:
				notes, err = exchange.WriteSendmail(&buf, pf.Entries())
			default:
				notes, err = exchange.WriteSMG(&buf, pf.Entries())
			}
			if err != nil {
				return err
			}
			if len(args) == 0 || args[0] == "-" {
				if _, err := c.OutOrStdout().Write(buf.Bytes()); err != nil {
					return err
				}
			} else if err := safeio.WriteFile(args[0], buf.Bytes(), 0o644); err != nil {
				return usageErr(err)
			}
			lost := false
			for _, n := range notes {
				fmt.Fprintf(c.ErrOrStderr(), "%s:%d: %s\n", g.policyFile(), n.Line, n.Text)
				lost = lost || n.Lost
			}
			if lost {
				return &exitError{code: exitFailed, err: fmt.Errorf("some entries could not be exported exactly (see above)")}
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "", "output format: smg|json|postfix|sendmail (required)")
	c.MarkFlagRequired("format")
	c.RegisterFlagCompletionFunc("format", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formatNames(exchange.ExportFormats), cobra.ShellCompDirectiveNoFileComp
	})
	return c
}
