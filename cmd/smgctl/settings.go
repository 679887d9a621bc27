package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/relay"
)

const (
	envConfig         = "SMGCTL_CONFIG"
	defaultConfigPath = "/etc/smgctl/relay.conf"
)

// configFile is the config file every command reads and where its name
// came from: --config, SMGCTL_CONFIG, or the default path ("" source),
// which is read only when it exists.
func (g *globals) configFile() (path, source string) {
	if g.configPath != "" {
		return g.configPath, "--config"
	}
	if p := os.Getenv(envConfig); p != "" {
		return p, envConfig
	}
	return defaultConfigPath, ""
}

// noSettings are commands that read no configuration: help, completion,
// man pages and the version.
var noSettings = map[string]bool{"help": true, "completion": true, "__complete": true, "__completeNoDesc": true, "docs": true, "man": true}

// loadSettings reads the relay's configuration once for whichever command
// runs, as Postfix's tools all read main.cf: the config file, then the
// SMGCTL_* variables, then --policy/SMGCTL_POLICY. Each command's own
// flags (--spool, --audit-log, ...) then win over it. A broken config is
// bad input (exit 2) for every command, not only for the relay.
func (g *globals) loadSettings(c *cobra.Command) error {
	for p := c; p != nil; p = p.Parent() {
		if noSettings[p.Name()] {
			return nil
		}
	}
	cfg := relay.DefaultConfig()
	path, source := g.configFile()
	if _, err := os.Stat(path); source != "" || !errors.Is(err, fs.ErrNotExist) {
		if err := cfg.ApplyFile(path); err != nil {
			if source != "" {
				err = fmt.Errorf("%w (config file from %s)", err, source)
			}
			return &exitError{code: exitUsage, err: err}
		}
		g.cfgFileRead = path
	}
	if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if p := os.Getenv(envPolicy); p != "" {
		cfg.SetFrom("policy", p, "env "+envPolicy)
	}
	if g.policyPath != "" {
		cfg.SetFrom("policy", g.policyPath, "flag --policy")
	}
	g.cfg = &cfg
	return nil
}

// settings is the configuration loadSettings read; the defaults when the
// command reads none.
func (g *globals) settings() *relay.Config {
	if g.cfg == nil {
		cfg := relay.DefaultConfig()
		g.cfg = &cfg
	}
	return g.cfg
}
