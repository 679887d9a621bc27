package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/probe/hops"
)

// probeSubcommands are added under "smgctl probe" by the probe command,
// so a subcommand's file is the only one it touches.
var probeSubcommands []func(*globals) *cobra.Command

func init() { probeSubcommands = append(probeSubcommands, newProbeHopsCmd) }

type probeHopsFlags struct {
	requireBits int
	output      *outputFlag
}

func newProbeHopsCmd(g *globals) *cobra.Command {
	f := &probeHopsFlags{}
	c := &cobra.Command{
		Use:   "hops [MESSAGE.eml|-]",
		Short: "Grade every Received: hop of a message for TLS",
		Long: `hops reads a message's Received: headers (Postfix, Exim, Sendmail,
Microsoft 365/Exchange, Gmail) and grades each hop the message took — TLS or
not, version, cipher, bits — with the relay's own evaluation, against
--require-bits or the default 112 bits. Hand-offs inside one server (local,
LMTP, mapi, a server passing to itself) are shown but not graded.

Received: headers below the first one written by the recipient's own servers
can be forged by anyone on the path; the report says where that line is.

Without a file (or with -) the message is read from standard input, unless
that is a terminal.

Exit status: 0 every hop passes, 1 any hop went without TLS or below the
requirement, 2 bad usage or input. The JSON output is documented in
docs/probe-deep-hops.md.`,
		Example: `  smgctl probe hops reply-from-partner.eml
  smgctl probe hops --require-bits 256 --output json message.eml
  smgctl probe hops < message.eml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			path := "-"
			if len(args) == 1 {
				path = args[0]
			} else if readerIsTerminal(g.stdin) {
				// Nothing piped in: waiting for the user to type a
				// message is never what was meant.
				return &exitError{code: exitUsage, err: errors.New("no message: name a file, or pipe one in: smgctl probe hops < message.eml")}
			}
			return runProbeHops(c, g, f, path)
		},
	}
	c.Flags().IntVar(&f.requireBits, "require-bits", policy.DefaultBits, "minimum cipher bits every hop must have had (1-256)")
	f.output = addOutputFlag(c, "table", "json")
	return c
}

// readerIsTerminal reports whether r is a terminal.
func readerIsTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func runProbeHops(c *cobra.Command, g *globals, f *probeHopsFlags, path string) error {
	if err := f.output.check(); err != nil {
		return err
	}
	if f.requireBits < 1 || f.requireBits > 256 {
		return &exitError{code: exitUsage, err: fmt.Errorf("--require-bits %d: want a whole number from 1 to 256", f.requireBits)}
	}
	req := policy.DefaultRequirement()
	req.Bits = f.requireBits

	var in io.Reader
	name := path
	if path == "-" {
		in, name = g.stdin, "standard input"
	} else {
		file, err := os.Open(path)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		defer file.Close()
		in = file
	}
	tr, err := hops.Analyze(in, req)
	if err != nil {
		return &exitError{code: exitUsage, err: fmt.Errorf("%s: %w", name, err)}
	}
	out := c.OutOrStdout()
	if f.output.json() {
		err = writeJSON(out, hopsJSON(name, tr))
	} else {
		err = renderHops(out, tr)
	}
	if err != nil {
		return err
	}
	if len(tr.Failed()) > 0 {
		return checkFailed()
	}
	return nil
}

// hopsReport is the JSON document of "probe hops" (docs/probe-deep-hops.md).
type hopsReport struct {
	Message         string     `json:"message"`
	RecipientDomain string     `json:"recipient_domain,omitempty"`
	Requirement     hopsReq    `json:"requirement"`
	Passed          bool       `json:"passed"`
	FailedHops      []int      `json:"failed_hops"`
	FirstTrusted    int        `json:"first_trusted"`
	Warning         string     `json:"warning"`
	SkippedLines    int        `json:"skipped_lines,omitempty"`
	Hops            []hops.Hop `json:"hops"`
}

type hopsReq struct {
	Bits   int    `json:"bits"`
	MinTLS string `json:"min_tls"`
}

func hopsJSON(name string, tr *hops.Trace) hopsReport {
	r := hopsReport{
		Message:         name,
		RecipientDomain: tr.RecipientDomain,
		Requirement:     hopsReq{tr.Requirement.Bits, policy.VersionNumber(policy.VersionName(tr.Requirement.MinTLS))},
		FailedHops:      []int{},
		FirstTrusted:    tr.FirstTrusted,
		Warning:         tr.ForgeryWarning(),
		SkippedLines:    tr.Skipped,
		Hops:            tr.Hops,
	}
	for _, h := range tr.Failed() {
		r.FailedHops = append(r.FailedHops, h.Index)
	}
	r.Passed = len(r.FailedHops) == 0
	return r
}

func renderHops(w io.Writer, tr *hops.Trace) error {
	pt := newPainter(w)
	to := tr.RecipientDomain
	if to == "" {
		to = "an unknown recipient domain"
	}
	fmt.Fprintf(w, "Message to %s: %d hops, requirement %d bits (oldest hop first)\n\n", to, len(tr.Hops), tr.Requirement.Bits)
	var rows [][]string
	for _, h := range tr.Hops {
		from := h.From
		if h.FromIP != "" && bracketless(h.From) != h.FromIP {
			from = strings.TrimSpace(from + " [" + h.FromIP + "]")
		}
		tlsCol, cipher, bits := "no", "-", "0"
		if h.TLS {
			tlsCol = "yes"
			if h.TLSVersion != 0 {
				tlsCol = policy.VersionName(h.TLSVersion)
			}
			cipher = h.Cipher
			if cipher == "" {
				cipher = "(not recorded)"
			}
			bits = "?"
			if h.Bits >= 0 {
				bits = strconv.Itoa(h.Bits)
			}
		}
		trusted := "no"
		if h.Trusted {
			trusted = "yes"
		}
		rows = append(rows, []string{strconv.Itoa(h.Index), from, h.By, h.With, tlsCol, cipher, bits, trusted, gradeText(pt, h)})
	}
	if err := renderTable(w, []string{"hop", "from", "by", "with", "tls", "cipher", "bits", "trusted", "grade"}, rows); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, h := range tr.Hops {
		if n := h.Note(); n != "" && !h.Internal && h.TLS {
			fmt.Fprintf(w, "hop %d: %s\n", h.Index, n)
		}
	}
	fmt.Fprintln(w, pt.warn("Note: "+tr.ForgeryWarning()))
	if f := tr.Failed(); len(f) > 0 {
		fmt.Fprintln(w, pt.bad(fmt.Sprintf("%d of %d hops did not meet the requirement.", len(f), len(tr.Hops))))
	} else {
		fmt.Fprintln(w, pt.good("Every hop met the requirement."))
	}
	return nil
}

func gradeText(pt painter, h hops.Hop) string {
	switch {
	case h.Internal:
		return pt.dim("internal: " + h.InternalReason)
	case h.Verdict.Met:
		return pt.good("ok")
	}
	return pt.bad("FAIL " + h.Verdict.Diagnostic)
}

func bracketless(s string) string { return strings.Trim(s, "[]") }
