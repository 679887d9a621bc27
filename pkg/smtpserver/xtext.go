package smtpserver

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

var errXtext = errors.New("bad xtext")

// decodeXtext decodes RFC 3461 §4's xtext: octets "!" to "~" except "+"
// and "=", and "+" followed by two upper-case hex digits for any other.
// With utf8 set, UTF-8 characters are also taken as they are (RFC 6533
// §3's unitext, allowed on SMTPUTF8 transactions).
func decodeXtext(s string, utf8ok bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", errXtext
			}
			v, ok := hexPair(s[i+1], s[i+2])
			if !ok {
				return "", errXtext
			}
			b.WriteByte(v)
			i += 2
		case c >= '!' && c <= '~' && c != '=':
			b.WriteByte(c)
		case c >= utf8.RuneSelf && utf8ok:
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError {
				return "", errXtext
			}
			b.WriteString(s[i : i+n])
			i += n - 1
		default:
			return "", errXtext
		}
	}
	return b.String(), nil
}

func hexPair(a, b byte) (byte, bool) {
	h, ok1 := hexDigit(a)
	l, ok2 := hexDigit(b)
	return h<<4 | l, ok1 && ok2
}

// hexDigit accepts RFC 3461's HEXCHAR: digits and upper-case A-F only.
func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// decodeUTF8Addr undoes RFC 6533 §3's "\x{HEX}" escapes of a utf-8
// addr-type ORCPT, after xtext decoding.
func decodeUTF8Addr(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errXtext
		}
		v, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
		if err != nil || end-3 < 2 || end-3 > 6 || !utf8.ValidRune(rune(v)) {
			return "", errXtext
		}
		b.WriteRune(rune(v))
		s = s[i+end+1:]
	}
	if !utf8.ValidString(b.String()) {
		return "", errXtext
	}
	return b.String(), nil
}
