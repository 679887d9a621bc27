package xtext

import "testing"

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
