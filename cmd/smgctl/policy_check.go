package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy"
)

// checkJSON is one recipient in `policy check --output json`.
type checkJSON struct {
	Recipient string     `json:"recipient"`
	Entry     *entryJSON `json:"entry"`    // null: no entry applies
	Judged    bool       `json:"judged"`   // TLS is judged against the entry (enforce or testing)
	Enforced  bool       `json:"enforced"` // a failed requirement stops delivery
	Summary   string     `json:"summary"`
}

// requirementSummary says in one line what a recipient's mail needs.
func requirementSummary(m policy.Match) string {
	if m.Entry == nil {
		return "no entry: opportunistic TLS"
	}
	o := m.Entry.Options
	switch o.Mode {
	case policy.ModeOff:
		return "mode=off: opportunistic TLS, exempt from broader entries"
	case policy.ModeTesting:
		return fmt.Sprintf("testing: bits>=%d min-tls=%s verify=%s; delivered anyway, would-be bounces recorded",
			o.Bits, o.Get("min-tls"), o.Get("verify"))
	}
	return fmt.Sprintf("enforce: bits>=%d min-tls=%s verify=%s, else %s",
		o.Bits, o.Get("min-tls"), o.Get("verify"), onFailSummary(o))
}

// onFailSummary says what becomes of mail no MX can take.
func onFailSummary(o policy.Options) string {
	if o.OnFail == policy.OnFailRoute {
		return fmt.Sprintf("hand off to %s over verified TLS (refused there: bounce; unreachable: defer)", o.Route.Address())
	}
	return o.Get("on-fail")
}

func newPolicyCheckCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "check ADDRESS|DOMAIN...",
		Short: "Show which entry applies to recipients, and what it requires",
		Long: `For each recipient address or domain, show the entry that applies and
its line, found in the relay's order: local@domain, the domain, each
parent domain, then the catch-all *. No entry means opportunistic TLS.`,
		Example: `  smgctl policy check ceo@sales.partner.com
  smgctl policy check partner.com other.org --output json`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: completePolicyTargets(g, false, 0),
		RunE: func(c *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			for _, a := range args {
				t, err := policy.ParseTarget(a)
				if err == nil && t.Kind == policy.KindCatchAll {
					err = fmt.Errorf("want an address or a domain")
				}
				if err != nil {
					return usageErr(fmt.Errorf("bad recipient %q: %v", a, err))
				}
			}
			f, err := readPolicy(g)
			if err != nil {
				return err
			}
			p := f.Compile()
			w := c.OutOrStdout()
			results := make([]checkJSON, 0, len(args))
			for _, a := range args {
				// The canonical form, as the relay looks recipients up:
				// "CEO"@Partner.COM. and ceo@partner.com meet one entry.
				t, _ := policy.ParseTarget(a)
				m := p.Lookup(t.Key())
				req := m.Requirement()
				r := checkJSON{Recipient: a, Judged: req.Judged(), Enforced: req.Enforced(), Summary: requirementSummary(m)}
				if m.Entry != nil {
					r.Entry = newEntryJSON(m.Entry)
				}
				results = append(results, r)
			}
			if out.json() {
				return writeJSON(w, struct {
					Policy string      `json:"policy"`
					Checks []checkJSON `json:"checks"`
				}{g.policyFile(), results})
			}
			pt := newPainter(w)
			rows := make([][]string, 0, len(results))
			for _, r := range results {
				entry, line, summary := "-", "-", r.Summary
				if r.Entry != nil {
					t, _ := policy.ParseTarget(r.Recipient)
					m := p.Lookup(t.Key())
					entry, line = m.Entry.Target.Display(), strconv.Itoa(r.Entry.Line)
				}
				switch {
				case r.Enforced:
					summary = pt.good(summary)
				case r.Judged:
					summary = pt.warn(summary)
				default:
					summary = pt.dim(summary)
				}
				rows = append(rows, []string{r.Recipient, entry, line, summary})
			}
			return renderTable(w, []string{"recipient", "entry", "line", "requirement"}, rows)
		},
	}
	out = addOutputFlag(c, "table", "json")
	return c
}
