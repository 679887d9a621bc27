package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/relay"
	"github.com/smgctl/smgctl/pkg/relay/queuectl"
	"github.com/smgctl/smgctl/pkg/relay/spool"
)

func init() { subcommands = append(subcommands, newQueueCmd) }

func newQueueCmd(g *globals) *cobra.Command {
	var spoolDir string
	c := &cobra.Command{
		Use:   "queue",
		Short: "List, show, retry, hold, release, delete or return queued messages",
		Long: `Look at and act on the relay's queue, like mailq and postsuper. Safe while
the relay runs: every change is made under the message's lock, which the
relay holds while it delivers the message, and a running relay is woken at
once (through the spool's "wake" FIFO) to act on it.`,
		Example: `  smgctl queue list
  smgctl queue show 0CT4H1P9VGA2K3QF
  smgctl queue retry --all
  smgctl queue delete 0CT4H1P9VGA2K3QF
  smgctl queue bounce 0CT4H1P9VGA2K3QF`,
		Args: cobra.NoArgs,
	}
	c.PersistentFlags().StringVar(&spoolDir, "spool", "", "spool directory (default: the relay's, from --config or SMGCTL_SPOOL, else "+relay.DefaultSpool+")")
	open := func() (*queuectl.Queue, error) {
		dir := spoolDir
		if dir == "" {
			dir = g.settings().Spool // config file, then SMGCTL_SPOOL
		}
		q, err := queuectl.Open(dir, nil)
		if err != nil {
			return nil, &exitError{code: exitUsage, err: err}
		}
		return q, nil
	}
	c.AddCommand(newQueueListCmd(open), newQueueShowCmd(open))
	for _, a := range []queueAction{
		{"retry", "Deliver messages now, whatever their retry time (postqueue -i)", "retried",
			func(q *queuectl.Queue, ctx context.Context, ids []string) []queuectl.Result { return q.Retry(ctx, ids) }},
		{"hold", "Keep messages from delivery, delayed DSNs and expiry until released (postsuper -h)", "held",
			func(q *queuectl.Queue, ctx context.Context, ids []string) []queuectl.Result { return q.Hold(ctx, ids) }},
		{"release", "Release held messages and deliver them now (postsuper -H)", "released",
			func(q *queuectl.Queue, ctx context.Context, ids []string) []queuectl.Result {
				return q.Release(ctx, ids)
			}},
		{"delete", "Remove messages from the queue without notice (postsuper -d)", "deleted",
			func(q *queuectl.Queue, ctx context.Context, ids []string) []queuectl.Result {
				return q.Delete(ctx, ids)
			}},
		{"bounce", "Return messages to their senders now with a DSN", "returned",
			func(q *queuectl.Queue, ctx context.Context, ids []string) []queuectl.Result {
				return q.Bounce(ctx, ids)
			}},
	} {
		c.AddCommand(newQueueActionCmd(open, a))
	}
	for _, sub := range c.Commands() {
		if sub.Name() != "list" {
			maxArgs := 0
			if sub.Name() == "show" {
				maxArgs = 1
			}
			sub.ValidArgsFunction = completeQueueIDs(g, open, maxArgs)
		}
	}
	return c
}

func newQueueListCmd(open func() (*queuectl.Queue, error)) *cobra.Command {
	c := &cobra.Command{
		Use:   "list",
		Short: "List queued messages (mailq)",
		Example: `  smgctl queue list
  smgctl queue list --spool /var/spool/smgctl --output json`,
		Args: cobra.NoArgs,
	}
	out := addOutputFlag(c, "table", "json")
	c.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		q, err := open()
		if err != nil {
			return err
		}
		defer q.Close()
		msgs, err := q.List()
		if err != nil {
			return err
		}
		// What could not be read or was lost is said on stderr (and,
		// for messages, in the JSON as "error"), and exits 1: the rest
		// is still listed.
		warnings, warned := warnQueueProblems(cmd.ErrOrStderr(), q, msgs)
		w := cmd.OutOrStdout()
		if out.json() {
			// An unreadable message is {"id", "error"}, not a message
			// with zero values.
			type unreadable struct {
				ID    string `json:"id"`
				Error string `json:"error"`
			}
			doc := struct {
				Messages []any          `json:"messages"`
				Warnings []queueWarning `json:"warnings"`
			}{make([]any, 0, len(msgs)), warnings}
			for _, m := range msgs {
				if m.Error != "" {
					doc.Messages = append(doc.Messages, unreadable{m.ID, m.Error})
				} else {
					doc.Messages = append(doc.Messages, m)
				}
			}
			if err := writeJSON(w, doc); err != nil {
				return err
			}
			return warned
		}
		good := slices.DeleteFunc(slices.Clone(msgs), func(m queuectl.Message) bool { return m.Error != "" })
		if len(good) == 0 {
			fmt.Fprintln(w, "Mail queue is empty")
			return warned
		}
		p := newPainter(w)
		var rows [][]string
		now := time.Now()
		for _, m := range good {
			from := m.From
			if from == "" {
				from = "<> (DSN of " + m.DSNOf + ")"
			}
			for i, r := range m.Recipients {
				state := stateText(p, r, now)
				if m.Held && r.State == "pending" {
					state = p.warn("held")
				}
				row := []string{"", "", "", "", r.Address, state, trimLine(r.LastReply)}
				if i == 0 {
					row[0], row[1], row[2], row[3] = m.ID, m.Arrival.Local().Format("2006-01-02 15:04:05"),
						strconv.FormatInt(m.Size, 10), from
				}
				rows = append(rows, row)
			}
		}
		if err := renderTable(w, []string{"Queue ID", "Arrival", "Size", "Sender", "Recipient", "State", "Last reply"}, rows); err != nil {
			return err
		}
		fmt.Fprintf(w, "%d message(s)\n", len(good))
		return warned
	}
	return c
}

// warnQueueProblems writes a warning for each message whose envelope
// cannot be read and each damaged journal segment kept in corrupt/, and
// returns them (for the JSON) and the exit-1 error when there was any.
func warnQueueProblems(errw io.Writer, q *queuectl.Queue, msgs []queuectl.Message) ([]queueWarning, error) {
	warnings := []queueWarning{}
	warn := func(w queueWarning) {
		fmt.Fprintf(errw, "smgctl: warning: %s\n", w.Message)
		warnings = append(warnings, w)
	}
	for _, m := range msgs {
		if m.Error != "" {
			warn(queueWarning{Kind: "unreadable_message", ID: m.ID,
				Message: fmt.Sprintf("%s: cannot read this message, left out: %s", m.ID, m.Error)})
		}
	}
	damage, err := q.Damage()
	if err != nil {
		warn(queueWarning{Kind: "journal_unchecked", Message: fmt.Sprintf("cannot look for damaged journal segments: %v", err)})
	}
	for _, d := range damage {
		warn(queueWarning{Kind: "damaged_journal", Segment: d.Segment, Reason: d.Reason,
			RecordsRecovered: &d.RecordsRecovered, BytesUnaccounted: &d.BytesUnaccounted,
			Message: fmt.Sprintf("damaged journal segment %s: %s; %d record(s) recovered, %d acknowledged bytes unaccounted for: accepted mail may be lost (remove the file once dealt with)",
				d.Segment, d.Reason, d.RecordsRecovered, d.BytesUnaccounted)})
	}
	if len(warnings) > 0 {
		return warnings, checkFailed()
	}
	return warnings, nil
}

// queueWarning is one problem `queue list` found, said on stderr and in
// its JSON "warnings" (docs/schemas/queue-list.schema.json).
type queueWarning struct {
	Kind             string `json:"kind"` // unreadable_message, damaged_journal, journal_unchecked
	Message          string `json:"message"`
	ID               string `json:"id,omitempty"`
	Segment          string `json:"segment,omitempty"`
	Reason           string `json:"reason,omitempty"`
	RecordsRecovered *int   `json:"records_recovered,omitempty"`
	BytesUnaccounted *int64 `json:"bytes_unaccounted,omitempty"`
}

func stateText(p painter, r queuectl.Recipient, now time.Time) string {
	switch r.State {
	case "pending":
		if r.NextAttempt == nil || !r.NextAttempt.After(now) {
			return p.warn("due now")
		}
		return p.warn("retry in " + r.NextAttempt.Sub(now).Round(time.Second).String())
	case "delivered":
		return p.good(r.State)
	default:
		return p.bad(r.State)
	}
}

func newQueueShowCmd(open func() (*queuectl.Queue, error)) *cobra.Command {
	var withBody bool
	c := &cobra.Command{
		Use:   "show QUEUE-ID",
		Short: "Show one queued message's envelope and delivery state (postcat -q)",
		Example: `  smgctl queue show 0CT4H1P9VGA2K3QF
  smgctl queue show 0CT4H1P9VGA2K3QF --body`,
		Args: cobra.ExactArgs(1),
	}
	c.Flags().BoolVar(&withBody, "body", false, "also print the message as stored")
	out := addOutputFlag(c, "table", "json")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := out.check(); err != nil {
			return err
		}
		q, err := open()
		if err != nil {
			return err
		}
		defer q.Close()
		var body strings.Builder
		var bw io.Writer
		if withBody {
			bw = &body
		}
		m, err := q.Show(args[0], bw)
		switch {
		case errors.Is(err, queuectl.ErrNotQueued) || err != nil && !spool.ValidID(args[0]):
			return &exitError{code: exitUsage, err: err} // bad input
		case err != nil: // queued, but cannot be read
			return &exitError{code: exitFailed, err: err}
		}
		w := cmd.OutOrStdout()
		if out.json() {
			type shown struct {
				queuectl.Message
				Body string `json:"body,omitempty"`
			}
			return writeJSON(w, shown{m, body.String()})
		}
		p := newPainter(w)
		from := m.From
		if from == "" {
			from = "<>"
		}
		fmt.Fprintf(w, "Queue ID:    %s\nArrival:     %s\nSize:        %d\nSender:      %s\n", m.ID,
			m.Arrival.Local().Format(time.RFC3339), m.Size, from)
		if m.MessageID != "" {
			fmt.Fprintf(w, "Message-ID:  %s\n", m.MessageID)
		}
		if m.DSNOf != "" {
			fmt.Fprintf(w, "DSN of:      %s\n", m.DSNOf)
		}
		if m.DelayNotified {
			fmt.Fprintln(w, "Delay DSN:   sent")
		}
		now := time.Now()
		for _, r := range m.Recipients {
			fmt.Fprintf(w, "Recipient:   %s  %s  attempts %d\n", r.Address, stateText(p, r, now), r.Attempts)
			if r.LastReply != "" {
				fmt.Fprintf(w, "             %s\n", r.LastReply)
			}
		}
		if withBody {
			fmt.Fprintf(w, "\n%s", body.String())
		}
		return nil
	}
	return c
}

type queueAction struct {
	name, short, done string
	run               func(*queuectl.Queue, context.Context, []string) []queuectl.Result
}

func newQueueActionCmd(open func() (*queuectl.Queue, error), a queueAction) *cobra.Command {
	var all bool
	var wait time.Duration
	var hostname, actor string
	c := &cobra.Command{
		Use:   a.name + " QUEUE-ID... | - | --all",
		Short: a.short,
		Long: a.short + `.

QUEUE-ID "-" reads the queue IDs from standard input, one per line (the
first word of each line; blank lines and # comments skipped), as
postsuper -d - does.`,
		Example: "  smgctl queue " + a.name + " 0CT4H1P9VGA2K3QF 0CT4H1PA2N6M0S1B\n" +
			"  smgctl queue " + a.name + " --all\n" +
			"  smgctl queue list -o json | jq -r '.messages[] | select(.from == \"spam@example.com\") | .id' | smgctl queue " + a.name + " -",
	}
	c.Flags().BoolVar(&all, "all", false, "every queued message")
	c.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to wait for a message the relay is delivering right now")
	if a.name == "bounce" {
		c.Flags().StringVar(&hostname, "hostname", "", "the relay's name in the DSN (env SMGCTL_HOSTNAME, default the host name)")
	}
	if a.name == "delete" || a.name == "bounce" {
		// The audit log names who removed a message (docs/audit.md).
		c.Flags().StringVar(&actor, "actor", "", "who the audit log names for this action (env SMGCTL_ACTOR, default the OS user)")
	}
	out := addOutputFlag(c, "table", "json")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := out.check(); err != nil {
			return err
		}
		if all == (len(args) > 0) {
			return &exitError{code: exitUsage, err: fmt.Errorf("queue %s: give queue IDs or --all, not both or neither", a.name)}
		}
		q, err := open()
		if err != nil {
			return err
		}
		defer q.Close()
		if actor != "" {
			q.Actor = actor
		}
		if a.name == "bounce" {
			q.Hostname = hostname
			if q.Hostname == "" {
				q.Hostname = os.Getenv("SMGCTL_HOSTNAME")
			}
			if q.Hostname == "" {
				q.Hostname, _ = os.Hostname()
			}
		}
		ids := args
		if len(args) == 1 && args[0] == "-" {
			if ids, err = readQueueIDs(cmd.InOrStdin()); err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("queue IDs from standard input: %v", err)}
			}
			if len(ids) == 0 {
				return &exitError{code: exitUsage, err: fmt.Errorf("queue %s -: no queue IDs on standard input", a.name)}
			}
		}
		if all {
			msgs, err := q.List()
			if err != nil {
				return err
			}
			// A message that cannot be read is tried too: it fails on
			// its own (said on stderr, exit 1), the rest are done.
			ids = ids[:0]
			for _, m := range msgs {
				ids = append(ids, m.ID)
			}
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), wait)
		defer cancel()
		results := a.run(q, ctx, ids)
		failed, badInput := false, false
		for _, r := range results {
			failed = failed || !r.Done
			badInput = badInput || r.BadInput
		}
		w := cmd.OutOrStdout()
		if out.json() {
			if results == nil {
				results = []queuectl.Result{}
			}
			if err := writeJSON(w, struct {
				Results []queuectl.Result `json:"results"`
			}{results}); err != nil {
				return err
			}
		} else {
			p := newPainter(w)
			for _, r := range results {
				switch {
				case !r.Done:
					fmt.Fprintf(cmd.ErrOrStderr(), "smgctl: %s: %s\n", r.ID, r.Error)
				case r.DSN != "":
					fmt.Fprintf(w, "%s: %s (%d recipient(s)), DSN queued as %s\n", r.ID, p.good(a.done), len(r.Recipients), r.DSN)
				default:
					fmt.Fprintf(w, "%s: %s (%d recipient(s))\n", r.ID, p.good(a.done), len(r.Recipients))
				}
			}
		}
		switch {
		case badInput: // an ID that is not queued: the caller's input
			return &exitError{code: exitUsage}
		case failed: // e.g. the relay held the message past --wait
			return checkFailed()
		}
		return nil
	}
	return c
}

// readQueueIDs reads one queue ID per line: the first word, so that a
// list with more columns works too; blank lines and # comments are
// skipped.
func readQueueIDs(r io.Reader) ([]string, error) {
	var ids []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if f := strings.Fields(line); len(f) > 0 {
			ids = append(ids, f[0])
		}
	}
	return ids, sc.Err()
}
