package xtext

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncode(t *testing.T) {
	for in, want := range map[string]string{
		"QQ314159":          "QQ314159",
		"a+b=c d":           "a+2Bb+3Dc+20d",
		"bob@partner.com":   "bob@partner.com",
		"\x00\x7f\xff":      "+00+7F+FF",
		`"odd\ one"@x.test`: `"odd\+20one"@x.test`,
	} {
		if got := Encode(in); got != want {
			t.Errorf("Encode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEncodeUTF8Addr(t *testing.T) {
	for in, want := range map[string]string{
		"jörg@partner.com": `j\x{F6}rg@partner.com`,
		"a+b=c\\d":         `a\x{2B}b\x{3D}c\x{5C}d`,
		"用户@例子.广告":         `\x{7528}\x{6237}@\x{4F8B}\x{5B50}.\x{5E7F}\x{544A}`,
	} {
		if got := EncodeUTF8Addr(in); got != want {
			t.Errorf("EncodeUTF8Addr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestORcpt(t *testing.T) {
	for in, want := range map[string]string{
		"rfc822;bob@partner.com":   "rfc822;bob@partner.com",
		"rfc822;a+tag@partner.com": "rfc822;a+2Btag@partner.com",
		"utf-8;jörg@partner.com":   `utf-8;j\x{F6}rg@partner.com`,
		"rfc822;jörg@partner.com":  `utf-8;j\x{F6}rg@partner.com`,
		"x400;/G=a/":               "x400;/G+3Da/",
		"no-semicolon":             "",
		"bad type;a@b":             "",
		"rfc822;":                  "",
	} {
		got, ok := ORcpt(in)
		if got != want || ok != (want != "") {
			t.Errorf("ORcpt(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// decodeRef is RFC 3461 §4's xtext decoding, written plainly as the
// reference the encoder is checked against.
func decodeRef(s string) (string, bool) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil || strings.ToUpper(s[i+1:i+3]) != s[i+1:i+3] {
				return "", false
			}
			out = append(out, byte(v))
			i += 2
		case c >= '!' && c <= '~' && c != '=':
			out = append(out, c)
		default:
			return "", false
		}
	}
	return string(out), true
}

// decodeUTF8Ref undoes RFC 6533's \x{HEX} escapes.
func decodeUTF8Ref(s string) (string, bool) {
	var b strings.Builder
	for s != "" {
		if rest, ok := strings.CutPrefix(s, `\x{`); ok {
			end := strings.IndexByte(rest, '}')
			if end < 2 || end > 6 {
				return "", false
			}
			v, err := strconv.ParseUint(rest[:end], 16, 32)
			if err != nil {
				return "", false
			}
			b.WriteRune(rune(v))
			s = rest[end+1:]
			continue
		}
		if s[0] == '\\' || s[0] == '+' || s[0] == '=' || s[0] < '!' || s[0] > '~' {
			return "", false
		}
		b.WriteByte(s[0])
		s = s[1:]
	}
	return b.String(), true
}

func FuzzEncode(f *testing.F) {
	f.Add("bob@partner.com")
	f.Add("a+b=c\\d \x00\xff")
	f.Add("jörg@例子.广告")
	f.Fuzz(func(t *testing.T, s string) {
		enc := Encode(s)
		if dec, ok := decodeRef(enc); !ok || dec != s {
			t.Fatalf("Encode(%q) = %q, decodes to %q (%v)", s, enc, dec, ok)
		}
		u := EncodeUTF8Addr(s)
		if _, ok := decodeRef(u); !ok {
			t.Fatalf("EncodeUTF8Addr(%q) = %q is not xtext", s, u)
		}
		dec, ok := decodeUTF8Ref(u)
		if !ok || (utf8.ValidString(s) && dec != s) {
			t.Fatalf("EncodeUTF8Addr(%q) = %q, decodes to %q (%v)", s, u, dec, ok)
		}
		if o, ok := ORcpt("rfc822;" + s); ok {
			if _, valid := decodeRef(o); !valid || strings.ContainsAny(o, " \r\n") {
				t.Fatalf("ORcpt(rfc822;%q) = %q is not an xtext value", s, o)
			}
		}
	})
}
