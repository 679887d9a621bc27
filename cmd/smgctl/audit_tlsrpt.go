package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/audit/tlsrpt"
)

func init() { auditSubcommands = append(auditSubcommands, newAuditTLSRPTCmd) }

func newAuditTLSRPTCmd(g *globals) *cobra.Command {
	var date, domain string
	c := &cobra.Command{
		Use:   "tlsrpt",
		Short: "Build the day's TLS-RPT reports (RFC 8460) from the audit log",
		Long: `Build the SMTP TLS Reporting aggregate reports (RFC 8460) of one UTC day
from the audit log: one report per recipient domain, with the policy the
sessions were held to (sts, tlsa or no-policy-found) and its text, the
successful and failed session counts, and the failures by result type,
MX host and address. The relay sends these reports itself each day to the
domains that ask for them (docs/tlsrpt.md); this command shows what it
sends, or builds them for an auditor.

A session is one connection: the audit records of one queue ID, attempt,
MX host and address count once, whatever the number of recipients.

--output json writes {"schema_version": 1, "date": …, "reports": [...]}, each
report exactly the
RFC 8460 document the relay sends.
organization-name and contact-info come from the tlsrpt-organization and
tlsrpt-contact settings (default: the host name, postmaster@ it).`,
		Example: `  smgctl audit tlsrpt
  smgctl audit tlsrpt --date 2026-01-02 --domain partner.com --output json`,
		Args: cobra.NoArgs,
	}
	auditLog := addAuditLogFlag(c, g)
	out := addOutputFlag(c, "table", "json")
	c.Flags().StringVar(&date, "date", "", "the UTC day YYYY-MM-DD (default: yesterday)")
	c.Flags().StringVar(&domain, "domain", "", "only the report on domain D")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		day := time.Now().UTC().Add(-24 * time.Hour)
		if date != "" {
			var err error
			if day, err = time.Parse("2006-01-02", date); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("--date %q: want YYYY-MM-DD", date)}
			}
		}
		logs, err := auditLogs(auditLog())
		if err != nil {
			return err
		}
		cfg := g.settings()
		submitter, org, contact := tlsrpt.Submitter(cfg.Hostname, cfg.TLSRPTOrganization, cfg.TLSRPTContact)
		reps, err := tlsrpt.Build(cmd.Context(), logs, tlsrpt.Options{Day: day, Domain: domain,
			Organization: org, Contact: contact, Submitter: submitter})
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		w := cmd.OutOrStdout()
		if out.json() {
			if reps == nil {
				reps = []tlsrpt.Report{}
			}
			return writeJSON(w, tlsrptJSON{Date: tlsrpt.DayStart(day).Format(time.DateOnly), Reports: reps})
		}
		return renderTLSRPT(w, reps, tlsrpt.DayStart(day))
	}
	return c
}

// tlsrptJSON is audit tlsrpt's JSON document (docs/schemas/audit-tlsrpt).
type tlsrptJSON struct {
	Date    string          `json:"date"`
	Reports []tlsrpt.Report `json:"reports"`
}

func renderTLSRPT(w io.Writer, reps []tlsrpt.Report, day time.Time) error {
	if len(reps) == 0 {
		fmt.Fprintf(w, "no TLS sessions on %s\n", day.Format("2006-01-02"))
		return nil
	}
	for i, r := range reps {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s  report-id %s\n", r.Policies[0].Policy.Domain, r.ReportID)
		var rows [][]string
		for _, p := range r.Policies {
			mx := strings.Join(p.Policy.MXHosts, " ")
			rows = append(rows, []string{p.Policy.Type, orDash(mx), strconv.Itoa(p.Summary.Successful), strconv.Itoa(p.Summary.Failed), "", "", ""})
			for _, d := range p.FailureDetails {
				rows = append(rows, []string{"", "", "", "", d.ResultType, orDash(d.ReceivingMXHostname) + " " + orDash(d.ReceivingIP), strconv.Itoa(d.FailedSessionCount)})
			}
		}
		if err := renderTable(w, []string{"policy", "mx", "successful", "failed", "result", "receiving mx", "sessions"}, rows); err != nil {
			return err
		}
	}
	return nil
}
