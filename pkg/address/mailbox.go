// Package address reads and writes RFC 5321 mailboxes: the addresses of
// MAIL FROM and RCPT TO. An address is held as values (the local part as
// it is meant, the domain in its canonical form) and only ever turned back
// into text by Mailbox.String, which quotes what needs quoting. Nothing
// that came in as text goes out as the same text unchecked, so a quoted
// local part cannot smuggle "> NOTIFY=..." onto the next hop's command
// line.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Mailbox is RFC 5321 §4.1.2's Mailbox = Local-part "@" ( Domain /
// address-literal ). It is comparable: equal values are the same mailbox.
type Mailbox struct {
	// Local is the local part's value: a Quoted-string's quotes and
	// quoted-pairs removed. Its case is kept (RFC 5321 §2.4).
	Local string
	// Domain is CanonicalDomain's form of the domain, or an address
	// literal in canonical text: "[192.0.2.1]", "[IPv6:2001:db8::1]".
	Domain string
}

// String is the mailbox as it goes on an SMTP command line (without the
// angle brackets), with the minimum quoting possible (RFC 5321 §4.1.2).
func (m Mailbox) String() string {
	return QuoteLocal(m.Local) + "@" + m.Domain
}

// IsLiteral reports whether the domain is an address literal (§4.1.3).
func (m Mailbox) IsLiteral() bool { return strings.HasPrefix(m.Domain, "[") }

// ASCII reports whether the mailbox can be sent without SMTPUTF8 (RFC
// 6531): the domain always can, in its A-labels; the local part cannot
// always.
func (m Mailbox) ASCII() bool { return IsASCII(m.Local) }

// Parse reads a mailbox as written on an SMTP command line between the
// angle brackets: a Dot-string or Quoted-string local part (with RFC
// 6531's UTF-8 in either), "@", and a domain or an IPv4/IPv6 address
// literal. The domain is made canonical (CanonicalDomain).
func Parse(s string) (Mailbox, error) {
	if !utf8.ValidString(s) {
		return Mailbox{}, errors.New("address is not valid UTF-8")
	}
	var local, rest string
	var err error
	if strings.HasPrefix(s, `"`) {
		local, rest, err = parseQuoted(s)
	} else {
		local, rest, err = parseDotString(s)
	}
	if err != nil {
		return Mailbox{}, err
	}
	if !strings.HasPrefix(rest, "@") {
		return Mailbox{}, errors.New("no @ after the local part")
	}
	d, err := parseDomain(rest[1:])
	if err != nil {
		return Mailbox{}, err
	}
	return Mailbox{Local: local, Domain: d}, nil
}

// ParseValue reads an address whose local part is given as its value, the
// way an SMTP server library hands it over once it has removed the quotes:
// `a b@example.com` for `"a b"@example.com`. A domain never holds an "@"
// (§4.1.2), so the last one separates the two. The value must be one a
// Quoted-string can carry: no control characters (§4.1.2: qtextSMTP and
// quoted-pairSMTP are %d32-126, RFC 6531 adds UTF-8).
func ParseValue(s string) (Mailbox, error) {
	if !utf8.ValidString(s) {
		return Mailbox{}, errors.New("address is not valid UTF-8")
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Mailbox{}, errors.New("no @ in address")
	}
	local := s[:at]
	if err := checkValue(local); err != nil {
		return Mailbox{}, err
	}
	d, err := parseDomain(s[at+1:])
	if err != nil {
		return Mailbox{}, err
	}
	return Mailbox{Local: local, Domain: d}, nil
}

func checkValue(local string) error {
	if local == "" {
		return errors.New("empty local part")
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("control character %q in local part", c)
		}
	}
	return nil
}

// parseQuoted reads a Quoted-string (§4.1.2) at the start of s and returns
// its value and what follows it.
func parseQuoted(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			if b.Len() == 0 {
				return "", "", errors.New("empty local part")
			}
			return b.String(), s[i+1:], nil
		case c == '\\':
			// quoted-pairSMTP = %d92 %d32-126
			i++
			if i == len(s) || s[i] < ' ' || s[i] > '~' {
				return "", "", errors.New("bad quoted-pair in local part")
			}
			b.WriteByte(s[i])
		case c < ' ' || c == 0x7f:
			return "", "", fmt.Errorf("control character %q in local part", c)
		default: // qtextSMTP, or UTF-8 (RFC 6531 §3.3)
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted local part")
}

// parseDotString reads a Dot-string (§4.1.2) at the start of s.
func parseDotString(s string) (value, rest string, err error) {
	end := strings.IndexByte(s, '@')
	if end < 0 {
		end = len(s)
	}
	if !isDotString(s[:end]) {
		if end == 0 {
			return "", "", errors.New("empty local part")
		}
		return "", "", fmt.Errorf("local part %q needs quoting", s[:end])
	}
	return s[:end], s[end:], nil
}

// isDotString: Dot-string = Atom *("." Atom), Atom = 1*atext, where RFC
// 6531 §3.3 adds UTF-8 to atext.
func isDotString(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && !isAtext(c) {
			return false
		}
	}
	return true
}

// isAtext is RFC 5322 §3.2.3's atext, which RFC 5321 §4.1.2 uses, plus
// the octets of UTF-8 (RFC 6531 §3.3; the caller checks the encoding).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c >= utf8.RuneSelf:
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// QuoteLocal writes a local part's value as a Dot-string when it is one,
// else as a Quoted-string with a backslash before only `"` and `\`, the
// two octets qtextSMTP leaves out (§4.1.2: minimum quoting).
func QuoteLocal(v string) string {
	if isDotString(v) {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) + 2)
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
	return b.String()
}

// parseDomain reads the part after "@": a domain name, made canonical, or
// an address literal.
func parseDomain(s string) (string, error) {
	if strings.HasPrefix(s, "[") {
		return parseLiteral(s)
	}
	return CanonicalDomain(s)
}

// parseLiteral reads an IPv4 or IPv6 address literal (RFC 5321 §4.1.3)
// and writes it canonically. General-address-literals name no transport
// anyone uses and are refused.
func parseLiteral(s string) (string, error) {
	if len(s) < 2 || s[len(s)-1] != ']' {
		return "", errors.New("unterminated address literal")
	}
	in := s[1 : len(s)-1]
	// RFC 5234 §2.3: the "IPv6:" tag is case-insensitive.
	if len(in) >= 5 && strings.EqualFold(in[:5], "IPv6:") {
		a, err := netip.ParseAddr(in[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("bad IPv6 address literal %q", s)
		}
		return "[IPv6:" + a.String() + "]", nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("bad address literal %q", s)
	}
	return "[" + a.String() + "]", nil
}
