package exchange

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/policy/store"
)

// JSONVersion is the version of the JSON list schema written and read.
const JSONVersion = 1

// JSONList is smgctl's JSON list, the form `policy export --format json`
// writes and `policy import --format json` reads
// (docs/schemas/policy-export.schema.json):
//
//	{"schema_version": 1, "entries": [{"target": "bank.example", "bits": 256,
//	  "min_tls": "1.2", "verify": "cert", "mode": "enforce",
//	  "on_fail": "bounce", "comment": "per contract"}]}
//
// Export writes every option; on import every field but target may be
// left out and takes its default. Unknown fields are errors, so a typo
// cannot quietly drop a requirement. Import also reads the spelling of
// lists exported before smgctl's JSON became snake_case everywhere:
// "version", "min-tls" and "on-fail".
type JSONList struct {
	Version int         `json:"schema_version"`
	Entries []JSONEntry `json:"entries"`
}

// JSONEntry is one entry of a JSONList. Target "*" (or "") is the
// catch-all.
type JSONEntry struct {
	Target  string  `json:"target"`
	Bits    *int    `json:"bits,omitempty"`
	MinTLS  *string `json:"min_tls,omitempty"`
	Verify  *string `json:"verify,omitempty"`
	Mode    *string `json:"mode,omitempty"`
	OnFail  *string `json:"on_fail,omitempty"`
	Comment string  `json:"comment,omitempty"`
}

// jsonEntryIn is a JSONEntry as import reads it: the snake_case keys or
// the hyphenated ones lists exported by older versions carry, not both.
type jsonEntryIn struct {
	JSONEntry
	OldMinTLS *string `json:"min-tls,omitempty"`
	OldOnFail *string `json:"on-fail,omitempty"`
}

// entry folds the old spellings into the JSONEntry.
func (j jsonEntryIn) entry() (JSONEntry, error) {
	e := j.JSONEntry
	for _, f := range []struct {
		name, old string
		cur       **string
		was       *string
	}{{"min_tls", "min-tls", &e.MinTLS, j.OldMinTLS}, {"on_fail", "on-fail", &e.OnFail, j.OldOnFail}} {
		if f.was == nil {
			continue
		}
		if *f.cur != nil {
			return e, fmt.Errorf("both %q and %q: give %s once", f.name, f.old, f.name)
		}
		*f.cur = f.was
	}
	return e, nil
}

// NewJSONEntry renders an entry with every option spelt out.
func NewJSONEntry(e *policy.Entry) JSONEntry {
	str := func(k string) *string { v := e.Options.Get(k); return &v }
	bits := e.Options.Bits
	return JSONEntry{
		Target:  e.Target.Key(),
		Bits:    &bits,
		MinTLS:  str("min-tls"),
		Verify:  str("verify"),
		Mode:    str("mode"),
		OnFail:  str("on-fail"),
		Comment: e.Comment,
	}
}

// Entry converts to a policy entry, checking every value as the policy
// file parser would.
func (j JSONEntry) Entry() (policy.Entry, error) {
	t, err := policy.ParseTarget(j.Target)
	if err != nil {
		return policy.Entry{}, fmt.Errorf("bad target %q: %v", j.Target, err)
	}
	e := policy.Entry{Target: t, Options: policy.DefaultOptions(), Comment: j.Comment}
	set := func(key string, v *string) error {
		if v == nil {
			return nil
		}
		return e.Options.Set(key, *v)
	}
	var bits *string
	if j.Bits != nil {
		b := strconv.Itoa(*j.Bits)
		bits = &b
	}
	for _, kv := range []struct {
		key string
		v   *string
	}{{"bits", bits}, {"min-tls", j.MinTLS}, {"verify", j.Verify}, {"mode", j.Mode}, {"on-fail", j.OnFail}} {
		if err := set(kv.key, kv.v); err != nil {
			return policy.Entry{}, fmt.Errorf("%s: %v", t.Key(), err)
		}
	}
	if err := store.CheckComment(j.Comment); err != nil {
		return policy.Entry{}, fmt.Errorf("%s: %v", t.Key(), err)
	}
	return e, nil
}

// WriteJSON writes entries as a JSONList, indented, with a final newline.
func WriteJSON(w io.Writer, entries []*policy.Entry) error {
	l := JSONList{Version: JSONVersion, Entries: make([]JSONEntry, 0, len(entries))}
	for _, e := range entries {
		l.Entries = append(l.Entries, NewJSONEntry(e))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}

// ReadJSON reads a JSONList. JSON is smgctl's own format, so it is read
// all or nothing: any bad entry is an *InputError naming its line, and
// a second entry for a target is one too (as in a policy file).
func ReadJSON(name string, data []byte) (*Result, error) {
	fail := func(off int64, format string, args ...any) error {
		line, col := position(data, off)
		return &InputError{Name: name, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonError(name, data, dec, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(0, `want a JSON object {"schema_version": 1, "entries": [...]}`)
	}
	res := &Result{}
	seen := map[string]int{}
	sawEntries, sawVersion := false, false
	for dec.More() {
		keyOff := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonError(name, data, dec, err)
		}
		switch key := tok.(string); key {
		case "schema_version", "version": // "version": as older versions exported
			if sawVersion {
				return nil, fail(keyOff, "a second schema_version")
			}
			sawVersion = true
			var v int
			if err := dec.Decode(&v); err != nil {
				return nil, jsonError(name, data, dec, err)
			}
			if v != JSONVersion {
				return nil, fail(keyOff, "version %d: this smgctl reads version %d", v, JSONVersion)
			}
		case "entries":
			sawEntries = true
			tok, err := dec.Token()
			if err != nil {
				return nil, jsonError(name, data, dec, err)
			}
			if tok == nil {
				continue
			}
			if d, ok := tok.(json.Delim); !ok || d != '[' {
				return nil, fail(keyOff, "entries: want an array")
			}
			for dec.More() {
				off := dec.InputOffset()
				var in jsonEntryIn
				if err := dec.Decode(&in); err != nil {
					var syn *json.SyntaxError
					if errors.As(err, &syn) {
						return nil, jsonError(name, data, dec, err)
					}
					// Unknown fields and wrong types: point at the entry.
					return nil, fail(off, "%s", strings.TrimPrefix(err.Error(), "json: "))
				}
				je, err := in.entry()
				if err != nil {
					return nil, fail(off, "%v", err)
				}
				e, err := je.Entry()
				if err != nil {
					return nil, fail(off, "%v", err)
				}
				line, _ := position(data, off)
				if first, dup := seen[e.Target.Key()]; dup {
					return nil, fail(off, "second entry for %s (first on line %d)", e.Target.Key(), first)
				}
				seen[e.Target.Key()] = line
				res.Entries = append(res.Entries, e)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, jsonError(name, data, dec, err)
			}
		default:
			return nil, fail(keyOff, "unknown field %q (want schema_version, entries)", key)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, jsonError(name, data, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(dec.InputOffset(), "data after the JSON object")
	}
	if !sawEntries {
		return nil, fail(0, `no "entries" field`)
	}
	return res, nil
}

// jsonError turns a decoder error into an *InputError with a position.
func jsonError(name string, data []byte, dec *json.Decoder, err error) error {
	off := dec.InputOffset()
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		// Decoder.Token and Decoder.Decode count syntax error offsets
		// differently; a one-shot scan of the whole input is consistent:
		// its offset is just past the offending byte.
		var v any
		if uerr := json.Unmarshal(data, &v); errors.As(uerr, &syn) {
			err = syn
			off = syn.Offset - 1
			if syn.Error() == "unexpected end of JSON input" {
				off = int64(len(data))
				err = errors.New("unexpected end of JSON")
			}
		} else {
			off = syn.Offset
		}
	case errors.As(err, &typ):
		off = typ.Offset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		off = int64(len(data))
		err = errors.New("unexpected end of JSON")
	}
	line, col := position(data, off)
	return &InputError{Name: name, Line: line, Col: col, Msg: strings.TrimPrefix(err.Error(), "json: ")}
}

// position turns a byte offset into a 1-based line and column, skipping
// the white space a decoder offset may point at.
func position(data []byte, off int64) (int, int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	for off < int64(len(data)) {
		c := data[off]
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != ',' && c != ':' {
			break
		}
		off++
	}
	if off == int64(len(data)) && off > 0 {
		off--
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) + 1
	if i := bytes.LastIndexByte(data[:off], '\n'); i >= 0 {
		col = int(off) - i
	}
	return line, col
}
