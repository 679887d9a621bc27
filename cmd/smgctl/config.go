package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/smgctl/smgctl/pkg/relay"
)

func init() { subcommands = append(subcommands, newConfigCmd) }

func newConfigCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration every command reads",
		Args:  cobra.NoArgs,
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print every setting in force and where it came from",
		Long: `Print every relay setting as every smgctl command reads it — the config
file (--config, SMGCTL_CONFIG, else ` + defaultConfigPath + ` if it exists),
then SMGCTL_* variables, then --policy/SMGCTL_POLICY — with its source:
FILE:LINE, "env SMGCTL_X", "flag --policy" or "default". Like postconf,
but every key, not only the changed ones. A command's own flags (relay
--listen, queue --spool, ...) still win over what is shown here.`,
		Example: `  smgctl config show
  smgctl --config /etc/smgctl/relay.conf config show --output json`,
		Args: cobra.NoArgs,
	}
	out := addOutputFlag(show, "table", "json")
	show.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := out.check(); err != nil {
			return err
		}
		cfg := g.settings()
		type setting struct {
			Key    string `json:"key"`
			Value  any    `json:"value"` // string, or a number or boolean (jsonSettingValue)
			Source string `json:"source"`
		}
		settings := make([]setting, 0, len(relay.Keys))
		for _, k := range relay.Keys {
			v, err := cfg.Value(k)
			if err != nil {
				return err
			}
			settings = append(settings, setting{k, jsonSettingValue(k, v), cfg.Origin(k)})
		}
		path := g.cfgFileRead
		w := cmd.OutOrStdout()
		if out.json() {
			return writeJSON(w, struct {
				ConfigFile string    `json:"config_file"`
				Settings   []setting `json:"settings"`
			}{path, settings})
		}
		if path == "" {
			fmt.Fprintf(w, "no config file (%s does not exist): defaults and SMGCTL_* only\n", defaultConfigPath)
		} else {
			fmt.Fprintf(w, "config file %s\n", path)
		}
		rows := make([][]string, len(settings))
		for i, s := range settings {
			v := fmt.Sprint(s.Value)
			if v == "" {
				v = "-"
			}
			rows[i] = []string{s.Key, v, s.Source}
		}
		return renderTable(w, []string{"key", "value", "source"}, rows)
	}
	c.AddCommand(show)
	return c
}

// jsonSettingValue types a setting for JSON as its default's kind says:
// counts and sizes (in bytes) are numbers, switches booleans, the rest
// (paths, addresses, durations, lists) the text a config file takes.
func jsonSettingValue(key, text string) any {
	defaults := relay.DefaultConfig()
	def, err := defaults.Value(key)
	if err != nil {
		return text
	}
	if _, err := strconv.ParseInt(def, 10, 64); err == nil {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil {
			return n
		}
	}
	if def == "true" || def == "false" {
		if b, err := strconv.ParseBool(text); err == nil {
			return b
		}
	}
	return text
}
