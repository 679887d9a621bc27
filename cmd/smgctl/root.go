package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/relay"
)

// Exit codes, the same for every command (docs/exit-codes.md).
const (
	exitOK      = 0
	exitFailed  = 1 // a check failed: probe, lint, audit verify
	exitUsage   = 2 // bad usage or bad input; nothing was changed
	envPolicy   = "SMGCTL_POLICY"
	defaultPath = "/etc/smgctl/policy.conf"
)

// exitError carries an exit code out of a command. A nil err means the
// command has already said what it had to.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

// checkFailed makes a command exit 1 without printing more.
func checkFailed() error { return &exitError{code: exitFailed} }

// version is set by the linker for releases; otherwise read from the build.
var version = ""

func buildVersion() string {
	bi, _ := debug.ReadBuildInfo()
	return versionOf(version, bi)
}

// versionOf names a build as an operator reports it: the module version
// (`go install ...@v1.2.3`, or the pseudo-version) and, when built from a
// checkout, the VCS revision, its time and whether the tree was modified.
func versionOf(linked string, bi *debug.BuildInfo) string {
	v := linked
	if v == "" && bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	if v == "" {
		v = "devel"
	}
	if bi == nil {
		return v
	}
	var rev, when, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return v
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "+modified"
	}
	if when != "" {
		rev += " " + when
	}
	return v + " (" + rev + ")"
}

// globals are the flags every command shares.
type globals struct {
	policyPath string
	configPath string
	stdin      io.Reader

	// cfg is the relay's configuration as every command reads it
	// (settings.go); loaded once, before the command runs.
	cfg *relay.Config
	// cfgFileRead is the config file loadSettings read; "" for none.
	cfgFileRead string
}

// policyFile resolves the policy path: --policy, then SMGCTL_POLICY, then
// the config file's policy, then the documented default.
func (g *globals) policyFile() string {
	if g.policyPath != "" {
		return g.policyPath
	}
	if p := os.Getenv(envPolicy); p != "" {
		return p
	}
	if g.cfg != nil {
		return g.cfg.Policy
	}
	return defaultPath
}

// policySource names where an explicit policy path came from (the flag,
// the environment or the config file's line); "" for the default path.
func (g *globals) policySource() string {
	if g.policyPath != "" {
		return "--policy"
	}
	if os.Getenv(envPolicy) != "" {
		return envPolicy
	}
	if g.cfg != nil && g.cfg.Origin("policy") != "default" {
		return g.cfg.Origin("policy")
	}
	return ""
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "smgctl",
		Short: "Enforce and audit TLS for outbound mail to chosen partners",
		Long: `smgctl makes sure mail to listed partners never crosses the internet in
clear text: an enforcing relay, a probe of partners' MX hosts, and the
TLS policy list they both judge by.`,
		Example: `  smgctl policy add partner.com
  smgctl policy check ceo@sales.partner.com
  smgctl probe partner.com
  smgctl relay`,
		Version:       buildVersion(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.policyPath, "policy", "",
		"policy file (env "+envPolicy+", default "+defaultPath+")")
	root.PersistentFlags().StringVar(&g.configPath, "config", "",
		"the relay's config file, read by every command (env "+envConfig+", default "+defaultConfigPath+" if it exists)")
	root.PersistentPreRunE = func(c *cobra.Command, _ []string) error { return g.loadSettings(c) }
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%v\nSee '%s --help'", err, c.CommandPath())}
	})
	for _, add := range subcommands {
		root.AddCommand(add(g))
	}
	return root
}

// subcommands is filled by each command's file, so adding a command
// touches only its own file.
var subcommands []func(*globals) *cobra.Command

// Main runs smgctl with args and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(stderr, "smgctl:", ee.err)
		}
		return ee.code
	}
	// Cobra's own errors (unknown command, bad args) and input errors.
	fmt.Fprintln(stderr, "smgctl:", err)
	return exitUsage
}
