package main

// Shared output helpers for every command: --output validation,
// terminal and NO_COLOR detection, tables, colour and JSON.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"
	"github.com/muesli/termenv"
	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"github.com/spf13/cobra"
)

// outputFlag is a command's --output flag; the first allowed value is
// the default.
type outputFlag struct {
	value   string
	allowed []string
}

// addOutputFlag registers --output on c, with shell completion of the
// allowed values.
func addOutputFlag(c *cobra.Command, allowed ...string) *outputFlag {
	o := &outputFlag{value: allowed[0], allowed: allowed}
	c.Flags().StringVarP(&o.value, "output", "o", o.value, "output format: "+strings.Join(allowed, "|"))
	c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return allowed, cobra.ShellCompDirectiveNoFileComp
	})
	return o
}

// check refuses a value outside the allowed set as a usage error.
func (o *outputFlag) check() error {
	if slices.Contains(o.allowed, o.value) {
		return nil
	}
	return &exitError{code: exitUsage, err: fmt.Errorf("--output %q: want %s", o.value, strings.Join(o.allowed, " or "))}
}

func (o *outputFlag) json() bool { return o.value == "json" }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// colourOn: colour only for a terminal that can show it.
func colourOn(w io.Writer) bool { return colourAllowed(os.Getenv) && isTerminal(w) }

// colourAllowed: no colour when NO_COLOR is set to a non-empty value
// (https://no-color.org: an empty value does not count) or the terminal
// says it is dumb.
func colourAllowed(getenv func(string) string) bool {
	return getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// cursorControl: a progress line that rewrites itself (\r, ESC[K) only on
// a terminal that understands the escape.
func cursorControl(w io.Writer) bool { return isTerminal(w) && os.Getenv("TERM") != "dumb" }

// painter colours text for a terminal and leaves it alone otherwise.
type painter struct {
	r *lipgloss.Renderer // nil: no colour
}

func newPainter(w io.Writer) painter {
	if !colourOn(w) {
		return painter{}
	}
	r := lipgloss.NewRenderer(w)
	r.SetColorProfile(termenv.ANSI)
	return painter{r: r}
}

func (p painter) paint(colour, s string) string {
	if p.r == nil || s == "" {
		return s
	}
	return p.r.NewStyle().Foreground(lipgloss.Color(colour)).Render(s)
}

func (p painter) good(s string) string { return p.paint("2", s) } // green
func (p painter) warn(s string) string { return p.paint("3", s) } // yellow
func (p painter) bad(s string) string  { return p.paint("1", s) } // red
func (p painter) dim(s string) string  { return p.paint("8", s) } // grey

// renderTable writes a plain, borderless table (kubectl style): header in
// capitals, columns separated by two spaces, no trailing white space.
func renderTable(w io.Writer, header []string, rows [][]string) error {
	var buf bytes.Buffer
	t := tablewriter.NewTable(&buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Symbols: tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenRows: tw.Off, BetweenColumns: tw.Off, ShowHeader: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off, ShowTop: tw.Off, ShowBottom: tw.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithPadding(tw.Padding{Left: "", Right: "  ", Overwrite: true}),
		tablewriter.WithTrimSpace(tw.Off),
	)
	h := make([]any, len(header))
	for i, s := range header {
		h[i] = strings.ToUpper(s)
	}
	t.Header(h...)
	for _, r := range rows {
		cells := make([]any, len(r))
		for i, s := range r {
			cells[i] = s
		}
		if err := t.Append(cells...); err != nil {
			return err
		}
	}
	if err := t.Render(); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, trimLine(line)+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// trimLine drops trailing padding, which tablewriter may wrap in colour
// resets; one reset is kept at the end of a coloured line.
func trimLine(line string) string {
	const reset = "\x1b[0m"
	t := strings.TrimRight(line, " \n")
	for strings.HasSuffix(t, reset) {
		t = strings.TrimRight(strings.TrimSuffix(t, reset), " ")
	}
	if strings.Contains(t, "\x1b[") {
		t += reset
	}
	return t
}

// jsonSchemaVersion is the "schema_version" every JSON document starts
// with (docs/schemas/): it changes only when a field is renamed or
// removed, so a script can refuse a document it does not know.
const jsonSchemaVersion = 1

// writeJSON writes v, which must encode as a JSON object, indented, with
// a final newline and "schema_version" as its first field. Field names
// and shapes are part of the documented, stable output (docs/schemas/).
func writeJSON(w io.Writer, v any) error {
	var raw bytes.Buffer
	enc := json.NewEncoder(&raw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	body := bytes.TrimSpace(raw.Bytes())
	if len(body) < 2 || body[0] != '{' {
		return fmt.Errorf("internal error: JSON output %T is not an object", v)
	}
	var doc bytes.Buffer
	fmt.Fprintf(&doc, `{"schema_version":%d`, jsonSchemaVersion)
	if rest := bytes.TrimSpace(body[1:]); rest[0] != '}' {
		doc.WriteByte(',')
	}
	doc.Write(body[1:])
	var out bytes.Buffer
	if err := json.Indent(&out, doc.Bytes(), "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
