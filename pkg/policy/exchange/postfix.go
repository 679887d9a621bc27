package exchange

import (
	"cmp"
	"slices"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// ReadPostfix reads an smtp_tls_policy_maps table in postmap(1) source
// form (postconf(5) "smtp_tls_policy_maps", TLS_README "TLS policy
// table"):
//
//	partner.com     encrypt
//	.partner.com    encrypt
//	bank.example    secure protocols=>=TLSv1.2 ciphers=high
//	legacy.example  may
//
// Levels: none and may become mode=off (no requirement); encrypt the
// default entry; verify and secure verify=cert. dane is opportunistic
// DANE, mode=off with a note that its enforcement is lost; dane-only and
// fingerprint keep their encryption requirement and are reported.
// Attributes: protocols= gives min-tls (both the ">=TLSv1.2" and the
// "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1" spellings); ciphers= gives bits by
// OpenSSL grade (high 128, medium 112, low 56, export 40).
//
// Keys: Postfix matches "domain" exactly and ".domain" for subdomains
// only, while an smgctl entry always covers both (B1). So a "domain" and
// ".domain" pair with the same policy becomes one entry; a ".domain"
// without its bare twin (or with another policy) cannot be expressed and
// is reported. A lone bare "domain" is imported and then also covers the
// subdomains Postfix would have left alone. Next-hop keys ([host]:port)
// and address keys are reported: the table is looked up by next-hop
// domain only.
func ReadPostfix(data []byte) *Result {
	c := newCollector()
	type dotKey struct {
		line int
		e    policy.Entry
	}
	var dots []dotKey
	dotSeen := map[string]int{}

	for _, ll := range logicalLines(data) {
		n, s := ll.line, ll.text
		fields := strings.Fields(s)
		key := fields[0]
		if len(fields) < 2 {
			c.res.note(n, true, "%s has no security level; not imported", key)
			continue
		}
		dot := false
		switch {
		case strings.HasPrefix(key, "/"):
			c.res.note(n, true, "%s: regular-expression keys cannot be imported; not imported", key)
			continue
		case strings.HasPrefix(key, "[") || strings.Contains(key, ":"):
			c.res.note(n, true, "%s is a next-hop key, not a recipient domain; not imported", key)
			continue
		case strings.Contains(key, "@"):
			c.res.note(n, true, "%s: Postfix looks this table up by next-hop domain, so an address key never matched; not imported", key)
			continue
		case strings.HasPrefix(key, "."):
			dot = true
			key = key[1:]
		}
		t, err := policy.ParseTarget(key)
		if err != nil || t.Kind != policy.KindDomain {
			msg := "not a domain"
			if err != nil {
				msg = err.Error()
			}
			c.res.note(n, true, "%s: %s; not imported", fields[0], msg)
			continue
		}
		e := policy.Entry{Target: t, Options: policy.DefaultOptions()}
		if !postfixPolicy(c.res, n, fields[1], fields[2:], &e.Options) {
			continue
		}
		if dot {
			if first, dup := dotSeen[t.Key()]; dup {
				c.res.note(n, true, "%s again (first on line %d, which postmap keeps); not imported", fields[0], first)
				continue
			}
			dotSeen[t.Key()] = n
			dots = append(dots, dotKey{n, e})
			continue
		}
		c.add(n, e)
	}
	for _, d := range dots {
		key := d.e.Target.Key()
		first, ok := c.first[key]
		switch {
		case ok && c.res.Entries[c.index[key]].Options == d.e.Options:
			// Exact: the bare entry already covers the subdomains (B1).
		case ok:
			c.res.note(d.line, true, ".%s has another policy than %s (line %d); an smgctl entry covers a domain and its subdomains alike, so %s's applies; not imported", key, key, first, key)
		default:
			c.res.note(d.line, true, ".%s matches only the subdomains of %s, which smgctl cannot express (an entry for %s also covers %s itself); not imported", key, key, key, key)
		}
	}
	sortNotes(c.res.Notes)
	return c.res
}

type logicalLine struct {
	line int
	text string
}

// logicalLines joins postmap(1) continuation lines (those starting with
// white space) and drops blank and comment lines.
func logicalLines(data []byte) []logicalLine {
	var out []logicalLine
	for i, raw := range lines(data) {
		trimmed := strings.TrimSpace(raw)
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if (raw[0] == ' ' || raw[0] == '\t') && len(out) > 0 {
			out[len(out)-1].text += " " + trimmed
			continue
		}
		out = append(out, logicalLine{i + 1, trimmed})
	}
	return out
}

// postfixPolicy maps a security level and its attributes onto o; false
// when the line cannot be imported.
func postfixPolicy(res *Result, n int, level string, attrs []string, o *policy.Options) bool {
	enforced := true
	switch strings.ToLower(level) {
	case "none", "may":
		*o = policy.DefaultOptions()
		o.Mode = policy.ModeOff
		enforced = false
	case "encrypt":
	case "verify", "secure":
		o.Verify = policy.VerifyCert
		if strings.EqualFold(level, "secure") && !hasAttr(attrs, "match") {
			res.note(n, true, "secure: the certificate will be matched against the MX host name (Postfix match=hostname), not the next-hop domain (match=nexthop:dot-nexthop)")
		}
	case "dane":
		*o = policy.DefaultOptions()
		o.Mode = policy.ModeOff
		enforced = false
		res.note(n, true, "dane: smgctl does not enforce DANE; imported as mode=off (opportunistic), so a published TLSA record no longer makes TLS mandatory")
	case "dane-only":
		res.note(n, true, "dane-only: authentication by DANE TLSA records cannot be expressed; imported as an encryption requirement only")
	case "fingerprint":
		res.note(n, true, "fingerprint: certificate pinning cannot be expressed; imported as an encryption requirement only")
	default:
		res.note(n, true, "unknown security level %q; not imported", level)
		return false
	}
	for _, a := range attrs {
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			res.note(n, true, "attribute %q is not name=value; ignored", a)
			continue
		}
		switch strings.ToLower(name) {
		case "protocols":
			if enforced {
				postfixProtocols(res, n, value, o)
			}
		case "ciphers":
			if enforced {
				postfixCiphers(res, n, value, o)
			}
		case "match":
			if !enforced {
				continue
			}
			if o.Verify == policy.VerifyCert && strings.EqualFold(value, "hostname") {
				continue // what verify=cert checks
			}
			res.note(n, true, "match=%s: smgctl matches the certificate against the MX host name only; ignored", value)
		case "connection_reuse", "servername", "enable_rpk":
			// Transport behaviour, no bearing on what the policy requires.
		default:
			res.note(n, true, "attribute %s= cannot be expressed; ignored", name)
		}
	}
	return true
}

func hasAttr(attrs []string, name string) bool {
	for _, a := range attrs {
		if k, _, _ := strings.Cut(a, "="); strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// protocolNames in order; indexes compare as versions.
var protocolNames = []string{"sslv2", "sslv3", "tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3"}

// minTLSFor maps an index into protocolNames to a min-tls value.
var minTLSFor = map[int]string{2: "1.0", 3: "1.1", 4: "1.2", 5: "1.3"}

func protocolIndex(name string) int {
	for i, p := range protocolNames {
		if strings.EqualFold(name, p) {
			return i
		}
	}
	return -1
}

// postfixProtocols applies a Postfix protocol list: names to include,
// !names to exclude, or >=/<= bounds (Postfix 3.6), separated by colons,
// commas or spaces. smgctl can only set a lower bound: an upper bound or
// a gap is reported.
func postfixProtocols(res *Result, n int, value string, o *policy.Options) {
	allowed := make([]bool, len(protocolNames))
	include := false
	toks := strings.FieldsFunc(value, func(r rune) bool { return r == ':' || r == ',' || r == ' ' })
	for _, t := range toks {
		if !strings.HasPrefix(t, "!") && !strings.HasPrefix(t, ">=") && !strings.HasPrefix(t, "<=") {
			include = true
		}
	}
	for i := range allowed {
		allowed[i] = !include
	}
	for _, t := range toks {
		var i int
		switch {
		case strings.HasPrefix(t, ">="):
			if i = protocolIndex(t[2:]); i >= 0 {
				for j := 0; j < i; j++ {
					allowed[j] = false
				}
			}
		case strings.HasPrefix(t, "<="):
			if i = protocolIndex(t[2:]); i >= 0 {
				for j := i + 1; j < len(allowed); j++ {
					allowed[j] = false
				}
			}
		case strings.HasPrefix(t, "!"):
			if i = protocolIndex(t[1:]); i >= 0 {
				allowed[i] = false
			}
		default:
			if i = protocolIndex(t); i >= 0 {
				allowed[i] = true
			}
		}
		if i < 0 {
			res.note(n, true, "protocols=%s: unknown protocol %q; ignored", value, t)
		}
	}
	lo := -1
	for i, ok := range allowed {
		if ok {
			lo = i
			break
		}
	}
	if lo < 0 {
		res.note(n, true, "protocols=%s allows no protocol; ignored", value)
		return
	}
	for i := lo; i < len(allowed); i++ {
		if !allowed[i] {
			res.note(n, true, "protocols=%s: smgctl sets only a minimum version; the upper limit or gap is ignored", value)
			break
		}
	}
	if v, ok := minTLSFor[lo]; ok {
		o.Set("min-tls", v)
	}
}

// cipherGradeBits is the weakest effective strength each Postfix cipher
// grade admits (postconf(5) "tls_high_cipherlist" etc., on OpenSSL's HIGH,
// MEDIUM, LOW and EXPORT classes): HIGH starts at AES-128, MEDIUM at 3DES,
// LOW at single DES, EXPORT at 40 bits.
var cipherGradeBits = map[string]int{"high": 128, "medium": 112, "low": 56, "export": 40}

func postfixCiphers(res *Result, n int, value string, o *policy.Options) {
	bits, ok := cipherGradeBits[strings.ToLower(value)]
	if !ok {
		res.note(n, true, "ciphers=%s cannot be expressed as a number of bits; ignored", value)
		return
	}
	o.Bits = bits
}

// sortNotes orders notes by line, keeping the order of notes on one line.
func sortNotes(notes []Note) {
	slices.SortStableFunc(notes, func(a, b Note) int { return cmp.Compare(a.Line, b.Line) })
}
