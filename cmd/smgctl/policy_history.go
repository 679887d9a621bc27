package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/policy/store"
)

func newPolicyHistoryCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "history",
		Short: "Show the change journal: who changed what, when",
		Long: `Show <policy>.journal, oldest change first. If its hash chain is broken,
a warning goes to stderr; smgctl audit verify checks it properly.`,
		Example: `  smgctl policy history
  smgctl policy history --output json | jq '.records[] | select(.actor=="alice")'`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			s := &store.Store{Path: g.policyFile()}
			recs, err := store.ReadJournal(s.JournalPath())
			if err != nil {
				return usageErr(err)
			}
			if jf, err := os.Open(s.JournalPath()); err == nil {
				if _, verr := store.VerifyChain(jf); verr != nil {
					fmt.Fprintf(c.ErrOrStderr(), "smgctl: warning: %s: hash chain broken at %v\n", s.JournalPath(), verr)
				}
				jf.Close()
			}
			w := c.OutOrStdout()
			if out.json() {
				if recs == nil {
					recs = []store.Record{}
				}
				return writeJSON(w, struct {
					Journal string         `json:"journal"`
					Records []store.Record `json:"records"`
				}{s.JournalPath(), recs})
			}
			if len(recs) == 0 {
				fmt.Fprintf(w, "%s: no changes recorded\n", s.JournalPath())
				return nil
			}
			rows := make([][]string, 0, len(recs))
			for _, r := range recs {
				rows = append(rows, []string{
					r.Time.UTC().Format(time.RFC3339), r.Actor, string(r.Action),
					displayKey(r.Target), describeRecord(r),
				})
			}
			return renderTable(w, []string{"time", "actor", "action", "target", "change"}, rows)
		},
	}
	out = addOutputFlag(c, "table", "json")
	return c
}

func displayKey(key string) string {
	if t, err := policy.ParseTarget(key); err == nil {
		return t.Display()
	}
	return key
}

// describeRecord summarises a journal record's before and after.
func describeRecord(r store.Record) string {
	def := policy.DefaultOptions().Map()
	nonDefault := func(m map[string]string) string {
		var parts []string
		for _, k := range policy.OptionKeys() {
			if m[k] != def[k] {
				parts = append(parts, k+"="+m[k])
			}
		}
		if c := m["comment"]; c != "" {
			parts = append(parts, fmt.Sprintf("comment %q", c))
		}
		if len(parts) == 0 {
			return "defaults"
		}
		return strings.Join(parts, " ")
	}
	switch {
	case r.Before == nil && r.After != nil:
		return "new: " + nonDefault(r.After)
	case r.After == nil && r.Before != nil:
		return "was: " + nonDefault(r.Before)
	case r.Before == nil:
		return ""
	}
	var parts []string
	for _, k := range append(policy.OptionKeys(), "comment") {
		if x, y := r.Before[k], r.After[k]; x != y {
			parts = append(parts, fmt.Sprintf("%s=%s→%s", k, x, y))
		}
	}
	return strings.Join(parts, ", ")
}
