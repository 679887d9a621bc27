package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// privateRef is a reference to the project's internal specification
// ("SPEC §2", "(B3)"): users do not have that document, so help and docs
// must say the behaviour itself.
var privateRef = regexp.MustCompile(`\bB[0-9]\b|SPEC`)

// TestHelpStandsAlone walks every command's help — Short, Long, Example
// and each flag's usage — for references to the internal specification.
func TestHelpStandsAlone(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for field, text := range map[string]string{"Short": c.Short, "Long": c.Long, "Example": c.Example} {
			if m := privateRef.FindString(text); m != "" {
				t.Errorf("%s %s mentions %q: %s", c.CommandPath(), field, m, text)
			}
		}
		check := func(f *pflag.Flag) {
			if m := privateRef.FindString(f.Usage); m != "" {
				t.Errorf("%s --%s help mentions %q: %s", c.CommandPath(), f.Name, m, f.Usage)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRoot(&globals{})
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	walk(root)
}

// TestDocsStandAlone checks what users read besides the help: docs/,
// README.md, bench/README.md and dist/ (unit file, tmpfiles, example
// config, install script).
func TestDocsStandAlone(t *testing.T) {
	top := filepath.Join("..", "..")
	files := []string{filepath.Join(top, "README.md"), filepath.Join(top, "bench", "README.md")}
	for _, dir := range []string{"docs", "dist"} {
		err := filepath.WalkDir(filepath.Join(top, dir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if m := privateRef.FindString(line); m != "" {
				t.Errorf("%s:%d mentions %q: %s", f, i+1, m, line)
			}
		}
	}
}
