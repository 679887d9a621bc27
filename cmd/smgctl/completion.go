package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/queuectl"
)

// Shell completion of the values an operator would otherwise copy from
// `policy list` or `queue list`: cobra's hidden __complete command calls
// these with the flags (--policy, --spool, --config) already parsed.

// completePolicyTargets completes the targets of the policy file in force
// (--policy, SMGCTL_POLICY, the config file, the default), each described
// by its line and options. catchAll says whether * is a valid argument.
func completePolicyTargets(g *globals, catchAll bool, maxArgs int) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		// PersistentPreRunE does not run for completions; the policy in
		// force may come from the config file.
		_ = g.loadSettings(c)
		f, err := policy.ReadFile(g.policyFile())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, e := range f.Entries() {
			key := e.Target.Key()
			if !strings.HasPrefix(key, toComplete) || slices.Contains(args, key) ||
				!catchAll && e.Target.Kind == policy.KindCatchAll {
				continue
			}
			desc := e.Options.String()
			if desc == "" {
				desc = "default options"
			}
			out = append(out, cobra.CompletionWithDesc(key, fmt.Sprintf("line %d: %s", e.Line, desc)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeQueueIDs completes the IDs of the messages in the spool, each
// described by its sender and first recipient.
func completeQueueIDs(g *globals, open func() (*queuectl.Queue, error), maxArgs int) cobra.CompletionFunc {
	return func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if maxArgs > 0 && len(args) >= maxArgs {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		_ = g.loadSettings(c) // the spool may come from the config file
		q, err := open()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer q.Close()
		msgs, err := q.List()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, m := range msgs {
			if !strings.HasPrefix(m.ID, toComplete) || slices.Contains(args, m.ID) {
				continue
			}
			out = append(out, cobra.CompletionWithDesc(m.ID, queueIDDescription(m)))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

func queueIDDescription(m queuectl.Message) string {
	if m.Error != "" {
		return "unreadable: " + m.Error
	}
	from := m.From
	if from == "" {
		from = "<>"
	}
	d := from
	if len(m.Recipients) > 0 {
		d += " → " + m.Recipients[0].Address
		if n := len(m.Recipients) - 1; n > 0 {
			d += fmt.Sprintf(" (+%d)", n)
		}
	}
	if m.Held {
		d += ", held"
	}
	return d
}
