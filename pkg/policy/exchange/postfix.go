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
// default entry; verify and secure verify=cert; dane-only verify=dane.
// dane is opportunistic DANE: mode=off, since smgctl honours published
// TLSA records for every domain anyway (a note says so); fingerprint
// keeps its encryption requirement and is reported.
// Attributes: protocols= gives min-tls (both the ">=TLSv1.2" and the
// "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1" spellings); ciphers= gives bits by
// OpenSSL grade (high 128, medium 112, low 56, export 40).
//
// Keys: Postfix matches "domain" exactly and ".domain" for subdomains
// only, while an smgctl entry always covers both (B1). A ".domain" key is
// imported as the entry "domain": for the subdomains that is exact, and
// the bare domain gets the same requirement too — stricter than Postfix,
// never weaker, so it is a note, not a loss. (A ".domain" that exempts,
// none/may/dane, would exempt the bare domain from broader entries too:
// that is weaker, and reported as lost.) A "domain" and ".domain" pair
// becomes one entry; with different policies the stricter of the two
// (postfixStricter) applies to both, and a note says so. A lone bare
// "domain" is imported and then also covers the subdomains Postfix would
// have left alone. Next-hop keys ([host]:port) and address keys are
// reported: the table is looked up by next-hop domain only.
//
// Lines Postfix itself would reject — no security level, an unknown
// level, a bad domain, an attribute that is not name=value or that
// Postfix does not know, an unknown protocol or cipher grade — are
// invalid input (Note.Invalid).
func ReadPostfix(data []byte) *Result {
	c := newCollector()
	// keyLines remembers, per target, where its bare and its dot key
	// were first seen and what each said on its own, so that repeats are
	// judged against the line they repeat, not against a merged entry.
	type keyLines struct {
		bare, dot         int // first line of each key; 0 when absent
		bareOpts, dotOpts policy.Options
	}
	keys := map[string]*keyLines{}

	for _, ll := range logicalLines(data) {
		n, s := ll.line, ll.text
		fields := strings.Fields(s)
		key := fields[0]
		if len(fields) < 2 {
			c.res.invalid(n, "%s has no security level (want KEY LEVEL [name=value ...])", key)
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
			c.res.invalid(n, "%s: %s", fields[0], msg)
			continue
		}
		e := policy.Entry{Target: t, Options: policy.DefaultOptions()}
		if !postfixPolicy(c.res, n, fields[1], fields[2:], &e.Options) {
			continue
		}
		tk := t.Key()
		kl := keys[tk]
		if kl == nil {
			kl = &keyLines{}
			keys[tk] = kl
		}
		first, firstOpts := kl.bare, kl.bareOpts
		if dot {
			first, firstOpts = kl.dot, kl.dotOpts
		}
		if first != 0 {
			// The same key again: postmap keeps the first.
			if firstOpts == e.Options {
				c.res.note(n, false, "%s again (first on line %d); imported once", fields[0], first)
			} else {
				c.res.note(n, true, "%s again with another policy (first on line %d, which postmap keeps); not imported", fields[0], first)
			}
			continue
		}
		if dot {
			kl.dot, kl.dotOpts = n, e.Options
		} else {
			kl.bare, kl.bareOpts = n, e.Options
		}
		i, twin := c.index[tk]
		if !twin {
			e.Line = 0
			c.first[tk] = n
			c.index[tk] = len(c.res.Entries)
			c.res.Entries = append(c.res.Entries, e)
			continue
		}
		// The other key of the pair: one smgctl entry covers both.
		prev := &c.res.Entries[i]
		if prev.Options == e.Options {
			continue // exact
		}
		merged := postfixStricter(prev.Options, e.Options)
		other, otherLine := "."+tk, c.first[tk]
		if dot {
			other = tk
		}
		c.res.note(n, false, "%s and %s (line %d) have different policies; one smgctl entry covers %s and its subdomains alike, so the stricter applies to both: %s",
			fields[0], other, otherLine, tk, describe(merged))
		prev.Options = merged
	}
	for tk, kl := range keys {
		if kl.dot == 0 || kl.bare != 0 {
			continue
		}
		if kl.dotOpts.Mode == policy.ModeOff {
			c.res.note(kl.dot, true, ".%s imported as %s mode=off, which also exempts %s itself from any broader entry (Postfix left it to the default level)", tk, tk, tk)
		} else {
			c.res.note(kl.dot, false, ".%s imported as %s, which also covers %s itself", tk, tk, tk)
		}
	}
	sortNotes(c.res.Notes)
	return c.res
}

// postfixStricter is the requirement that meets both a and b: the higher
// bits and minimum version, verify=cert if either verifies, the stricter
// mode (enforce over testing over off) and on-fail. Used when a Postfix
// "domain" and ".domain" pair disagree: one smgctl entry must cover both,
// and it must never be weaker than either.
func postfixStricter(a, b policy.Options) policy.Options {
	return policy.Options{
		Bits:   max(a.Bits, b.Bits),
		MinTLS: max(a.MinTLS, b.MinTLS),
		Verify: max(a.Verify, b.Verify), // VerifyDANE > VerifyCert > VerifyNone
		Mode:   min(a.Mode, b.Mode),     // ModeEnforce < ModeTesting < ModeOff
		OnFail: min(a.OnFail, b.OnFail), // OnFailBounce < OnFailDefer
	}
}

// describe spells out options, "the default requirement" for none.
func describe(o policy.Options) string {
	if s := o.String(); s != "" {
		return s
	}
	return "the default requirement (bits=112)"
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
// when the line is invalid (res has the reason).
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
		res.note(n, false, "dane: imported as mode=off; smgctl honours published TLSA records for every domain, as Postfix's dane level does, unless published policies are switched off in the relay's settings")
	case "dane-only":
		o.Verify = policy.VerifyDANE // RFC 7672 §2.2: DANE authentication or no delivery
	case "fingerprint":
		res.note(n, true, "fingerprint: certificate pinning cannot be expressed; imported as an encryption requirement only")
	default:
		res.invalid(n, "unknown security level %q (want none, may, encrypt, dane, dane-only, fingerprint, verify or secure)", level)
		return false
	}
	for _, a := range attrs {
		name, value, ok := strings.Cut(a, "=")
		if !ok {
			res.invalid(n, "attribute %q is not name=value", a)
			return false
		}
		switch strings.ToLower(name) {
		case "protocols":
			if !postfixProtocols(res, n, value, o, enforced) {
				return false
			}
		case "ciphers":
			if !postfixCiphers(res, n, value, o, enforced) {
				return false
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
		case "exclude", "tafile":
			if enforced {
				res.note(n, true, "attribute %s= cannot be expressed; ignored", name)
			}
		default:
			res.invalid(n, "unknown attribute %s= (Postfix knows ciphers, protocols, exclude, match, tafile, connection_reuse, servername, enable_rpk)", name)
			return false
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
// a gap is reported. An unknown protocol name, or a list that allows no
// protocol at all, is invalid (false), whether or not the level enforces
// anything: Postfix refuses such a list. Only an enforcing level (apply)
// changes o.
func postfixProtocols(res *Result, n int, value string, o *policy.Options, apply bool) bool {
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
			res.invalid(n, "protocols=%s: unknown protocol %q (want SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)", value, t)
			return false
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
		res.invalid(n, "protocols=%s allows no protocol", value)
		return false
	}
	if !apply {
		return true
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
	return true
}

// cipherGradeBits is the weakest effective strength each Postfix cipher
// grade admits (postconf(5) "tls_high_cipherlist" etc., on OpenSSL's HIGH,
// MEDIUM, LOW and EXPORT classes): HIGH starts at AES-128, MEDIUM at 3DES,
// LOW at single DES, EXPORT at 40 bits.
var cipherGradeBits = map[string]int{"high": 128, "medium": 112, "low": 56, "export": 40}

// postfixCiphers applies a cipher grade. "null" is a valid grade (no
// encryption at all) that smgctl cannot express; anything else outside
// the five grades is invalid (false).
func postfixCiphers(res *Result, n int, value string, o *policy.Options, apply bool) bool {
	bits, ok := cipherGradeBits[strings.ToLower(value)]
	switch {
	case !ok && strings.EqualFold(value, "null"):
		if apply {
			res.note(n, true, "ciphers=%s cannot be expressed as a number of bits; ignored", value)
		}
	case !ok:
		res.invalid(n, "ciphers=%s: unknown cipher grade (want high, medium, low, export or null)", value)
		return false
	case apply:
		o.Bits = bits
	}
	return true
}

// sortNotes orders notes by line, keeping the order of notes on one line.
func sortNotes(notes []Note) {
	slices.SortStableFunc(notes, func(a, b Note) int { return cmp.Compare(a.Line, b.Line) })
}
