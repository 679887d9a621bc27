// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461) for
// the sending side: the _mta-sts TXT record, the policy file fetched over
// HTTPS, the mx pattern match, and an on-disk cache of policies that the
// relay's delivery consults without waiting once it is warm. The probe
// reports with the same parser and fetcher, so the two cannot disagree.
package mtasts

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Mode is a policy's mode (RFC 8461 §5).
type Mode string

// The three modes of RFC 8461 §3.2.
const (
	ModeEnforce Mode = "enforce" // deliver only to matching MX hosts over verified TLS 1.2+
	ModeTesting Mode = "testing" // deliver anyway, report what would have failed
	ModeNone    Mode = "none"    // the domain withdrew its policy (RFC 8461 §8.3)
)

// Policy is a parsed policy file (RFC 8461 §3.2). MX holds the patterns
// lower-cased, without a trailing dot, in the file's order.
type Policy struct {
	Version string   `json:"version"`
	Mode    Mode     `json:"mode"`
	MX      []string `json:"mx"`
	MaxAge  int      `json:"max_age"` // seconds
}

// MaxPolicySize is the most a sender reads of a policy file; a longer
// one is refused, not truncated (RFC 8461 §3.3 suggests 64 KiB).
const MaxPolicySize = 64 * 1024

// MaxMaxAge is RFC 8461 §3.2's upper bound for max_age: 31557600
// seconds, a year.
const MaxMaxAge = 31557600

// ParsePolicy parses a policy file strictly by RFC 8461 §3.2's grammar:
// lines "key:" *WSP value *WSP ended by LF or CRLF, no space before the
// colon, the values of version, mode, max_age (1–10 digits, at most a
// year) and mx (["*."] RFC 5321 Domain) exactly as the grammar has them.
// Extension keys are checked for syntax and otherwise ignored. A key
// other than mx given twice keeps its first value. Empty lines are
// skipped (they carry nothing); a trailing dot on an mx name is dropped.
// version, mode and max_age are required, and one mx at least unless the
// mode is none.
func ParsePolicy(body []byte) (Policy, error) {
	var p Policy
	seen := map[string]bool{}
	for n, line := range strings.Split(string(body), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("line %d: no ':' in %q", n+1, clip(line))
		}
		value = strings.Trim(value, " \t")
		if !validKey(key) {
			return Policy{}, fmt.Errorf("line %d: %q is not a field name", n+1, clip(key))
		}
		if key != "mx" && seen[key] {
			continue
		}
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return Policy{}, fmt.Errorf("line %d: version %q, want STSv1", n+1, clip(value))
			}
			p.Version = value
		case "mode":
			switch m := Mode(value); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return Policy{}, fmt.Errorf("line %d: mode %q, want enforce, testing or none", n+1, clip(value))
			}
		case "max_age":
			age, ok := parseMaxAge(value)
			if !ok {
				return Policy{}, fmt.Errorf("line %d: max_age %q, want 0 to %d", n+1, clip(value), MaxMaxAge)
			}
			p.MaxAge = age
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(value, "."))
			if !validMXPattern(pat) {
				return Policy{}, fmt.Errorf("line %d: mx %q is not a host name or *.domain pattern", n+1, clip(value))
			}
			p.MX = append(p.MX, pat)
		default:
			if !validExtValue(value) {
				return Policy{}, fmt.Errorf("line %d: %s value %q has control characters", n+1, key, clip(value))
			}
		}
	}
	switch {
	case p.Version == "":
		return Policy{}, errors.New("no version field")
	case p.Mode == "":
		return Policy{}, errors.New("no mode field")
	case !seen["max_age"]:
		return Policy{}, errors.New("no max_age field")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return Policy{}, errors.New("no mx field")
	}
	return p, nil
}

// String is the policy in canonical form (CRLF lines, RFC 8461 §3.2
// order); ParsePolicy reads it back to the same Policy. The cache stores
// this text.
func (p Policy) String() string {
	var b strings.Builder
	b.WriteString("version: " + p.Version + "\r\nmode: " + string(p.Mode) + "\r\n")
	for _, m := range p.MX {
		b.WriteString("mx: " + m + "\r\n")
	}
	b.WriteString("max_age: " + strconv.Itoa(p.MaxAge) + "\r\n")
	return b.String()
}

// MatchMX reports whether host may receive mail under the policy (RFC
// 8461 §4.1): a pattern equal to host, or "*.domain" where host is one
// label (the left-most) followed by domain. Case and a trailing dot do
// not matter. The match is pkg/policy's, which the relay's decision uses.
func (p Policy) MatchMX(host string) bool {
	return slices.ContainsFunc(p.MX, func(pat string) bool { return policy.MatchMX(pat, host) })
}

// validKey: version, mode, max_age, mx or an extension name,
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".") (RFC 8461 §3.2).
func validKey(k string) bool {
	if k == "" || len(k) > 32 || !isAlnum(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validExtValue: sts-policy-vchar *(*WSP sts-policy-vchar), visible
// ASCII or UTF-8 with blanks inside (RFC 8461 §3.2).
func validExtValue(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f || r == 0xfffd {
			return false
		}
	}
	return true
}

// parseMaxAge: 1*10(DIGIT), at most MaxMaxAge (RFC 8461 §3.2). No sign,
// no spaces: strconv.Atoi alone would take "+5".
func parseMaxAge(v string) (int, bool) {
	if v == "" || len(v) > 10 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n <= MaxMaxAge
}

// validMXPattern: ["*."] Domain (RFC 8461 §3.2 with RFC 5321 §4.1.2's
// Domain: labels of letters, digits and inner hyphens), lower case.
func validMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' || c >= 'A' && c <= 'Z' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
