// Package exchange reads policy lists written for other mailers (the
// vendor's plain list, Sendmail's access map, Postfix's
// smtp_tls_policy_maps) and smgctl's own JSON, and writes the plain list
// and JSON back. It only translates: merging into a policy file is the
// store's job.
//
// A translation is honest or it says so. Two kinds of trouble are told
// apart, because they call for different handling:
//
//   - A line that is not valid input for its format — a syntax error, a
//     bad domain, a bad value — is a Note with Invalid set. The input is
//     broken, so Read refuses all of it (an *InvalidLinesError naming
//     every such line) and nothing should be imported.
//   - A valid line that has no exact smgctl equivalent — not importable
//     at all, or imported without part of its meaning — is a Note with
//     Lost set and the line it came from. The rest imports; the caller
//     makes the loss visible (smgctl exits 1).
//
// Nothing is dropped silently.
package exchange

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Format names a list format.
type Format string

const (
	SMG      Format = "smg"      // the vendor's plain list: one target per line, blank line = catch-all
	JSON     Format = "json"     // smgctl's own, every option
	Sendmail Format = "sendmail" // TLS_Rcpt: lines of a Sendmail access file
	Postfix  Format = "postfix"  // an smtp_tls_policy_maps table
)

// ImportFormats and ExportFormats list what Read and Write accept.
var (
	ImportFormats = []Format{SMG, JSON, Sendmail, Postfix}
	ExportFormats = []Format{SMG, JSON, Postfix, Sendmail}
)

// ParseFormat checks a format name against the allowed ones.
func ParseFormat(s string, allowed []Format) (Format, error) {
	names := make([]string, len(allowed))
	for i, f := range allowed {
		if string(f) == s {
			return f, nil
		}
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown format %q (want %s)", s, strings.Join(names, ", "))
}

// Note is something about a translation the operator must see.
type Note struct {
	// Line is the 1-based line in the input (import) or in the policy
	// file (export).
	Line int
	Text string
	// Lost is true when meaning was lost: a line not imported, or
	// imported without part of what it said. A caller should make that
	// fail a pipeline (smgctl exits 1).
	Lost bool
	// Invalid is true when the line is not valid input for its format
	// (syntax error, bad domain, bad value). Read turns any such note
	// into an *InvalidLinesError: nothing of that input is imported.
	Invalid bool
}

func (n Note) String() string { return fmt.Sprintf("line %d: %s", n.Line, n.Text) }

// Result is a translated list.
type Result struct {
	Entries []policy.Entry // in input order, one per target
	Notes   []Note         // in line order
}

// Lost reports whether any note says meaning was lost.
func (r *Result) Lost() bool {
	for _, n := range r.Notes {
		if n.Lost {
			return true
		}
	}
	return false
}

// Invalid returns the notes on lines that are not valid input.
func (r *Result) Invalid() []Note {
	var bad []Note
	for _, n := range r.Notes {
		if n.Invalid {
			bad = append(bad, n)
		}
	}
	return bad
}

func (r *Result) note(line int, lost bool, format string, args ...any) {
	r.Notes = append(r.Notes, Note{Line: line, Text: fmt.Sprintf(format, args...), Lost: lost})
}

// invalid records that line is not valid input for the format.
func (r *Result) invalid(line int, format string, args ...any) {
	r.Notes = append(r.Notes, Note{Line: line, Text: fmt.Sprintf(format, args...), Invalid: true})
}

// ReadOptions adjusts how a foreign list is read.
type ReadOptions struct {
	// SendmailPermErr: the Sendmail .mc defined TLS_PERM_ERR, so TLS_Rcpt
	// right-hand sides without TEMP+ or PERM+ fail permanently (bounce)
	// rather than temporarily (defer), Sendmail's default.
	SendmailPermErr bool
}

// InputError means the input as a whole is unusable (not text, not
// JSON, an invalid JSON entry); nothing should be imported.
type InputError struct {
	Name      string
	Line, Col int // 0 when unknown
	Msg       string
}

func (e *InputError) Error() string {
	switch {
	case e.Line > 0 && e.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.Name, e.Line, e.Col, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.Name, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Name, e.Msg)
}

// InvalidLinesError means some lines of a text list are not valid input
// for its format. Like an InputError, nothing should be imported: a
// broken line is a typo to fix, not a loss to accept, and importing the
// rest would leave the policy half-migrated.
type InvalidLinesError struct {
	Name   string
	Format Format
	Lines  []Note // in line order, each with Invalid set
}

// Error names the first bad line and how many there are; Lines has all.
func (e *InvalidLinesError) Error() string {
	first := e.Lines[0]
	msg := fmt.Sprintf("%s:%d: %s", e.Name, first.Line, first.Text)
	if n := len(e.Lines) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more invalid line(s))", n)
	}
	return msg
}

// Read translates data in format. name is used in errors only. Input
// that is unusable — binary data, invalid JSON, or any line that is not
// valid for the format — is an error (*InputError or
// *InvalidLinesError) and no Result: import all of it or nothing.
func Read(format Format, name string, data []byte, opt ReadOptions) (*Result, error) {
	res, err := read(format, name, data, opt)
	if err != nil {
		return nil, err
	}
	if bad := res.Invalid(); len(bad) > 0 {
		return nil, &InvalidLinesError{Name: name, Format: format, Lines: bad}
	}
	return res, nil
}

func read(format Format, name string, data []byte, opt ReadOptions) (*Result, error) {
	if format != JSON {
		// A text list never holds NUL; a binary file would otherwise come
		// back as one unmappable line after another.
		if i := bytes.IndexByte(data, 0); i >= 0 {
			line := 1 + bytes.Count(data[:i], []byte("\n"))
			return nil, &InputError{Name: name, Line: line, Msg: "binary data (NUL byte), not a " + string(format) + " list"}
		}
	}
	switch format {
	case SMG:
		return ReadSMG(data), nil
	case JSON:
		return ReadJSON(name, data)
	case Sendmail:
		return ReadSendmail(data, opt), nil
	case Postfix:
		return ReadPostfix(data), nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// lines splits text into lines without their terminators. A final line
// terminator ends the last line rather than starting an empty one.
func lines(data []byte) []string {
	s := string(data)
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// collector keeps one entry per target, noting repeats.
type collector struct {
	res   *Result
	first map[string]int // target key → line of its first entry
	index map[string]int // target key → index in res.Entries
}

func newCollector() *collector {
	return &collector{res: &Result{}, first: map[string]int{}, index: map[string]int{}}
}

// add records e from line n. A repeat with the same options is harmless
// and noted; a conflicting one is lost, since the first wins (as makemap
// and postmap keep the first).
func (c *collector) add(n int, e policy.Entry) {
	key := e.Target.Key()
	if first, dup := c.first[key]; dup {
		prev := c.res.Entries[c.index[key]]
		if prev.Options == e.Options {
			c.res.note(n, false, "%s again (first on line %d); imported once", e.Target.Display(), first)
		} else {
			c.res.note(n, true, "%s again with other options (first on line %d, which wins); not imported", e.Target.Display(), first)
		}
		return
	}
	e.Line = 0
	c.first[key] = n
	c.index[key] = len(c.res.Entries)
	c.res.Entries = append(c.res.Entries, e)
}
