package address

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, local, domain, out string
	}{
		{"user@plain.test", "user", "plain.test", "user@plain.test"},
		{"User@PLAIN.Test.", "User", "plain.test", "User@plain.test"},
		{"u2@ｐｌａｉｎ.test", "u2", "plain.test", "u2@plain.test"},
		{"u@ＰＬＡＩＮ．ｔｅｓｔ", "u", "plain.test", "u@plain.test"},
		{"u@bücher.example", "u", "xn--bcher-kva.example", "u@xn--bcher-kva.example"},
		{"u@XN--BCHER-KVA.example", "u", "xn--bcher-kva.example", "u@xn--bcher-kva.example"},
		{"u@plain.test。", "u", "plain.test", "u@plain.test"},
		{"josé@example.com", "josé", "example.com", "josé@example.com"},
		{"a.b+c!#$%&'*/=?^_`{|}~-@x.test", "a.b+c!#$%&'*/=?^_`{|}~-", "x.test", "a.b+c!#$%&'*/=?^_`{|}~-@x.test"},
		// Quoted-strings: only the needed quoting goes out.
		{`"plain"@x.test`, "plain", "x.test", "plain@x.test"},
		{`"a b"@x.test`, "a b", "x.test", `"a b"@x.test`},
		{`"a\ b"@x.test`, "a b", "x.test", `"a b"@x.test`},
		{`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`,
			"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x", "good.test",
			`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`},
		{`"a\"b"@x.test`, `a"b`, "x.test", `"a\"b"@x.test`},
		{`"a\\b"@x.test`, `a\b`, "x.test", `"a\\b"@x.test`},
		{`".a"@x.test`, ".a", "x.test", `".a"@x.test`},
		{`"a..b"@x.test`, "a..b", "x.test", `"a..b"@x.test`},
		// Address literals (RFC 5321 §4.1.3), canonical text.
		{"u@[127.0.0.12]", "u", "[127.0.0.12]", "u@[127.0.0.12]"},
		{"u@[ipv6:2001:DB8:0::1]", "u", "[IPv6:2001:db8::1]", "u@[IPv6:2001:db8::1]"},
	} {
		m, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if m.Local != tc.local || m.Domain != tc.domain || m.String() != tc.out {
			t.Errorf("Parse(%q) = %q @ %q, %q; want %q @ %q, %q", tc.in, m.Local, m.Domain, m.String(), tc.local, tc.domain, tc.out)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	long := strings.Repeat("a", 64)
	for _, in := range []string{
		"", "@x.test", "user", "user@", "user@plain.test..", "user@.plain.test", "user@plain..test",
		"user@.", "user@-a.test", "user@a-.test", "user@a_b.test", "user@a b.test", "user@a>b.test",
		"user@" + long + ".test", "user@" + strings.Repeat("abcdefghi.", 26) + "test",
		"user@xn--zz.test", "a b@x.test", "a<b@x.test", "a>b@x.test", ".a@x.test", "a.@x.test",
		"a..b@x.test", "a@b@x.test", "a\x00@x.test", "a\r\n@x.test", "a\x7f@x.test",
		`""@x.test`, `"a@x.test`, `"a\`, `"a` + "\x00" + `"@x.test`, `"a` + "\t" + `"@x.test`, `"a\` + "\n" + `"@x.test`,
		`"a"b@x.test`, `"a".b@x.test`, "\xff@x.test",
		"u@[127.0.0.12", "u@[1.2.3]", "u@[IPv6:1.2.3.4]", "u@[IPv6:fe80::1%eth0]", "u@[x:abc]", "u@[]",
		"u@[127.0.0.1]x",
	} {
		if m, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %q, want an error", in, m.String())
		}
	}
}

// The form go-smtp hands over: the local part already unquoted.
func TestParseValue(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{"user@PLAIN.test.", "user@plain.test"},
		{"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x@good.test", `"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`},
		{`a"b\c@x.test`, `"a\"b\\c"@x.test`},
		{"a b@x.test", `"a b"@x.test`},
		{"u@[IPv6:::1]", "u@[IPv6:::1]"},
	} {
		m, err := ParseValue(tc.in)
		if err != nil || m.String() != tc.out {
			t.Errorf("ParseValue(%q) = %q, %v; want %q", tc.in, m.String(), err, tc.out)
		}
	}
	for _, in := range []string{"", "user", "@x.test", "a\x00b@x.test", "a\rb@x.test", "u@plain.test..", "u@x.test>", "u@a b"} {
		if m, err := ParseValue(in); err == nil {
			t.Errorf("ParseValue(%q) = %q, want an error", in, m.String())
		}
	}
}

// FuzzParse: Parse never panics; what it accepts serialises to text that
// parses to the same value and serialises the same way; the text can
// never break out of "<...>" or the command line; and ParseValue of the
// value form agrees.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"user@plain.test", "User@PLAIN.Test.", "u2@ｐｌａｉｎ.test", `"a b"@x.test`, `"a\"b\\c"@x.test`,
		`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`, "u@[127.0.0.1]", "u@[IPv6:::1]",
		"user@plain.test..", `"a\`, "a@b@c", "ü@bücher.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := Parse(s)
		if err != nil {
			return
		}
		out := m.String()
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(%q) = %q, which does not parse: %v", s, out, err)
		}
		if again != m || again.String() != out {
			t.Fatalf("Parse(%q) = %#v (%q), but its text parses to %#v (%q)", s, m, out, again, again.String())
		}
		if strings.ContainsFunc(out, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("control character in %q", out)
		}
		if strings.ContainsAny(out, " <>") && out[0] != '"' {
			t.Fatalf("%q has a space or angle bracket outside quotes", out)
		}
		v, err := ParseValue(m.Local + "@" + m.Domain)
		if err != nil || v != m {
			t.Fatalf("ParseValue of %#v = %#v, %v", m, v, err)
		}
	})
}

// FuzzParseValue: the reading of go-smtp's unquoted form never panics, and
// what it accepts is written as text that Parse reads back to the same
// value, so nothing it lets through can change meaning on the wire.
func FuzzParseValue(f *testing.F) {
	for _, s := range []string{
		"user@plain.test", "inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x@good.test", `a"b\c@x.test`,
		"a b@x.test", "a@b@c.test", "u@[IPv6:::1]", "\x00@x.test", "u@ｐｌａｉｎ.test",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseValue(s)
		if err != nil {
			return
		}
		again, err := Parse(m.String())
		if err != nil || again != m {
			t.Fatalf("ParseValue(%q) = %#v, written %q, read back %#v, %v", s, m, m.String(), again, err)
		}
	})
}
