package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/probe"
	"github.com/smgctl/smgctl/pkg/probe/deep"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

func init() { subcommands = append(subcommands, newProbeCmd) }

type probeFlags struct {
	file        string
	requireBits int
	minTLS      string
	verify      string
	resolver    string
	port        int
	timeout     time.Duration
	concurrency int
	caFile      string
	helo        string
	deep        bool
	// ignorePublished turns MTA-STS and DANE off, as the relay's setting.
	ignorePublished bool
	output          *outputFlag
}

func newProbeCmd(g *globals) *cobra.Command {
	f := &probeFlags{}
	c := &cobra.Command{
		Use:   "probe TARGET... [-f FILE|-]",
		Short: "Grade a partner's MX hosts against the TLS requirement, as the relay would",
		Long: `probe resolves each target's MX hosts (a domain or user@domain), opens an
SMTP session to every address (banner, EHLO, STARTTLS, handshake, EHLO,
QUIT), and grades each hop with the relay's own evaluation against the
target's policy entry or the default entry (112 bits). The what-if flags
--require-bits, --min-tls and --verify grade against the default entry
with those options changed instead of the policy.
What the domain publishes joins the requirement as at the relay, the
strictest winning: its MTA-STS policy and each MX host's DNSSEC-validated
TLSA records (DANE); --ignore-published grades as a relay with published
policies turned off, and the sources say they were ignored.
The configuration file is read as by the relay: published-policies = false
ignores published policies as --ignore-published does; resolver, mx-port
and ca-file are the defaults of --resolver, --port and --ca-file; and
dns-trusted believes the relay's resolver's DNSSEC (AD) answers as the
relay does.
It also reports TLS-RPT, and the risks it sees.

A target in brackets or with a port is one server, probed without an MX
walk (like posttls-finger): [mx.partner.com], [192.0.2.7]:2525,
mx.partner.com:25, 192.0.2.7. It is graded by the what-if flags or the
default entry, since the policy names recipient domains, not servers.

Exit status: 0 every target passes, 1 any fails, 2 bad usage or input.
The JSON output is documented in docs/probe.md.`,
		Example: `  smgctl probe partner.com
  smgctl probe ceo@supplier.example --require-bits 256
  smgctl probe partner.com --min-tls 1.2 --verify cert
  smgctl probe partner.com --ignore-published
  smgctl probe -f partners.txt --output json
  smgctl probe '[mx1.partner.com]' mx2.partner.com:2525
  smgctl probe lab.test --resolver 127.0.0.1:5353 --port 2525 --ca-file lab-ca.pem`,
		RunE: func(c *cobra.Command, args []string) error { return runProbe(c, g, f, args) },
	}
	fl := c.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "read targets from FILE, one per line (- for standard input)")
	fl.IntVar(&f.requireBits, "require-bits", 0, "what if: grade against this many cipher bits instead of the policy (1-256)")
	fl.StringVar(&f.minTLS, "min-tls", "", "what if: grade against this minimum TLS version instead of the policy (1.0, 1.1, 1.2, 1.3)")
	fl.StringVar(&f.verify, "verify", "", "what if: grade with this certificate check instead of the policy (none, cert)")
	fl.StringVar(&f.resolver, "resolver", "", "DNS resolver HOST:PORT (default: the resolver setting, else /etc/resolv.conf)")
	fl.IntVar(&f.port, "port", 0, "SMTP port to dial on every MX address (default: the relay's mx-port setting, 25)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each step (DNS query, connect, reply, handshake, HTTPS)")
	fl.IntVar(&f.concurrency, "concurrency", 32, "targets probed at once, and SMTP sessions open at once")
	fl.StringVar(&f.caFile, "ca-file", "", "extra trusted CA certificates (PEM) besides the system roots (default: the relay's ca-file setting)")
	fl.StringVar(&f.helo, "helo", "", "EHLO name (default: this host's name)")
	fl.BoolVar(&f.deep, "deep", false, "also enumerate every TLS version and cipher suite each host accepts")
	fl.BoolVar(&f.ignorePublished, "ignore-published", false, "grade as a relay with published policies (MTA-STS, DANE) turned off; they are still reported")
	f.output = addOutputFlag(c, "table", "json")
	// "smgctl probe hops" and any other probe subcommand (probe_hops.go).
	for _, add := range probeSubcommands {
		c.AddCommand(add(g))
	}
	return c
}

func runProbe(c *cobra.Command, g *globals, f *probeFlags, args []string) error {
	if err := f.output.check(); err != nil {
		return err
	}
	targets, err := probeTargets(g, f, args)
	if err != nil {
		return usageErr(err)
	}
	// The relay's port for MX hosts and its extra CAs, unless the flags
	// say otherwise: the probe dials and trusts as the relay does.
	if !c.Flags().Changed("port") {
		f.port = g.settings().MXPort
	}
	if !c.Flags().Changed("ca-file") {
		f.caFile = g.settings().CAFile
	}
	switch {
	case c.Flags().Changed("require-bits") && (f.requireBits < 1 || f.requireBits > 256):
		return usageErr(fmt.Errorf("--require-bits %d: want 1 to 256", f.requireBits))
	case f.port < 1 || f.port > 65535:
		return usageErr(fmt.Errorf("--port %d: want 1 to 65535", f.port))
	case f.timeout <= 0:
		return usageErr(fmt.Errorf("--timeout %v: want a positive duration", f.timeout))
	case f.concurrency < 1:
		return usageErr(fmt.Errorf("--concurrency %d: want at least 1", f.concurrency))
	}
	var minTLS uint16
	if c.Flags().Changed("min-tls") {
		v, ok := policy.ParseVersion(f.minTLS)
		if !ok {
			return usageErr(fmt.Errorf("--min-tls %q: want 1.0, 1.1, 1.2 or 1.3", f.minTLS))
		}
		minTLS = v
	}
	var verify *policy.Verify
	if c.Flags().Changed("verify") {
		var o policy.Options
		if err := o.Set("verify", f.verify); err != nil {
			return usageErr(fmt.Errorf("--verify %q: want none or cert", f.verify))
		}
		verify = &o.Verify
	}
	whatIf := whatIfFlags(c)
	res, err := probeResolver(c, g, f)
	if err != nil {
		return usageErr(fmt.Errorf("--resolver: %v", err))
	}
	roots, err := smtpclient.RootPool(f.caFile)
	if err != nil {
		return usageErr(fmt.Errorf("--ca-file: %v", err))
	}
	var pol *policy.Policy
	if whatIf == "" {
		pf, err := readPolicy(g)
		if err != nil {
			return err
		}
		pol = pf.Compile()
	}
	helo := f.helo
	if helo == "" {
		helo, _ = os.Hostname()
	}

	stderr := c.ErrOrStderr()
	cfg := probe.Config{
		Resolver: res, Policy: pol, RequireBits: f.requireBits, MinTLS: minTLS, Verify: verify, Port: f.port,
		Timeout: f.timeout, Concurrency: f.concurrency, HeloName: helo, RootCAs: roots,
		IgnorePublished: f.ignorePublished || !g.settings().PublishedPolicies,
	}
	if cursorControl(stderr) {
		cfg.Progress = func(done, total int, r *probe.Report) {
			fmt.Fprintf(stderr, "\r\033[Kprobing %d/%d %s", done, total, r.Target)
			if done == total {
				fmt.Fprint(stderr, "\r\033[K")
			}
		}
	}
	if f.deep {
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.Deep = func(ctx context.Context, host, addr string) (any, error) {
			return deep.Enumerate(ctx, deep.STARTTLS(addr, helo, f.timeout),
				deep.Options{ServerName: host, Timeout: f.timeout}, log)
		}
	}
	p, err := probe.New(cfg)
	if err != nil {
		return usageErr(err)
	}
	ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reports := p.Probe(ctx, targets)

	pass := true
	for _, r := range reports {
		pass = pass && r.Pass
	}
	out := c.OutOrStdout()
	if f.output.json() {
		if err := writeJSON(out, probeJSON{Pass: pass, Targets: reports}); err != nil {
			return err
		}
	} else if err := renderProbe(out, reports, whatIf); err != nil {
		return err
	}
	if !pass {
		return checkFailed()
	}
	return nil
}

// probeResolver is the resolver the relay would ask: --resolver, else the
// configuration's resolver setting, else /etc/resolv.conf. dns-trusted
// believes its AD bit as the relay does, but only when it is the relay's
// own resolver: the setting vouches for the path to that one server.
func probeResolver(c *cobra.Command, g *globals, f *probeFlags) (*mx.Resolver, error) {
	cfg := g.settings()
	server := cfg.Resolver
	if c.Flags().Changed("resolver") {
		server = f.resolver
	}
	res, err := mx.NewResolver(server, f.timeout)
	if err != nil {
		return nil, err
	}
	return res.WithTrustedAD(cfg.DNSTrusted && server == cfg.Resolver), nil
}

// probeJSON is the top level of --output json (docs/probe.md).
type probeJSON struct {
	Pass    bool            `json:"pass"`
	Targets []*probe.Report `json:"targets"`
}

// probeTargets collects targets from the arguments and -f, in order,
// refusing bad ones with where they came from.
func probeTargets(g *globals, f *probeFlags, args []string) ([]string, error) {
	var targets []string
	for _, a := range args {
		t, err := probe.NormalizeTarget(a)
		if err != nil {
			return nil, fmt.Errorf("target %q: %v", a, err)
		}
		targets = append(targets, t)
	}
	if f.file != "" {
		name, data, err := stdinOrFile(g, []string{f.file})
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if i := strings.IndexByte(line, '#'); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			t, err := probe.NormalizeTarget(line)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: target %q: %v", name, n, line, err)
			}
			targets = append(targets, t)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
	}
	if len(targets) == 0 {
		return nil, errors.New("no targets: name domains or addresses, or use -f FILE")
	}
	return targets, nil
}

// renderProbe writes the verdict table, the hop table and the risks.
// whatIf names the what-if flags given ("" none), for the required column.
func renderProbe(w io.Writer, reports []*probe.Report, whatIf string) error {
	pt := newPainter(w)
	var rows, hops [][]string
	for _, r := range reports {
		result := pt.good("PASS")
		if !r.Pass {
			result = pt.bad("FAIL")
		}
		rows = append(rows, []string{r.Target, result, requirementText(r.Requirement, whatIf), r.Summary})
		for _, h := range r.Hosts {
			if h.Error != "" {
				hops = append(hops, []string{r.Target, h.Name, strconv.Itoa(int(h.Preference)), "-", "-", "-", "-", pt.bad(h.Error)})
			}
			for _, at := range h.Attempts {
				hops = append(hops, hopRow(pt, r, h, at))
			}
		}
	}
	if err := renderTable(w, []string{"target", "result", "required", "verdict"}, rows); err != nil {
		return err
	}
	if len(hops) > 0 {
		fmt.Fprintln(w)
		if err := renderTable(w, []string{"target", "mx", "pref", "address", "tls", "bits", "cert", "hop"}, hops); err != nil {
			return err
		}
	}
	for _, r := range reports {
		for _, h := range r.Hosts {
			for _, at := range h.Attempts {
				if dr, ok := at.Deep.(*deep.Report); ok && dr != nil {
					fmt.Fprintf(w, "\nDeep: %s %s [%s]\n", r.Target, h.Name, at.Addr)
					if err := renderDeep(w, pt, dr, "  "); err != nil {
						return err
					}
				}
			}
		}
	}
	first := true
	for _, r := range reports {
		for _, risk := range r.Risks {
			if first {
				fmt.Fprintln(w, "\nRisks:")
				first = false
			}
			fmt.Fprintf(w, "  %s: %s\n", r.Target, pt.warn(risk))
		}
	}
	return nil
}

func hopRow(pt painter, r *probe.Report, h probe.HostReport, at *probe.Attempt) []string {
	tls, cert, bits := "no", "-", strconv.Itoa(at.Bits)
	switch {
	case at.TLS:
		tls = string(at.Version) + " " + at.Suite
	case at.Failure != "":
		tls = "no (" + at.Failure + ")"
	}
	if at.Cert != nil {
		switch {
		case at.Auth == string(policy.AuthDANE):
			cert = pt.good("dane")
		case at.Verified:
			cert = pt.good("verified")
		default:
			cert = pt.warn("unverified")
		}
	}
	hop := pt.good("ok")
	switch {
	case at.Error != "" && !at.Connected:
		hop, tls, bits = pt.bad(at.Error), "-", "-"
	case at.Error != "":
		hop = pt.bad(at.Error)
	case !at.Met:
		hop = pt.bad(strings.TrimPrefix(at.Diagnostic, "503 5.7.0 "))
	}
	return []string{r.Target, h.Name, strconv.Itoa(int(h.Preference)), at.Addr, tls, bits, cert, hop}
}

// whatIfFlags names the what-if flags given, comma-separated.
func whatIfFlags(c *cobra.Command) string {
	var given []string
	for _, name := range []string{"require-bits", "min-tls", "verify"} {
		if c.Flags().Changed(name) {
			given = append(given, "--"+name)
		}
	}
	return strings.Join(given, ", ")
}

func requirementText(q probe.RequirementInfo, whatIf string) string {
	s := strconv.Itoa(q.Bits) + " bits"
	if q.MinTLS != "TLSv1.0" {
		s += ", " + string(q.MinTLS) + "+"
	}
	if q.Verify == "cert" {
		s += ", verified"
	}
	switch q.Source {
	case "policy":
		s += fmt.Sprintf(" (%s, line %d)", q.Entry, q.Line)
	case "flag":
		s += " (" + whatIf + ")"
	default:
		s += " (default)"
	}
	if q.Verify == "dane" {
		s += ", DANE"
	}
	return s + publishedText(q.Sources)
}

// publishedText names what the domain publishes beyond the list, as it
// joins the requirement: "; MTA-STS enforce (id 2026); DANE mx1.p.test
// usable".
func publishedText(sources []policy.Source) string {
	var s string
	for _, src := range sources {
		var t string
		switch src.Kind {
		case policy.SourceMTASTS:
			t = "MTA-STS " + src.Mode + " (id " + src.PolicyID + ")"
		case policy.SourceDANE:
			t = "DANE " + src.Host + " " + string(src.DANE)
		case policy.SourceRequireTLS:
			t = "REQUIRETLS"
		default:
			continue
		}
		if src.Ignored != "" {
			t += " ignored: " + src.Ignored
		}
		s += "; " + t
	}
	return s
}
