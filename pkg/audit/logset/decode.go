package logset

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/audit"
)

// Decode reads one audit line into rec, with exactly encoding/json's
// result. Lines as the relay writes them (the fields of audit.Record in
// any order, no escapes) take a single-pass path about ten times faster
// than encoding/json, which matters for a report over millions of lines;
// anything else — escapes, unknown or differently cased keys, odd
// numbers, errors — goes to encoding/json, so the fast path never decides
// a case differently (FuzzDecode holds it to that).
func Decode(line []byte, rec *audit.Record) error {
	d := decoder{b: line}
	return d.decode(rec)
}

func (d *decoder) decode(rec *audit.Record) error {
	*rec = audit.Record{}
	if d.record(rec) {
		return nil
	}
	*rec = audit.Record{}
	return json.Unmarshal(d.b, rec)
}

// Decoder decodes lines as Decode does, reusing memory from line to line:
// values that repeat across records (event, sender, policy entry, MX, IP,
// version, suite, diagnostic) are interned, up to maxIntern distinct
// strings, which saves most of the allocations of a long scan. The zero
// value is ready; a Decoder is not safe for concurrent use.
type Decoder struct {
	d      decoder
	intern map[string]string
}

// maxIntern bounds the interned strings, so memory stays independent of
// the log's length whatever its variety.
const maxIntern = 4096

// Decode reads one line into rec.
func (x *Decoder) Decode(line []byte, rec *audit.Record) error {
	x.d.b, x.d.i = line, 0
	if x.intern == nil {
		x.intern = map[string]string{}
	}
	x.d.intern = x.intern
	return x.d.decode(rec)
}

// decoder is a cursor over one line. Every method returns false for
// anything it does not handle exactly like encoding/json.
type decoder struct {
	b       []byte
	i       int
	scratch []byte
	intern  map[string]string
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) byte(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str returns a string's content, quotes excluded, unescaped into
// d.scratch when it has escapes (encoding/json writes <, > and & as
// \u003c …, so every Message-ID has some). Surrogate escapes, control
// characters and invalid UTF-8 are left to encoding/json, which replaces
// or refuses them.
func (d *decoder) str() ([]byte, bool) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	ascii, escaped := true, false
	j := start
	for ; j < len(d.b); j++ {
		c := d.b[j]
		if !special[c] {
			continue // the common case: one table lookup per byte
		}
		if c == '"' {
			break
		}
		switch {
		case c == '\\':
			escaped = true
			j++ // the escaped byte cannot end the string
		case c < 0x20:
			return nil, false
		default:
			ascii = false
		}
	}
	if j >= len(d.b) {
		return nil, false
	}
	s := d.b[start:j]
	if !ascii && !utf8.Valid(s) {
		return nil, false
	}
	d.i = j + 1
	if !escaped {
		return s, true
	}
	return d.unescape(s)
}

// special marks the bytes a string scan must look at: the quote, the
// backslash, control characters and non-ASCII.
var special = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80
	}
	return t
}()

func (d *decoder) unescape(s []byte) ([]byte, bool) {
	out := d.scratch[:0]
	for k := 0; k < len(s); k++ {
		c := s[k]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		k++
		if k >= len(s) {
			return nil, false
		}
		switch s[k] {
		case '"', '\\', '/':
			out = append(out, s[k])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if k+5 > len(s) {
				return nil, false
			}
			v, err := strconv.ParseUint(string(s[k+1:k+5]), 16, 16)
			if err != nil || (v >= 0xD800 && v <= 0xDFFF) {
				return nil, false
			}
			out = utf8.AppendRune(out, rune(v))
			k += 4
		default:
			return nil, false
		}
	}
	d.scratch = out
	return out, true
}

func (d *decoder) int() (int, bool) {
	d.ws()
	j := d.i
	if j < len(d.b) && d.b[j] == '-' {
		j++
	}
	digits := j
	for j < len(d.b) && d.b[j] >= '0' && d.b[j] <= '9' {
		j++
	}
	if j == digits || (d.b[digits] == '0' && j-digits > 1) {
		return 0, false
	}
	if j < len(d.b) {
		switch d.b[j] {
		case ',', '}', ' ', '\t', '\n', '\r':
		default:
			return 0, false // fraction or exponent: encoding/json's error
		}
	}
	n, err := strconv.ParseInt(string(d.b[d.i:j]), 10, 0)
	if err != nil {
		return 0, false
	}
	d.i = j
	return int(n), true
}

func (d *decoder) lit(s string) bool {
	d.ws()
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

func (d *decoder) bool() (bool, bool) {
	switch {
	case d.lit("true"):
		return true, true
	case d.lit("false"):
		return false, true
	}
	return false, false
}

// object walks {"key":value,...}, handing each key to field.
func (d *decoder) object(field func(key []byte) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.byte(':') || !field(key) {
			return false
		}
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

func (d *decoder) record(r *audit.Record) bool {
	ok := d.object(func(key []byte) bool {
		switch string(key) {
		case "time":
			d.ws()
			start := d.i
			if _, ok := d.str(); !ok {
				return false
			}
			return r.Time.UnmarshalJSON(d.b[start:d.i]) == nil
		case "event":
			return d.setCommon((*string)(&r.Event))
		case "queue_id":
			return d.setStr(&r.QueueID)
		case "message_id":
			return d.setStr(&r.MessageID)
		case "sender":
			return d.setCommon(&r.Sender)
		case "recipient":
			return d.setStr(&r.Recipient)
		case "policy_target":
			return d.setCommon(&r.PolicyTarget)
		case "policy_line":
			return d.setInt(&r.PolicyLine)
		case "requirement":
			if d.lit("null") {
				r.Requirement = nil
				return true
			}
			if r.Requirement == nil {
				r.Requirement = new(audit.Requirement)
			}
			return d.requirement(r.Requirement)
		case "mx":
			return d.setCommon(&r.MX)
		case "ip":
			return d.setCommon(&r.IP)
		case "tls":
			return d.setBool(&r.TLS)
		case "tls_version":
			return d.setCommon(&r.TLSVersion)
		case "cipher":
			return d.setCommon(&r.Cipher)
		case "bits":
			return d.setInt(&r.Bits)
		case "cert_verified":
			return d.setBool(&r.CertVerified)
		case "reply":
			return d.setStr(&r.Reply)
		case "diagnostic":
			return d.setCommon(&r.Diagnostic)
		case "attempt":
			return d.setInt(&r.Attempt)
		case "prev":
			return d.setStr(&r.Prev)
		case "auth":
			return d.setCommon(&r.Auth)
		case "tlsa":
			return d.setCommon(&r.TLSA)
		case "sts_policy_id":
			return d.setCommon(&r.STSPolicyID)
		case "sts_mode":
			return d.setCommon(&r.STSMode)
		case "policy_type":
			return d.setCommon(&r.PolicyType)
		case "result_type":
			return d.setCommon(&r.ResultType)
		case "published_ignored":
			return d.setBool(&r.PublishedIgnored)
		case "sending_ip":
			return d.setCommon(&r.SendingIP)
		case "seq", "cut_bytes", "uncovered":
			// The log's own lines (audit.Mark), about half of a log's
			// lines: no Record field, so encoding/json ignores them too.
			_, ok := d.int()
			return ok
		case "reason":
			_, ok := d.str()
			return ok
		}
		return false
	})
	if !ok {
		return false
	}
	d.ws()
	return d.i == len(d.b)
}

func (d *decoder) requirement(q *audit.Requirement) bool {
	return d.object(func(key []byte) bool {
		switch string(key) {
		case "bits":
			return d.setInt(&q.Bits)
		case "min_tls":
			return d.setCommon(&q.MinTLS)
		case "verify":
			return d.setCommon(&q.Verify)
		case "mode":
			return d.setCommon(&q.Mode)
		case "on_fail":
			return d.setCommon(&q.OnFail)
		}
		return false
	})
}

func (d *decoder) setStr(p *string) bool {
	s, ok := d.str()
	if ok {
		*p = string(s)
	}
	return ok
}

// setCommon is setStr for values that repeat from record to record.
func (d *decoder) setCommon(p *string) bool {
	s, ok := d.str()
	if !ok {
		return false
	}
	if v, hit := d.intern[string(s)]; hit {
		*p = v
		return true
	}
	*p = string(s)
	if d.intern != nil && len(d.intern) < maxIntern {
		d.intern[*p] = *p
	}
	return true
}

func (d *decoder) setInt(p *int) bool {
	n, ok := d.int()
	if ok {
		*p = n
	}
	return ok
}

func (d *decoder) setBool(p *bool) bool {
	v, ok := d.bool()
	if ok {
		*p = v
	}
	return ok
}
