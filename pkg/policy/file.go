package policy

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/regularfile"
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
	s := e.Target.Written()
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
	// index maps Target.Key() to the entry, catch-all included. It is
	// built once while parsing and handed to Compile when no edit has
	// happened since, so loading a large file hashes each key once.
	index map[string]*Entry
	dirty bool
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
	nlines := bytes.Count(data, []byte{'\n'}) + 1
	f.lines = make([]line, 0, nlines)
	f.index = make(map[string]*Entry, nlines)
	slab := make([]Entry, 0, nlines) // one allocation for every entry
	n := 0
	for len(text) > 0 {
		n++
		var raw string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			raw, text = text[:i], text[i+1:]
		} else {
			raw, text = text, ""
		}
		slab = append(slab, Entry{})
		e := &slab[len(slab)-1]
		found, err := parseLine(e, raw, n)
		if err != nil {
			err.File = name
			return nil, err
		}
		if !found {
			slab = slab[:len(slab)-1]
			f.lines = append(f.lines, line{text: raw})
			continue
		}
		key := e.Target.Key()
		if first, dup := f.index[key]; dup {
			return nil, &ParseError{name, n, firstNonSpace(raw),
				fmt.Sprintf("second entry for %s (first on line %d)", key, first.Line)}
		}
		f.index[key] = e
		f.lines = append(f.lines, line{text: raw, entry: e})
	}
	return f, nil
}

// MaxFileSize bounds a policy file. A policy of 100,000 entries is a few
// MB; the bound keeps a path pointed at a runaway file from exhausting
// the relay's memory, and edits never write a file the relay would
// refuse.
const MaxFileSize = 32 << 20

// ReadFile parses the policy file at path. A missing file is an empty
// policy: a fresh install runs with nothing enforced. Only a regular file
// of at most MaxFileSize bytes is read; a FIFO or device at path is an
// error, not a read that never ends.
func ReadFile(path string) (*File, error) {
	data, err := regularfile.ReadFile(path, MaxFileSize)
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

// parseLine fills e from a line and reports whether the line holds an
// entry; blank and comment lines do not.
func parseLine(e *Entry, raw string, n int) (bool, *ParseError) {
	body, comment := raw, ""
	// '#' starts a comment at the start of the line or after white space,
	// so an address such as a#b@example.com stays one token.
	for i := 0; i < len(raw); i++ {
		if raw[i] == '#' && (i == 0 || isSpace(raw[i-1])) {
			body, comment = raw[:i], strings.TrimSpace(raw[i+1:])
			break
		}
	}
	found := false
	var seen [8]string // option keys on this line; there are five
	nseen := 0
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
		if !found {
			t, err := ParseTarget(tok)
			if err != nil {
				return false, &ParseError{Line: n, Col: col, Msg: fmt.Sprintf("bad target %q: %v", tok, err)}
			}
			*e = Entry{Target: t, Options: DefaultOptions(), Line: n, Comment: comment}
			found = true
			continue
		}
		key, value, ok := strings.Cut(tok, "=")
		if !ok {
			return false, &ParseError{Line: n, Col: col, Msg: fmt.Sprintf("%q: want key=value after the target", tok)}
		}
		if err := e.Options.Set(key, value); err != nil {
			return false, &ParseError{Line: n, Col: col, Msg: err.Error()}
		}
		for _, k := range seen[:nseen] {
			if k == key {
				return false, &ParseError{Line: n, Col: col, Msg: fmt.Sprintf("%s given twice", key)}
			}
		}
		seen[nseen] = key
		nseen++
	}
	return found, nil
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
	return f.keyIndex()[t.Key()]
}

// keyIndex returns the index, rebuilding it after Compile took it.
func (f *File) keyIndex() map[string]*Entry {
	if f.index == nil {
		f.index = make(map[string]*Entry, len(f.lines))
		for _, l := range f.lines {
			if l.entry != nil {
				f.index[l.entry.Target.Key()] = l.entry
			}
		}
	}
	return f.index
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
		f.keyIndex()[key], f.dirty = &e, true
		return true
	}
	e.Line = len(f.lines) + 1
	f.lines = append(f.lines, line{text: e.String(), entry: &e})
	f.keyIndex()[key], f.dirty = &e, true
	return true
}

// Remove deletes the entry for t and reports whether there was one.
func (f *File) Remove(t Target) bool {
	key := t.Key()
	for i, l := range f.lines {
		if l.entry != nil && l.entry.Target.Key() == key {
			f.lines = append(f.lines[:i], f.lines[i+1:]...)
			delete(f.keyIndex(), key)
			f.dirty = true
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
	if f.dirty || f.index == nil {
		return New(f.Entries())
	}
	p := &Policy{index: f.index, entries: f.Entries()}
	if c := f.index["*"]; c != nil {
		p.catchAll = c
	}
	f.index = nil // the Policy owns it now; keyIndex rebuilds for edits
	f.dirty = true
	return p
}
