package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/policy/exchange"
	"github.com/smgctl/smgctl/pkg/policy/store"
)

func init() { subcommands = append(subcommands, newPolicyCmd) }

func newPolicyCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "policy",
		Short: "Show, edit, check and migrate the TLS policy list",
		Long: `The policy list names the partners whose mail may only leave over
encrypted SMTP of sufficient strength. One entry per line: a domain (with
its subdomains), an address, or * (every domain), with options. See
docs/policy.md.

Edits take the lock <policy>.lock, replace the file atomically and append
one JSON line per change to <policy>.journal.`,
		Example: `  smgctl policy add partner.com
  smgctl policy add bank.example --bits 256 --min-tls 1.2 --verify cert
  smgctl policy check ceo@sales.partner.com
  smgctl policy lint --strict
  smgctl policy import --format sendmail /etc/mail/access`,
		// Without this cobra shows help and exits 0 for a mistyped
		// subcommand, which a script would take for success.
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr(fmt.Errorf("unknown command %q for %q\nSee '%s --help'", args[0], c.CommandPath(), c.CommandPath()))
			}
			return c.Help()
		},
	}
	c.AddCommand(
		newPolicyListCmd(g),
		newPolicyAddCmd(g),
		newPolicyRemoveCmd(g),
		newPolicyCheckCmd(g),
		newPolicyLintCmd(g),
		newPolicyImportCmd(g),
		newPolicyExportCmd(g),
		newPolicyHistoryCmd(g),
	)
	return c
}

// usageErr makes err an exit-2 error: bad usage or input, nothing changed.
func usageErr(err error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: exitUsage, err: err}
}

// readPolicy reads and parses the policy file; any failure is an input
// error naming the file (and line and column for parse errors).
func readPolicy(g *globals) (*policy.File, error) {
	path := g.policyFile()
	// A path the operator named must exist: a typo in --policy must not
	// look like an empty list ("no entry: opportunistic TLS", exit 0).
	// Only the default path of a fresh install may be missing.
	if src := g.policySource(); src != "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, usageErr(fmt.Errorf("policy file %s (from %s) does not exist", path, src))
		}
	}
	f, err := policy.ReadFile(path)
	if err != nil {
		return nil, usageErr(err)
	}
	return f, nil
}

// editFlags are the flags every editing command shares.
type editFlags struct {
	actor       string
	lockTimeout time.Duration
}

func (e *editFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&e.actor, "actor", "", "who is making the change, for the journal (env SMGCTL_ACTOR, default the OS user)")
	c.Flags().DurationVar(&e.lockTimeout, "lock-timeout", store.DefaultLockTimeout, "how long to wait for another edit's lock")
}

func (e *editFlags) store(g *globals) (*store.Store, string, error) {
	if e.lockTimeout <= 0 {
		return nil, "", usageErr(fmt.Errorf("--lock-timeout %s: want a positive duration", e.lockTimeout))
	}
	actor := e.actor
	if actor == "" {
		actor = store.DefaultActor()
	}
	if err := store.CheckComment(actor); err != nil || strings.TrimSpace(actor) == "" {
		return nil, "", usageErr(fmt.Errorf("--actor %q: want a name", actor))
	}
	return &store.Store{Path: g.policyFile(), LockTimeout: e.lockTimeout}, actor, nil
}

// parseTarget reads a policy target from the command line.
func parseTarget(s string) (policy.Target, error) {
	t, err := policy.ParseTarget(s)
	if err != nil {
		return t, usageErr(fmt.Errorf("bad target %q: %v", s, err))
	}
	return t, nil
}

// entryJSON is an entry in `policy list` and `policy check` JSON: its line,
// its U-label form when it has one, and every option.
type entryJSON struct {
	Line int `json:"line"`
	exchange.JSONEntry
	Unicode string `json:"unicode,omitempty"` // the target with U-labels, when it has A-labels
}

func newEntryJSON(e *policy.Entry) *entryJSON {
	j := &entryJSON{Line: e.Line, JSONEntry: exchange.NewJSONEntry(e)}
	if d := e.Target.Display(); d != e.Target.Key() {
		j.Unicode = strings.TrimSuffix(d[strings.IndexByte(d, '(')+1:], ")")
	}
	return j
}

func newPolicyListCmd(g *globals) *cobra.Command {
	var out *outputFlag
	c := &cobra.Command{
		Use:   "list",
		Short: "List the entries of the policy file",
		Args:  cobra.NoArgs,
		Example: `  smgctl policy list
  smgctl policy list --output json | jq -r '.entries[].target'`,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := out.check(); err != nil {
				return err
			}
			f, err := readPolicy(g)
			if err != nil {
				return err
			}
			w := c.OutOrStdout()
			entries := f.Entries()
			if out.json() {
				doc := struct {
					Policy  string       `json:"policy"`
					Entries []*entryJSON `json:"entries"`
				}{g.policyFile(), []*entryJSON{}}
				for _, e := range entries {
					doc.Entries = append(doc.Entries, newEntryJSON(e))
				}
				return writeJSON(w, doc)
			}
			if len(entries) == 0 {
				fmt.Fprintf(w, "%s has no entries: every recipient gets opportunistic TLS\n", g.policyFile())
				return nil
			}
			p := newPainter(w)
			rows := make([][]string, 0, len(entries))
			for _, e := range entries {
				o := e.Options
				rows = append(rows, []string{
					strconv.Itoa(e.Line), e.Target.Display(), strconv.Itoa(o.Bits), o.Get("min-tls"),
					o.Get("verify"), paintMode(p, o.Mode), o.Get("on-fail"), e.Comment,
				})
			}
			return renderTable(w, []string{"line", "target", "bits", "min-tls", "verify", "mode", "on-fail", "comment"}, rows)
		},
	}
	out = addOutputFlag(c, "table", "json")
	return c
}

func paintMode(p painter, m policy.Mode) string {
	switch m {
	case policy.ModeEnforce:
		return p.good(m.String())
	case policy.ModeTesting:
		return p.warn(m.String())
	}
	return p.dim(m.String())
}

func newPolicyAddCmd(g *globals) *cobra.Command {
	var ef editFlags
	var comment string
	opts := map[string]*string{}
	c := &cobra.Command{
		Use:   "add TARGET",
		Short: "Add an entry, or set the options of an existing one",
		Long: `Add an entry for TARGET: a domain (it covers its subdomains too), an
address local@domain, or '*' (or '') for the catch-all.

A new entry gets the options given and the defaults for the rest. If
TARGET is already listed, the options given replace its current ones in
place and the others keep their values (so raising --bits never drops
verify=cert); to reset an option, give its default. If nothing would
change, nothing is written and the command says so (exit 0). An existing
comment is kept unless --comment is given.`,
		Example: `  smgctl policy add partner.com
  smgctl policy add bank.example --bits 256 --min-tls 1.2 --verify cert --comment "contract 2024-17"
  smgctl policy add ceo@supplier.example --on-fail defer
  smgctl policy add '*' --mode testing
  smgctl policy add legacy.example --mode off
  smgctl policy add secure.example --verify dane --on-fail defer
  smgctl policy add health.example --on-fail route:gw.corp.example`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			t, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			set := map[string]string{}
			for _, k := range policy.OptionKeys() {
				if c.Flags().Changed(k) {
					set[k] = *opts[k]
				}
			}
			// Check values here too, so the error names the flag.
			probe := policy.DefaultOptions()
			for _, k := range policy.OptionKeys() {
				if v, ok := set[k]; ok {
					if err := probe.Set(k, v); err != nil {
						return usageErr(fmt.Errorf("--%s: %v", k, err))
					}
				}
			}
			comment = strings.TrimSpace(comment)
			if err := store.CheckComment(comment); err != nil {
				return usageErr(fmt.Errorf("--comment: %v", err))
			}
			s, actor, err := ef.store(g)
			if err != nil {
				return err
			}
			ch, err := s.Add(c.Context(), actor, t, set, comment)
			if err != nil {
				return usageErr(err)
			}
			printChange(c.OutOrStdout(), ch, false)
			return nil
		},
	}
	ef.register(c)
	usage := map[string]string{
		"bits":    "minimum effective cipher strength, 1-256 (default 112)",
		"min-tls": "minimum TLS version: 1.0, 1.1, 1.2 or 1.3 (default 1.0)",
		"verify":  "cert: the certificate must verify and name the MX host; dane: the MX must be DANE-authenticated (TLSA); none (default)",
		"mode":    "enforce (default), testing (deliver, record would-be bounces) or off (exempt from broader entries)",
		"on-fail": "bounce (default), defer (retry until the queue lifetime ends) or route:HOST[:PORT] (hand off to another gateway over verified TLS)",
	}
	values := map[string][]string{
		"min-tls": {"1.0", "1.1", "1.2", "1.3"}, "verify": {"none", "cert", "dane"},
		"mode": {"enforce", "testing", "off"}, "on-fail": {"bounce", "defer", "route:"},
	}
	for _, k := range policy.OptionKeys() {
		opts[k] = new(string)
		c.Flags().StringVar(opts[k], k, "", usage[k])
		if v, ok := values[k]; ok {
			c.RegisterFlagCompletionFunc(k, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				return v, cobra.ShellCompDirectiveNoFileComp
			})
		}
	}
	c.Flags().StringVar(&comment, "comment", "", "comment kept on the entry's line")
	return c
}

func newPolicyRemoveCmd(g *globals) *cobra.Command {
	var ef editFlags
	c := &cobra.Command{
		Use:   "remove TARGET",
		Short: "Remove an entry",
		Long: `Remove the entry for TARGET. Removing a target that is not listed
changes nothing and exits 0, so scripts can run it again safely.`,
		Example: `  smgctl policy remove partner.com
  smgctl policy remove '*'`,
		Aliases:           []string{"rm"},
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completePolicyTargets(g, true, 1),
		RunE: func(c *cobra.Command, args []string) error {
			t, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			s, actor, err := ef.store(g)
			if err != nil {
				return err
			}
			ch, err := s.Remove(c.Context(), actor, t)
			if err != nil {
				return usageErr(err)
			}
			printChange(c.OutOrStdout(), ch, false)
			return nil
		},
	}
	ef.register(c)
	return c
}

// printChange says what an edit did, or with dryRun would do, to one
// target, in one line.
func printChange(w io.Writer, ch store.Change, dryRun bool) {
	name := ch.Target.Display()
	verb := func(done, would string) string {
		if dryRun {
			return would
		}
		return done
	}
	switch ch.Kind() {
	case store.ActionAdd:
		s := fmt.Sprintf("%s %s", verb("added", "would add"), name)
		if !dryRun {
			s += fmt.Sprintf(" (line %d)", ch.After.Line)
		}
		if o := ch.After.Options.String(); o != "" {
			s += ": " + o
		}
		fmt.Fprintln(w, s)
	case store.ActionUpdate:
		fmt.Fprintf(w, "%s %s (line %d): %s\n", verb("updated", "would update"), name, ch.After.Line, diffEntries(ch.Before, ch.After))
	case store.ActionRemove:
		fmt.Fprintf(w, "%s %s (%s line %d)\n", verb("removed", "would remove"), name, verb("was", "on"), ch.Before.Line)
	default:
		if ch.After != nil {
			fmt.Fprintf(w, "already present: %s (line %d), unchanged\n", name, ch.After.Line)
		} else {
			fmt.Fprintf(w, "not present: %s, unchanged\n", name)
		}
	}
}

// diffEntries lists what differs: "bits=112→256, verify=none→cert".
func diffEntries(a, b *policy.Entry) string {
	var parts []string
	for _, k := range policy.OptionKeys() {
		if x, y := a.Options.Get(k), b.Options.Get(k); x != y {
			parts = append(parts, fmt.Sprintf("%s=%s→%s", k, x, y))
		}
	}
	if a.Comment != b.Comment {
		parts = append(parts, fmt.Sprintf("comment %q→%q", a.Comment, b.Comment))
	}
	return strings.Join(parts, ", ")
}

// stdinOrFile opens FILE, or standard input for "-" or no argument.
func stdinOrFile(g *globals, args []string) (string, []byte, error) {
	if len(args) == 0 || args[0] == "-" {
		data, err := io.ReadAll(g.stdin)
		return "<stdin>", data, err
	}
	data, err := os.ReadFile(args[0])
	return args[0], data, err
}
