package main

import (
	"bytes"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/smgctl/smgctl/pkg/relay"
)

// policyPage is smgctl-policy(5), the policy file format, hand-written:
// the file is not a command, so cobra cannot generate it.
//
//go:embed man/smgctl-policy.5
var policyPage []byte

// writeManPages writes one page per command, as cobra's GenManTree does,
// each with the EXIT STATUS, ENVIRONMENT and FILES sections man-pages(7)
// asks of a command (the same for every command: they share exit codes,
// settings and files), plus smgctl-policy(5). It returns the files written.
func writeManPages(root *cobra.Command, hdr *doc.GenManHeader, dir string) ([]string, error) {
	var written []string
	var walk func(c *cobra.Command) error
	walk = func(c *cobra.Command) error {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() || sub.IsAdditionalHelpTopicCommand() {
				continue
			}
			if err := walk(sub); err != nil {
				return err
			}
		}
		h := *hdr // GenMan fills in defaults per page
		var page bytes.Buffer
		if err := doc.GenMan(c, &h, &page); err != nil {
			return err
		}
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + "." + hdr.Section
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, withCommonSections(page.Bytes()), 0o644); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	if err := walk(root); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "smgctl-policy.5")
	if err := os.WriteFile(path, policyPage, 0o644); err != nil {
		return nil, err
	}
	return append(written, path), nil
}

// withCommonSections puts the shared sections before SEE ALSO (their
// place in man-pages(7)'s order) and adds smgctl-policy(5) to SEE ALSO.
func withCommonSections(page []byte) []byte {
	const seeAlso = ".SH SEE ALSO\n"
	s := string(page)
	i := strings.Index(s, seeAlso)
	if i < 0 {
		return []byte(s + commonSections() + seeAlso + `\fBsmgctl-policy(5)\fP` + "\n")
	}
	rest := strings.TrimRight(s[i+len(seeAlso):], "\n")
	return []byte(s[:i] + commonSections() + seeAlso + rest + `, \fBsmgctl-policy(5)\fP` + "\n")
}

func commonSections() string {
	var b strings.Builder
	b.WriteString(`.SH EXIT STATUS
.TP
.B 0
The command did what was asked; every check passed.
.TP
.B 1
A check failed (a probe below the requirement, lint errors, a broken audit
chain, a message not delivered by sendtest, a queue message that cannot be
read), or a running relay stopped on an error.
.TP
.B 2
Bad usage or bad input: an unknown command or flag, a named file that does
not exist, a policy, config or message file that does not parse. Nothing
was changed.
.SH ENVIRONMENT
.TP
.B SMGCTL_CONFIG
The relay's config file, read by every command (as \fB--config\fP).
.TP
.B SMGCTL_POLICY
The policy file (as \fB--policy\fP).
`)
	b.WriteString(".TP\n.B SMGCTL_\\fIKEY\\fP\nEvery config file key as a variable, upper case with '-' as '_', " +
		"between the config file and the flags: ")
	var envs []string
	for _, k := range relay.Keys {
		if k != "policy" {
			envs = append(envs, `\fB`+relay.EnvName(k)+`\fP`)
		}
	}
	b.WriteString(strings.Join(envs, ", ") + ".\n")
	b.WriteString(`.TP
.B SMGCTL_ACTOR
Who the policy journal and the audit log name for an edit or a queue
deletion (as \fB--actor\fP); else the OS user.
.TP
.B NO_COLOR
A non-empty value turns colour off.
.TP
.B TERM
\fBdumb\fP turns colour and cursor control off.
.SH FILES
`)
	for _, f := range [][2]string{
		{defaultConfigPath, "the relay's config file, read by every command when it exists"},
		{relay.DefaultPolicy, "the TLS policy file (smgctl-policy(5)); its journal and lock beside it"},
		{relay.DefaultSpool, "the spool: queued messages and their journal"},
		{relay.DefaultAuditLog, "the hash-chained audit log of every delivery attempt"},
	} {
		fmt.Fprintf(&b, ".TP\n.I %s\n%s\n", f[0], f[1])
	}
	return b.String()
}
