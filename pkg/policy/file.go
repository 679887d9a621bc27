package policy

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"
)

// Entry is one target with its options, as read from a policy file.
type Entry struct {
	Target  Target
	Options Options
	Line    int    // 1-based line in the file; 0 for entries not from a file
	Comment string // text after '#' on the entry's line, trimmed
}

// String renders the entry as a policy line.
func (e *Entry) String() string {
	s := e.Target.Key()
	if o := e.Options.String(); o != "" {
		s = fmt.Sprintf("%-24s %s", s, o)
	}
	if e.Comment != "" {
		s += "  # " + e.Comment
	}
	return s
}

// ParseError names the file, line and column of what is wrong.
type ParseError struct {
	File string
	Line int
	Col  int // 1-based byte column
	Msg  string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// line is one line of a policy file: its text as found, and the entry on
// it, if any. Keeping the text lets edits preserve comments, blank lines
// and the order of untouched entries.
type line struct {
	text  string
	entry *Entry
}

// File is a parsed policy file that can be edited and written back.
type File struct {
	Name  string
	lines []line
}

// Parse reads a policy file. name is used in error messages only.
func Parse(name string, data []byte) (*File, error) {
	f := &File{Name: name}
	if !utf8.Valid(data) {
		// Find the first bad line so the error can point at it.
		lineNo, col := 1, 1
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, &ParseError{name, lineNo, col, "not valid UTF-8"}
			}
			if r == '\n' {
				lineNo, col = lineNo+1, 1
			} else {
				col += size
			}
			i += size
		}
	}
	text := string(data)
	seen := make(map[string]int)
	n := 0
	for len(text) > 0 {
		n++
		var raw string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			raw, text = text[:i], text[i+1:]
		} else {
			raw, text = text, ""
		}
		e, err := parseLine(raw, n)
		if err != nil {
			err.File = name
			return nil, err
		}
		if e != nil {
			key := e.Target.Key()
			if first, dup := seen[key]; dup {
				return nil, &ParseError{name, n, firstNonSpace(raw),
					fmt.Sprintf("second entry for %s (first on line %d)", key, first)}
			}
			seen[key] = n
		}
		f.lines = append(f.lines, line{text: raw, entry: e})
	}
	return f, nil
}

// ReadFile parses the policy file at path. A missing file is an empty
// policy: a fresh install runs with nothing enforced.
func ReadFile(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return &File{Name: path}, nil
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func firstNonSpace(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' && s[i] != '\t' {
			return i + 1
		}
	}
	return 1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

// parseLine returns the entry on a line, nil for a blank or comment line.
func parseLine(raw string, n int) (*Entry, *ParseError) {
	body, comment := raw, ""
	// '#' starts a comment at the start of the line or after white space,
	// so an address such as a#b@example.com stays one token.
	for i := 0; i < len(raw); i++ {
		if raw[i] == '#' && (i == 0 || isSpace(raw[i-1])) {
			body, comment = raw[:i], strings.TrimSpace(raw[i+1:])
			break
		}
	}
	var e *Entry
	pos := 0
	for pos < len(body) {
		for pos < len(body) && isSpace(body[pos]) {
			pos++
		}
		if pos == len(body) {
			break
		}
		start := pos
		for pos < len(body) && !isSpace(body[pos]) {
			pos++
		}
		tok := body[start:pos]
		col := start + 1
		if e == nil {
			t, err := ParseTarget(tok)
			if err != nil {
				return nil, &ParseError{Line: n, Col: col, Msg: fmt.Sprintf("bad target %q: %v", tok, err)}
			}
			e = &Entry{Target: t, Options: DefaultOptions(), Line: n, Comment: comment}
			continue
		}
		key, value, ok := strings.Cut(tok, "=")
		if !ok {
			return nil, &ParseError{Line: n, Col: col, Msg: fmt.Sprintf("%q: want key=value after the target", tok)}
		}
		if err := e.Options.Set(key, value); err != nil {
			return nil, &ParseError{Line: n, Col: col, Msg: err.Error()}
		}
	}
	return e, nil
}

// Entries returns the entries in file order.
func (f *File) Entries() []*Entry {
	var es []*Entry
	for _, l := range f.lines {
		if l.entry != nil {
			es = append(es, l.entry)
		}
	}
	return es
}

// Get returns the entry for a target, if the file has one.
func (f *File) Get(t Target) *Entry {
	key := t.Key()
	for _, l := range f.lines {
		if l.entry != nil && l.entry.Target.Key() == key {
			return l.entry
		}
	}
	return nil
}

// Set adds an entry for e.Target, or replaces the options and comment of
// the existing one in place. It reports whether the file changed.
func (f *File) Set(e Entry) bool {
	key := e.Target.Key()
	for i, l := range f.lines {
		if l.entry == nil || l.entry.Target.Key() != key {
			continue
		}
		if l.entry.Options == e.Options && (e.Comment == "" || e.Comment == l.entry.Comment) {
			return false
		}
		if e.Comment == "" {
			e.Comment = l.entry.Comment
		}
		e.Line = l.entry.Line
		f.lines[i] = line{text: e.String(), entry: &e}
		return true
	}
	e.Line = len(f.lines) + 1
	f.lines = append(f.lines, line{text: e.String(), entry: &e})
	return true
}

// Remove deletes the entry for t and reports whether there was one.
func (f *File) Remove(t Target) bool {
	key := t.Key()
	for i, l := range f.lines {
		if l.entry != nil && l.entry.Target.Key() == key {
			f.lines = append(f.lines[:i], f.lines[i+1:]...)
			f.renumber()
			return true
		}
	}
	return false
}

func (f *File) renumber() {
	for i, l := range f.lines {
		if l.entry != nil {
			l.entry.Line = i + 1
		}
	}
}

// Bytes renders the file: untouched lines exactly as read.
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Compile builds the lookup index of the file's entries.
func (f *File) Compile() *Policy {
	return New(f.Entries())
}
