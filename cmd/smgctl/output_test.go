package main

import (
	"bytes"
	"os"
	"runtime/debug"
	"testing"

	"github.com/spf13/cobra"
)

func TestTrimLine(t *testing.T) {
	for in, want := range map[string]string{
		"a  b   \n":                           "a  b",
		"":                                    "",
		"x\x1b[32mok\x1b[0m   \x1b[0m\n":      "x\x1b[32mok\x1b[0m",
		"x\x1b[32mok\x1b[0m\n":                "x\x1b[32mok\x1b[0m",
		"\x1b[32mok\x1b[0m  \x1b[0m  \x1b[0m": "\x1b[32mok\x1b[0m",
	} {
		if got := trimLine(in); got != want {
			t.Errorf("trimLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestColourOff(t *testing.T) {
	// Not a terminal: a buffer, a pipe, a file.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, out := range []any{&bytes.Buffer{}, w} {
		wr := out.(interface{ Write([]byte) (int, error) })
		if colourOn(wr) {
			t.Errorf("colour on for %T", out)
		}
		if got := newPainter(wr).good("x"); got != "x" {
			t.Errorf("painted %q for %T", got, out)
		}
	}
}

func TestColourAllowed(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, true},
		{map[string]string{"TERM": "xterm-256color"}, true},
		{map[string]string{"NO_COLOR": ""}, true}, // empty does not count
		{map[string]string{"NO_COLOR": "1"}, false},
		{map[string]string{"TERM": "dumb"}, false},
	} {
		if got := colourAllowed(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("env %v: colour %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestOutputFlag(t *testing.T) {
	c := &cobra.Command{Use: "x"}
	o := addOutputFlag(c, "table", "json")
	if o.value != "table" || o.check() != nil || o.json() {
		t.Errorf("default %+v", o)
	}
	if err := c.Flags().Parse([]string{"-o", "json"}); err != nil || !o.json() || o.check() != nil {
		t.Errorf("json: %v %+v", err, o)
	}
	if err := c.Flags().Parse([]string{"--output", "yaml"}); err != nil {
		t.Fatal(err)
	}
	err := o.check()
	if ee, ok := err.(*exitError); !ok || ee.code != exitUsage || ee.Error() != `--output "yaml": want table or json` {
		t.Errorf("yaml: %v", err)
	}
}

func TestRenderTable(t *testing.T) {
	var b bytes.Buffer
	if err := renderTable(&b, []string{"line", "min-tls", "comment"}, [][]string{{"1", "1.2", ""}, {"10", "1.0", "x y"}}); err != nil {
		t.Fatal(err)
	}
	want := "LINE  MIN-TLS  COMMENT\n1     1.2\n10    1.0      x y\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestVersionOf(t *testing.T) {
	checkout := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "e5f05b6d0c1f2a3b4c5d6e7f8091a2b3c4d5e6f7"},
		{Key: "vcs.time", Value: "2026-12-04T18:40:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	installed := &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}
	for _, tc := range []struct {
		linked string
		bi     *debug.BuildInfo
		want   string
	}{
		{"", checkout, "devel (e5f05b6d0c1f+modified 2026-12-04T18:40:00Z)"},
		{"", installed, "v0.3.0"},
		{"v1.0.0", installed, "v1.0.0"},
		{"", nil, "devel"},
	} {
		if got := versionOf(tc.linked, tc.bi); got != tc.want {
			t.Errorf("versionOf(%q, %+v) = %q, want %q", tc.linked, tc.bi, got, tc.want)
		}
	}
}

// writeJSON puts schema_version first in every document, keeps HTML
// characters as they are, and refuses anything but an object: a bare
// array cannot carry the version.
func TestWriteJSON(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{struct{}{}, "{\n  \"schema_version\": 1\n}\n"},
		{struct {
			ID   string `json:"id"`
			Note string `json:"note"`
		}{"Q1", "<a@b> & c"}, "{\n  \"schema_version\": 1,\n  \"id\": \"Q1\",\n  \"note\": \"<a@b> & c\"\n}\n"},
	} {
		var b bytes.Buffer
		if err := writeJSON(&b, tc.v); err != nil || b.String() != tc.want {
			t.Errorf("writeJSON(%#v) = %q, %v; want %q", tc.v, b.String(), err, tc.want)
		}
	}
	var b bytes.Buffer
	if err := writeJSON(&b, []string{"a"}); err == nil || b.Len() != 0 {
		t.Errorf("an array: %q, %v; want an error and no output", b.String(), err)
	}
}
