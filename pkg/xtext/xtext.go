// Package xtext writes the encodings RFC 3461 and RFC 6533 use for DSN
// parameters on the SMTP command line: the ENVID and ORCPT values the
// relay passes on to a next hop that offers DSN.
package xtext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const hexdigits = "0123456789ABCDEF"

// Encode is RFC 3461 §4's xtext: octets "!" to "~" except "+" and "=" as
// they are, every other octet as "+" and two upper-case hex digits.
func Encode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hexdigits[c>>4])
		b.WriteByte(hexdigits[c&15])
	}
	return b.String()
}

// EncodeUTF8Addr is RFC 6533 §3's utf-8-addr-xtext, the 7-bit form of a
// "utf-8" address type's address: QCHARs as they are, anything else
// (non-ASCII, "+", "=", "\", space, controls) as \x{HEX}. The result is
// valid xtext as it is. Invalid UTF-8 octets are written as U+FFFD.
func EncodeUTF8Addr(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
			continue
		}
		if r == utf8.RuneError {
			r = 0xFFFD
		}
		fmt.Fprintf(&b, `\x{%02X}`, r)
	}
	return b.String()
}

// ORcpt renders a stored ORCPT, "addr-type;address" with the address
// decoded, as the value of RCPT's ORCPT= parameter (RFC 3461 §4.2). A
// "utf-8" address, or any non-ASCII one, takes RFC 6533's utf-8 type in
// its 7-bit form, which every server can read. ok is false for a value
// that is not "type;address".
func ORcpt(stored string) (string, bool) {
	typ, addr, found := strings.Cut(stored, ";")
	if !found || addr == "" || !isAtom(typ) {
		return "", false
	}
	if strings.EqualFold(typ, "utf-8") || !isASCII(addr) {
		return "utf-8;" + EncodeUTF8Addr(addr), true
	}
	return typ + ";" + Encode(addr), true
}

// isAtom: an addr-type is an RFC 3461 atom: letters, digits and "-".
func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c|0x20 < 'a' || c|0x20 > 'z') && c != '-' {
			return false
		}
	}
	return s != ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
