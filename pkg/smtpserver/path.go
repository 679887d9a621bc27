package smtpserver

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Path is a reverse-path or forward-path of MAIL or RCPT (RFC 5321
// §4.1.2), parsed. A source route (@a,@b:) is accepted and dropped, as
// RFC 5321 §4.1.1.3 and Appendix C tell servers to do.
type Path struct {
	// Local is the local part's value: a Quoted-string's quotes and
	// quoted-pairs removed, its case kept (RFC 5321 §2.4).
	Local string
	// Domain is the domain as sent, or an address literal with its
	// brackets ("[192.0.2.1]", "[IPv6:2001:db8::1]"). It is "" for the
	// null reverse-path <> and for the special recipient <Postmaster>
	// (§4.1.1.3).
	Domain string
}

// IsNull reports whether p is the null reverse-path <> (RFC 5321 §4.5.5).
func (p Path) IsNull() bool { return p.Local == "" && p.Domain == "" }

// ASCII reports whether p can be sent without SMTPUTF8 (RFC 6531).
func (p Path) ASCII() bool { return isASCII(p.Local) && isASCII(p.Domain) }

// String is the mailbox as it goes between the angle brackets of a
// command, the local part quoted only when it must be; "" for <>.
func (p Path) String() string {
	if p.IsNull() {
		return ""
	}
	if p.Domain == "" {
		return p.Local
	}
	return quoteLocal(p.Local) + "@" + p.Domain
}

var errPathSyntax = errors.New("bad path syntax")

// Limits of RFC 5321 §4.5.3.1.2 on the domain. The local part's 64
// octets (§4.5.3.1.1) are not enforced: SRS and VERP senders pass them in
// practice, and the command-line limit bounds them anyway.
const (
	maxDomainLen = 255
	maxLabelLen  = 63
)

// parsePath reads "<" [source-route ":"] Mailbox ">" or "<>" from the
// start of s and returns what follows the ">".
func parsePath(s string) (Path, string, error) {
	if !strings.HasPrefix(s, "<") {
		return Path{}, "", errPathSyntax
	}
	s = s[1:]
	if strings.HasPrefix(s, ">") {
		return Path{}, s[1:], nil
	}
	if strings.HasPrefix(s, "@") {
		// A-d-l = At-domain *( "," At-domain ), then ":".
		for {
			d, rest := cutDomain(s[1:])
			if !validDomain(d) {
				return Path{}, "", errPathSyntax
			}
			s = rest
			if strings.HasPrefix(s, ",@") {
				s = s[1:]
				continue
			}
			if !strings.HasPrefix(s, ":") {
				return Path{}, "", errPathSyntax
			}
			s = s[1:]
			break
		}
	}
	var p Path
	var err error
	if p.Local, s, err = parseLocal(s); err != nil {
		return Path{}, "", err
	}
	if !strings.HasPrefix(s, "@") {
		return Path{}, "", errPathSyntax
	}
	s = s[1:]
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 || !validLiteral(s[1:end]) {
			return Path{}, "", errPathSyntax
		}
		p.Domain, s = s[:end+1], s[end+1:]
	} else {
		p.Domain, s = cutDomain(s)
		if !validDomain(p.Domain) {
			return Path{}, "", errPathSyntax
		}
	}
	if !strings.HasPrefix(s, ">") {
		return Path{}, "", errPathSyntax
	}
	return p, s[1:], nil
}

// parseLocal reads a Local-part: Dot-string or Quoted-string (RFC 5321
// §4.1.2), with RFC 6531 §3.3's UTF-8 in either.
func parseLocal(s string) (string, string, error) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); {
			r, n := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '"':
				if b.Len() == 0 {
					// An empty Quoted-string is allowed by the grammar
					// but names no mailbox anyone can deliver to.
					return "", "", errPathSyntax
				}
				return b.String(), s[i+1:], nil
			case r == '\\':
				// quoted-pairSMTP = %d92 %d32-126
				if i+1 >= len(s) || s[i+1] < 32 || s[i+1] > 126 {
					return "", "", errPathSyntax
				}
				b.WriteByte(s[i+1])
				i += 2
				continue
			case r == utf8.RuneError, r < 32, r == 127:
				return "", "", errPathSyntax
			}
			// qtextSMTP = %d32-33 / %d35-91 / %d93-126 / UTF8-non-ascii
			b.WriteString(s[i : i+n])
			i += n
		}
		return "", "", errPathSyntax
	}
	i := 0
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '.' {
			// Atom *("." Atom): no leading, trailing or double dot.
			if i == 0 || s[i-1] == '.' {
				return "", "", errPathSyntax
			}
		} else if !isAtext(r) {
			break
		}
		i += n
	}
	if i == 0 || s[i-1] == '.' {
		return "", "", errPathSyntax
	}
	return s[:i], s[i:], nil
}

func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r >= utf8.RuneSelf:
		return r != utf8.RuneError
	}
	return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
}

// quoteLocal writes a local part as a Dot-string when it is one, else as
// a Quoted-string (RFC 5321 §4.1.2: quote only when needed).
func quoteLocal(l string) string {
	if l != "" {
		if v, rest, err := parseLocal(l); err == nil && rest == "" && v == l {
			return l
		}
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}

// cutDomain splits off the longest prefix made of domain characters.
func cutDomain(s string) (string, string) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '.' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= utf8.RuneSelf {
			i++
			continue
		}
		break
	}
	return s[:i], s[i:]
}

// validDomain: sub-domain *("." sub-domain), sub-domain = Let-dig
// [Ldh-str] (RFC 5321 §4.1.2), or a U-label (RFC 6531 §3.3). A trailing
// root dot is not part of the grammar.
func validDomain(d string) bool {
	if d == "" || len(d) > maxDomainLen || !utf8.ValidString(d) {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > maxLabelLen || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
	}
	return true
}

// validLiteral checks the inside of an address literal: IPv4 or "IPv6:"
// IPv6 (RFC 5321 §4.1.3). General-address-literals name no address this
// server could use and are refused.
func validLiteral(s string) bool {
	if v6, ok := strings.CutPrefix(s, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
