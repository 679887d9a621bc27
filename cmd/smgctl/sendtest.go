package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/sendtest"
)

func init() { subcommands = append(subcommands, newSendtestCmd) }

// sendtestResult is the stable JSON of `smgctl sendtest --output json`.
type sendtestResult struct {
	sendtest.Submission
	// Outcome: delivered, would-bounce, handed-off, bounced, dropped, deferred, or
	// timeout when the audit log said nothing in time.
	Outcome string        `json:"outcome"`
	Record  *audit.Record `json:"record,omitempty"`
}

func newSendtestCmd(g *globals) *cobra.Command {
	var to, from, via, auditLog, helo string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "sendtest --to ADDRESS",
		Short: "Send a test message through the relay and report how it left",
		Long: `Submit a test message to the relay and follow the audit log until the
relay has recorded its fate: delivered (over which TLS version, cipher and
bits, to which MX) or not, and why, in the relay's exact words, e.g.
"503 5.7.0 encryption too weak 0 less than 112".

Exit 0 when it was delivered; 1 when it was returned, deferred (the relay
keeps trying), or no outcome came within --timeout; 2 for usage errors or
when the relay did not accept the message.`,
		Example: `  smgctl sendtest --to postmaster@partner.com
  smgctl sendtest --to ceo@bank.example --via 10.0.0.5:25 --audit-log /var/log/smgctl/audit.log`,
		Args: cobra.NoArgs,
	}
	c.Flags().StringVar(&to, "to", "", "recipient (required)")
	c.Flags().StringVar(&from, "from", "", "sender, who gets the DSN if it bounces (default postmaster@<host name>)")
	c.Flags().StringVar(&via, "via", "", "the relay's SMTP address (env SMGCTL_LISTEN, default "+relay.DefaultListen+")")
	c.Flags().StringVar(&auditLog, "audit-log", "", "the relay's audit log (env SMGCTL_AUDIT_LOG, default "+relay.DefaultAuditLog+")")
	c.Flags().StringVar(&helo, "helo", "", "EHLO name (default the host name)")
	c.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for the outcome")
	out := addOutputFlag(c, "table", "json")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if to == "" {
			return &exitError{code: exitUsage, err: errors.New("sendtest: --to ADDRESS is required")}
		}
		if _, err := mail.ParseAddress("<" + to + ">"); err != nil {
			return &exitError{code: exitUsage, err: fmt.Errorf("sendtest: --to %q: not an address", to)}
		}
		if timeout <= 0 {
			return &exitError{code: exitUsage, err: fmt.Errorf("sendtest: --timeout %v: must be positive", timeout)}
		}
		host, _ := os.Hostname()
		if host == "" {
			host = "localhost"
		}
		if helo == "" {
			helo = host
		}
		if from == "" {
			from = "postmaster@" + host
		}
		if via == "" {
			via = g.settings().Listen
		}
		if auditLog == "" {
			auditLog = g.settings().AuditLog
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		sub, err := sendtest.Submit(ctx, sendtest.Message{Via: via, From: from, To: to, Helo: helo})
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		res := sendtestResult{Submission: sub, Outcome: "timeout"}
		rec, err := sendtest.Await(ctx, auditLog, sub, 0)
		switch {
		case errors.Is(err, sendtest.ErrNoOutcome):
		case err != nil:
			return &exitError{code: exitUsage, err: err}
		default:
			res.Outcome, res.Record = string(rec.Event), &rec
		}
		w := cmd.OutOrStdout()
		if out.json() {
			doc := res
			if res.Record != nil {
				rec := jsonAuditRecord(*res.Record)
				doc.Record = &rec
			}
			if err := writeJSON(w, doc); err != nil {
				return err
			}
		} else {
			renderSendtest(w, res, timeout)
		}
		if res.Record != nil && sendtest.Went(*res.Record) {
			return nil
		}
		return checkFailed()
	}
	return c
}

func renderSendtest(w interface{ Write([]byte) (int, error) }, res sendtestResult, timeout time.Duration) {
	p := newPainter(w)
	fmt.Fprintf(w, "queued as %s, Message-ID %s\n", res.QueueID, res.MessageID)
	rec := res.Record
	if rec == nil {
		fmt.Fprintf(w, "%s: no outcome for %s in the audit log within %v\n", p.bad("timeout"), res.To, timeout)
		return
	}
	tlsText := "without TLS (clear text)"
	if rec.TLS {
		tlsText = fmt.Sprintf("over %s %s (%d bits", rec.TLSVersion, rec.Cipher, rec.Bits)
		if rec.CertVerified {
			tlsText += ", certificate verified"
		}
		tlsText += ")"
	}
	where := rec.MX
	if rec.IP != "" && rec.IP != rec.MX {
		where += " [" + rec.IP + "]"
	}
	entry := "no policy entry (opportunistic TLS)"
	if rec.PolicyTarget != "" {
		entry = fmt.Sprintf("policy entry %s (line %d)", rec.PolicyTarget, rec.PolicyLine)
	}
	switch rec.Event {
	case audit.Delivered, audit.WouldBounce:
		fmt.Fprintf(w, "%s to %s via %s %s; %s\n", p.good("delivered"), rec.Recipient, where, tlsText, entry)
		if rec.Event == audit.WouldBounce {
			fmt.Fprintf(w, "%s: mode=testing; enforced, it would have been returned: %s\n", p.warn("would bounce"), rec.Diagnostic)
		}
	case audit.HandedOff:
		fmt.Fprintf(w, "%s %s to route %s via %s %s; %s\n", p.warn("handed off"), rec.Recipient, rec.Route, where, tlsText, entry)
		fmt.Fprintf(w, "no MX of the domain met the requirement: %s\n", rec.Diagnostic)
	case audit.Deferred:
		fmt.Fprintf(w, "%s for %s: %s; %s; the relay keeps trying\n", p.warn("deferred"), rec.Recipient, reasonOf(rec), entry)
	default:
		fmt.Fprintf(w, "%s for %s: %s; %s\n", p.bad(string(rec.Event)), rec.Recipient, reasonOf(rec), entry)
	}
}

// reasonOf is the exact text to quote: the relay's policy verdict, else the
// remote's reply.
func reasonOf(rec *audit.Record) string {
	r := rec.Diagnostic
	if r == "" {
		r = rec.Reply
	}
	if rec.MX != "" {
		r += " (MX " + rec.MX + ")"
	}
	return r
}
