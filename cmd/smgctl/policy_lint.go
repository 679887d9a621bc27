package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy/lint"
)

func newPolicyLintCmd(g *globals) *cobra.Command {
	var out *outputFlag
	var strict bool
	c := &cobra.Command{
		Use:   "lint",
		Short: "Check the policy file: errors exit 1, warnings too with --strict",
		Long: `Check the policy file as the relay would read it, and warn about entries
that do nothing or more than intended:

  parse            error: the file does not parse; the relay would refuse it
  redundant        a broader entry with the same options already covers it
  exempts-nothing  mode=off, but no broader entry applies to exempt from
  catch-all        * requires TLS with every recipient domain
  public-suffix    an entry for a top-level domain or registry suffix
  weak-bits        bits below RFC 9325's floor of 112

Exit 0 when clean or only warnings, 1 on errors (or on warnings with
--strict), 2 when the file cannot be read.`,
		Example: `  smgctl policy lint
  smgctl --policy policy.conf policy lint --strict   # in CI`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if out.value == "text" {
				// The name before --output table|json; kept so that
				// existing scripts keep working, not advertised.
				out.value = "table"
			}
			if err := out.check(); err != nil {
				return err
			}
			path := g.policyFile()
			data, err := os.ReadFile(path)
			if err != nil {
				return usageErr(err)
			}
			findings := lint.Lint(path, data)
			errs, warns := 0, 0
			for _, f := range findings {
				if f.Severity == lint.Error {
					errs++
				} else {
					warns++
				}
			}
			w := c.OutOrStdout()
			if out.json() {
				if findings == nil {
					findings = []lint.Finding{}
				}
				err = writeJSON(w, struct {
					Policy   string         `json:"policy"`
					Errors   int            `json:"errors"`
					Warnings int            `json:"warnings"`
					Findings []lint.Finding `json:"findings"`
				}{path, errs, warns, findings})
			} else {
				p := newPainter(w)
				for _, f := range findings {
					pos := fmt.Sprintf("%s:%d", path, f.Line)
					if f.Col > 0 {
						pos += fmt.Sprintf(":%d", f.Col)
					}
					sev := p.warn(string(f.Severity))
					if f.Severity == lint.Error {
						sev = p.bad(string(f.Severity))
					}
					fmt.Fprintf(w, "%s: %s: %s [%s]\n", pos, sev, f.Message, f.Check)
				}
				fmt.Fprintf(w, "%s: %d error(s), %d warning(s)\n", path, errs, warns)
			}
			if err != nil {
				return err
			}
			if lint.Failed(findings, strict) {
				return checkFailed()
			}
			return nil
		},
	}
	out = addOutputFlag(c, "table", "json")
	c.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	return c
}
