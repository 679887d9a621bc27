package main

import (
	"fmt"
	"os"
	"strconv"
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
				doc := struct {
					Journal string          `json:"journal"`
					Records []historyRecord `json:"records"`
				}{s.JournalPath(), make([]historyRecord, 0, len(recs))}
				for _, r := range recs {
					doc.Records = append(doc.Records, newHistoryRecord(r))
				}
				return writeJSON(w, doc)
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

// historyRecord is a journal record in `policy history --output json`.
// The journal keeps options as policy-file text ("bits": "256", "min-tls"); the
// JSON has them as every other command does: snake_case keys, bits a
// number.
type historyRecord struct {
	Time   time.Time      `json:"time"`
	Actor  string         `json:"actor"`
	Action store.Action   `json:"action"`
	Target string         `json:"target"`
	Before map[string]any `json:"before"`
	After  map[string]any `json:"after"`
	SHA256 string         `json:"sha256,omitempty"`
	Prev   string         `json:"prev"`
}

func newHistoryRecord(r store.Record) historyRecord {
	return historyRecord{Time: r.Time, Actor: r.Actor, Action: r.Action, Target: r.Target,
		Before: jsonOptions(r.Before), After: jsonOptions(r.After), SHA256: r.SHA256, Prev: r.Prev}
}

// jsonOptions renders a journal's option map for JSON; nil stays null.
func jsonOptions(m map[string]string) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		var val any = v
		if k == "bits" {
			if n, err := strconv.Atoi(v); err == nil {
				val = n
			}
		}
		out[strings.ReplaceAll(k, "-", "_")] = val
	}
	return out
}
