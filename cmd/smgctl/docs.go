package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { subcommands = append(subcommands, newDocsCmd) }

// newDocsCmd generates reference documentation from the command tree
// itself, so the man pages cannot drift from the flags. Shell
// completion is cobra's own `smgctl completion bash|zsh|fish|powershell`.
func newDocsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "docs",
		Short: "Generate man pages for smgctl and every subcommand",
		Args:  cobra.NoArgs,
	}
	var section string
	man := &cobra.Command{
		Use:   "man DIR",
		Short: "Write one man page per command (smgctl.1, smgctl-relay.1, …) and smgctl-policy.5 into DIR",
		Long: `Write a roff man page for smgctl and for every subcommand, and
smgctl-policy.5 for the policy file format, into DIR (created if missing).
dist/install.sh puts the .1 pages into man1 and the .5 page into man5.

Shell completion scripts come from "smgctl completion bash|zsh|fish".`,
		Example: `  smgctl docs man ./man && man ./man/smgctl-audit-verify.1`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible pages: no generation date
			hdr := &doc.GenManHeader{Title: "SMGCTL", Section: section, Source: "smgctl " + buildVersion(), Manual: "smgctl manual"}
			files, err := writeManPages(root, hdr, dir)
			if err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("man pages: %w", err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d man pages written to %s\n", len(files), dir)
			return nil
		},
	}
	man.Flags().StringVar(&section, "section", "1", "man section")
	c.AddCommand(man)
	return c
}
