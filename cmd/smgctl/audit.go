package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/audit/logset"
	"github.com/smgctl/smgctl/pkg/audit/report"
	"github.com/smgctl/smgctl/pkg/audit/trace"
	"github.com/smgctl/smgctl/pkg/relay"
)

func init() { subcommands = append(subcommands, newAuditCmd) }

// auditSubcommands lets other files add `audit` subcommands (audit
// verify) from their own init().
var auditSubcommands []func(*globals) *cobra.Command

func newAuditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Read the relay's audit log: reports, message traces, verification, anchors",
		Long: `Answer an auditor's questions from the relay's audit log (docs/audit.md):
how mail to each domain left, how one message left, and the TLS-RPT
reports partners receive.

--audit-log defaults to the relay's audit-log setting (the config file,
SMGCTL_AUDIT_LOG, else /var/log/smgctl/audit.log); rotated files
beside it (audit.log.1, audit.log-20260101, audit.log.2.gz …) are read too,
oldest first. For a fleet of relays, give --audit-log once per relay (or
a quoted glob, '/var/log/smgctl/fleet/*/audit.log'): report and trace merge
their records, trace names the relay of each attempt, and
` + "`smgctl audit verify A B`" + ` checks each relay's chain on its own.`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(newAuditReportCmd(g), newAuditTraceCmd(g))
	for _, add := range auditSubcommands {
		c.AddCommand(add(g))
	}
	return c
}

// addAuditLogFlag adds --audit-log, which may be given once per relay
// (a fleet: docs/operations.md) or as a quoted glob; the function it
// returns gives the paths in force: the flags, else the relay's audit log
// as the config file and SMGCTL_AUDIT_LOG set it, else the default.
func addAuditLogFlag(c *cobra.Command, g *globals) func() []string {
	p := new([]string)
	c.Flags().StringArrayVar(p, "audit-log", nil, "the audit log at `PATH` and its rotated files (PATH*); repeat it, or quote a glob, for several relays (default: the relay's, from --config or SMGCTL_AUDIT_LOG, else "+relay.DefaultAuditLog+")")
	return func() []string {
		if len(*p) > 0 {
			return *p
		}
		return []string{g.settings().AuditLog}
	}
}

// auditLogs finds each relay's log set (expandLogGlobs first).
func auditLogs(paths []string) ([]logset.Log, error) {
	named, err := expandLogGlobs(paths)
	if err != nil {
		return nil, err
	}
	logs, err := logset.Logs(named)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("no audit log at %s (see --audit-log)", missingLog(named))}
	}
	if err != nil {
		return nil, &exitError{code: exitUsage, err: err}
	}
	return logs, nil
}

// expandLogGlobs expands a path with glob characters that names no file
// ('/srv/smgctl-fleet/*/audit.log', quoted so the shell leaves it alone),
// so one argument can name every relay's log. A pattern that matches
// nothing is a usage error.
func expandLogGlobs(paths []string) ([]string, error) {
	var named []string
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil || !strings.ContainsAny(p, "*?[") {
			named = append(named, p)
			continue
		}
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("%s: %w", p, err)}
		}
		if len(m) == 0 {
			return nil, &exitError{code: exitUsage, err: fmt.Errorf("no audit log matches %s", p)}
		}
		named = append(named, m...)
	}
	return named, nil
}

// missingLog names the first path without any file.
func missingLog(paths []string) string {
	for _, p := range paths {
		if _, err := logset.Files(p); errors.Is(err, fs.ErrNotExist) {
			return p
		}
	}
	return strings.Join(paths, ", ")
}

// parseWhen reads --from/--to: RFC 3339, or a date (midnight UTC).
func parseWhen(flag, s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, &exitError{code: exitUsage, err: fmt.Errorf("--%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a date (2026-01-02)", flag, s)}
}

func newAuditReportCmd(g *globals) *cobra.Command {
	var since time.Duration
	var from, to, domain string
	c := &cobra.Command{
		Use:   "report",
		Short: "Summarise how mail left, per recipient domain and per policy entry",
		Long: `Summarise the audit log per recipient domain and per policy entry:
messages, share delivered over TLS, TLS versions, weakest and strongest
cipher bits, bounces by diagnostic, deferrals, and the would-be bounces of
mode=testing entries. Then the listed domains that had failures, the
unlisted domains that went out in clear text, and the unlisted domains
whose every delivery met the default requirement (candidates to list).

--output html writes one self-contained file (inline CSS and SVG, no
script, no external reference) to attach to an audit.`,
		Example: `  smgctl audit report --since 24h
  smgctl audit report --from 2026-01-01 --to 2026-02-01 --domain partner.com
  smgctl audit report --since 30d --output html > tls-report.html
  smgctl audit report --since 24h --audit-log /srv/relay1/audit.log --audit-log /srv/relay2/audit.log`,
		Args: cobra.NoArgs,
	}
	auditLog := addAuditLogFlag(c, g)
	out := addOutputFlag(c, "table", "json", "html")
	c.Flags().Var(durationValue{&since}, "since", "only records of the last DUR (e.g. 24h, 7d)")
	c.Flags().StringVar(&from, "from", "", "only records at or after T (RFC 3339 or YYYY-MM-DD)")
	c.Flags().StringVar(&to, "to", "", "only records before T (RFC 3339 or YYYY-MM-DD)")
	c.Flags().StringVar(&domain, "domain", "", "only recipients in domain D and its subdomains")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		var opt report.Options
		now := time.Now()
		if since != 0 && (from != "" || to != "") {
			return &exitError{code: exitUsage, err: errors.New("--since and --from/--to exclude each other")}
		}
		if since < 0 {
			return &exitError{code: exitUsage, err: fmt.Errorf("--since %v: want a positive duration", since)}
		}
		if since > 0 {
			opt.From = now.Add(-since)
		}
		var err error
		if from != "" {
			if opt.From, err = parseWhen("from", from); err != nil {
				return err
			}
		}
		if to != "" {
			if opt.To, err = parseWhen("to", to); err != nil {
				return err
			}
		}
		if !opt.From.IsZero() && !opt.To.IsZero() && !opt.From.Before(opt.To) {
			return &exitError{code: exitUsage, err: errors.New("--from must be before --to")}
		}
		opt.Domain = domain
		logs, err := auditLogs(auditLog())
		if err != nil {
			return err
		}
		r, err := report.Build(cmd.Context(), logset.AllFiles(logs), opt)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		w := cmd.OutOrStdout()
		switch out.value {
		case "json":
			return writeJSON(w, jsonReport(r))
		case "html":
			return report.WriteHTML(w, r, now)
		}
		return renderReport(w, r, newPainter(w))
	}
	return c
}

func bitsText(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

func countsText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func shareText(g report.Group) string {
	if g.Delivered == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*g.TLSShare)
}

func renderReport(w io.Writer, r *report.Report, p painter) error {
	span := "-"
	if !r.First.IsZero() {
		span = r.First.UTC().Format(time.RFC3339) + " .. " + r.Last.UTC().Format(time.RFC3339)
	}
	// Name what was read: an empty report must say where it looked.
	names := r.Files
	if len(names) > 3 {
		names = append(slices.Clip(names[:3]), fmt.Sprintf("and %d more", len(r.Files)-3))
	}
	fmt.Fprintf(w, "%d records in %d file(s) (%s), %s\n", r.Records, len(r.Files), strings.Join(names, ", "), span)
	if r.Unreadable > 0 {
		fmt.Fprintln(w, p.warn(fmt.Sprintf("%d unreadable line(s) skipped: %s", r.Unreadable, strings.Join(r.UnreadableAt, " "))))
	}
	t := r.Total
	// Every final outcome, so the parts add up to messages; would-bounces
	// were delivered and are a part of delivered; deferrals are attempts.
	fmt.Fprintf(w, "messages %d: delivered %d (%s over TLS, %d would-bounce), handed off %d, bounced %d, dropped %d, removed by an administrator %d; deferrals %d\n\n",
		t.Messages, t.Delivered, shareText(t), t.WouldBounce, t.HandedOff, t.Bounced, t.Dropped, t.RemovedByAdmin, t.Deferrals)

	fmt.Fprintln(w, "Recipient domains")
	var rows [][]string
	for _, g := range r.Domains {
		entry := g.Entry
		if entry == "" {
			entry = "-"
		}
		share := shareText(g)
		if g.Delivered > 0 && g.DeliveredTLS < g.Delivered {
			share = p.bad(share)
		}
		rows = append(rows, []string{g.Name, entry, strconv.Itoa(g.Messages), share, countsText(g.Versions),
			bitsText(g.WeakestBits), bitsText(g.StrongestBits), strconv.Itoa(g.Bounced), strconv.Itoa(g.Deferrals), strconv.Itoa(g.WouldBounce)})
	}
	if err := renderTable(w, []string{"domain", "entry", "messages", "tls", "versions", "weakest", "strongest", "bounced", "deferrals", "would-bounce"}, rows); err != nil {
		return err
	}

	fmt.Fprintln(w, "\nPolicy entries")
	rows = nil
	for _, g := range r.Entries {
		line := "-"
		if g.Line > 0 {
			line = strconv.Itoa(g.Line)
		}
		mode := "-"
		if g.Requirement != nil {
			mode = g.Requirement.Mode
		}
		rows = append(rows, []string{g.Name, line, mode, strconv.Itoa(g.Messages), shareText(g),
			bitsText(g.WeakestBits), bitsText(g.StrongestBits), countsText(g.Bounces), strconv.Itoa(g.Deferrals), countsText(g.WouldBounces)})
	}
	if err := renderTable(w, []string{"entry", "line", "mode", "messages", "tls", "weakest", "strongest", "bounces", "deferrals", "would-bounce"}, rows); err != nil {
		return err
	}
	list := func(title string, names []string, paint func(string) string) {
		fmt.Fprintf(w, "\n%s: ", title)
		if len(names) == 0 {
			fmt.Fprintln(w, "none")
			return
		}
		fmt.Fprintln(w, paint(strings.Join(names, " ")))
	}
	list("Listed domains with failures", r.ListedWithFailures, p.bad)
	list("Unlisted domains sent in clear text", r.Cleartext, p.bad)
	list("Candidates to list (every delivery met 112 bits)", r.Candidates, p.good)
	return nil
}

func newAuditTraceCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "trace QUEUE-ID|MESSAGE-ID",
		Short: "Show every attempt and the final outcome of one message",
		Long: `Find one message in the audit log by its queue ID (from "250 2.0.0 Ok:
queued as ID") or its Message-ID, and show every attempt for every
recipient — MX, IP, TLS version, suite, bits, verified, the policy entry
and line, the reply — and each recipient's final outcome. Exit 1 when the
message is not in the log.`,
		Example: `  smgctl audit trace 0PGL79KC2VKGDR15
  smgctl audit trace '<m1@corp.example>' --output json`,
		Args: cobra.ExactArgs(1),
	}
	auditLog := addAuditLogFlag(c, g)
	out := addOutputFlag(c, "table", "json")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := out.check(); err != nil {
			return err
		}
		logs, err := auditLogs(auditLog())
		if err != nil {
			return err
		}
		tr, err := trace.FindLogs(cmd.Context(), logs, args[0])
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		if tr == nil {
			var paths []string
			for _, l := range logs {
				paths = append(paths, l.Path)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "smgctl: no record of %s in %s\n", args[0], strings.Join(paths, ", "))
			return checkFailed()
		}
		w := cmd.OutOrStdout()
		if out.json() {
			return writeJSON(w, jsonTrace(tr))
		}
		return renderTrace(w, tr, newPainter(w))
	}
	return c
}

func renderTrace(w io.Writer, tr *trace.Trace, p painter) error {
	fmt.Fprintf(w, "queue ID %s", strings.Join(tr.QueueIDs, ", "))
	if len(tr.MessageIDs) > 0 {
		fmt.Fprintf(w, ", Message-ID %s", strings.Join(tr.MessageIDs, ", "))
	}
	fmt.Fprintln(w)
	for _, r := range tr.Recipients {
		final := r.Final
		switch final {
		case "delivered":
			final = p.good(final)
		case "bounced", "dropped":
			final = p.bad(final)
		default:
			final = p.warn(final)
		}
		if r.By != "" { // deleted or returned by an administrator
			final += " by " + r.By
		}
		fmt.Fprintf(w, "\n%s: %s\n", r.Address, final)
		// With several relays' logs, each attempt names its relay.
		header := []string{"attempt", "time", "event", "mx", "ip", "tls", "bits", "verified", "entry", "reply"}
		fleet := slices.ContainsFunc(r.Attempts, func(a trace.Attempt) bool { return a.Relay != "" })
		if fleet {
			header = append([]string{"relay"}, header...)
		}
		var rows [][]string
		for _, a := range r.Attempts {
			tlsText := "none"
			if a.TLS {
				tlsText = a.TLSVersion + " " + a.Cipher
			}
			entry := "-"
			if a.PolicyTarget != "" {
				entry = fmt.Sprintf("%s (line %d)", a.PolicyTarget, a.PolicyLine)
			}
			reply := a.Reply
			if a.Diagnostic != "" && a.Diagnostic != a.Reply {
				reply = strings.TrimSpace(reply + " [" + a.Diagnostic + "]")
			}
			mx := orDash(a.MX)
			if a.Route != "" {
				mx = "route:" + a.Route // the hand-off route, not an MX
			}
			row := []string{strconv.Itoa(a.Attempt), a.Time.UTC().Format(time.RFC3339), string(a.Event),
				mx, orDash(a.IP), tlsText, strconv.Itoa(a.Bits), strconv.FormatBool(a.CertVerified), entry, orDash(reply)}
			if fleet {
				row = append([]string{a.Relay}, row...)
			}
			rows = append(rows, row)
		}
		if err := renderTable(w, header, rows); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
