package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 300)
	cases := []struct {
		src  string
		want string // full error text
	}{
		{"partner.com colour=blue\n", `p.conf:1:13: unknown option "colour" (known: bits, min-tls, verify, mode, on-fail)`},
		{"\n\npartner.com bits=999\n", `p.conf:3:13: bits="999": want a whole number from 1 to 256`},
		{"partner.com bits=abc\n", `p.conf:1:13: bits="abc": want a whole number from 1 to 256`},
		{"partner.com bits=0\n", `p.conf:1:13: bits="0": want a whole number from 1 to 256`},
		{"partner.com bits=+112\n", `p.conf:1:13: bits="+112": want a whole number from 1 to 256`},
		{"partner.com bits=0112\n", `p.conf:1:13: bits="0112": want a whole number from 1 to 256`},
		{"x.com mode=testing mode=enforce\n", `p.conf:1:20: mode given twice`},
		{"x.com bits=112 verify=cert bits=128\n", `p.conf:1:28: bits given twice`},
		{"partner.com min-tls=1.4\n", `p.conf:1:13: min-tls="1.4": want 1.0, 1.1, 1.2 or 1.3`},
		{"partner.com verify=yes\n", `p.conf:1:13: verify="yes": want none, cert or dane`},
		{"partner.com mode=strict\n", `p.conf:1:13: mode="strict": want enforce, testing or off`},
		{"partner.com on-fail=retry\n", `p.conf:1:13: on-fail="retry": want bounce, defer or route:HOST[:PORT]`},
		{"partner.com on-fail=route:\n", `p.conf:1:13: on-fail="route:": want route:HOST[:PORT], HOST a host name or [IP]`},
		{"partner.com on-fail=route:gw..example\n", `p.conf:1:13: on-fail="route:gw..example": bad host "gw..example": empty label in "gw..example"`},
		{"partner.com on-fail=route:gw.example:0\n", `p.conf:1:13: on-fail="route:gw.example:0": port "0": want a number from 1 to 65535`},
		{"partner.com on-fail=route:gw.example:65536\n", `p.conf:1:13: on-fail="route:gw.example:65536": port "65536": want a number from 1 to 65535`},
		{"partner.com on-fail=route:gw.example:025\n", `p.conf:1:13: on-fail="route:gw.example:025": port "025": want a number from 1 to 65535`},
		{"partner.com on-fail=route:gw.example:\n", `p.conf:1:13: on-fail="route:gw.example:": port "": want a number from 1 to 65535 (an IPv6 address goes in brackets: [2001:db8::1])`},
		{"partner.com on-fail=route:192.0.2.7\n", `p.conf:1:13: on-fail="route:192.0.2.7": IP address 192.0.2.7 must be written in brackets: [192.0.2.7]`},
		{"partner.com on-fail=route:2001:db8::1\n", `p.conf:1:13: on-fail="route:2001:db8::1": port "db8::1": want a number from 1 to 65535 (an IPv6 address goes in brackets: [2001:db8::1])`},
		{"partner.com on-fail=route:[192.0.2.300]\n", `p.conf:1:13: on-fail="route:[192.0.2.300]": "192.0.2.300" is not an IP address`},
		{"partner.com on-fail=route:[192.0.2.7\n", `p.conf:1:13: on-fail="route:[192.0.2.7": address literal "[192.0.2.7" has no closing ]`},
		{"partner.com on-fail=route:[192.0.2.7]25\n", `p.conf:1:13: on-fail="route:[192.0.2.7]25": "25" after the address literal: want :PORT`},
		{"partner.com on-fail=route:gw_1.example\n", `p.conf:1:13: on-fail="route:gw_1.example": bad host "gw_1.example": character '_' not allowed in domain "gw_1.example"`},
		{"partner.com bits\n", `p.conf:1:13: "bits": want key=value after the target`},
		{"  a..b\n", `p.conf:1:3: bad target "a..b": empty label in "a..b"`},
		{long + ".com\n", `p.conf:1:1: bad target "` + long + `.com": label of 300 octets in domain, more than 63`},
		{strings.Repeat("abcdefghi.", 26) + "com\n", `p.conf:1:1: bad target "` + strings.Repeat("abcdefghi.", 26) + `com": domain is 263 octets, more than 253`},
		{long[:100] + ".com\n", `p.conf:1:1: bad target "` + long[:100] + `.com": label of 100 octets in domain, more than 63`},
		{"a@b@c.com\n", `p.conf:1:1: bad target "a@b@c.com": more than one @ in address`},
		{"@c.com\n", `p.conf:1:1: bad target "@c.com": empty local part before @`},
		{"-bad.com\n", `p.conf:1:1: bad target "-bad.com": label "-bad" starts or ends with a hyphen`},
		{"bad_name.com\n", `p.conf:1:1: bad target "bad_name.com": character '_' not allowed in domain "bad_name.com"`},
		{"xn--zz.com\n", `p.conf:1:1: bad target "xn--zz.com": bad A-label "xn--zz": idna: invalid label "\u03bb\u03ba"`},
		{"partner.com\nPartner.COM. bits=128\n", `p.conf:2:1: second entry for partner.com (first on line 1)`},
		{"*\n* mode=testing\n", `p.conf:2:1: second entry for * (first on line 1)`},
		{"ok.com\n\xff\xfe garbage\n", `p.conf:2:1: not valid UTF-8`},
	}
	for _, c := range cases {
		_, err := Parse("p.conf", []byte(c.src))
		if err == nil {
			t.Errorf("%q: parsed, want error %q", c.src, c.want)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %T is not a *ParseError", c.src, err)
		}
		if c.src != "xn--zz.com\n" && err.Error() != c.want {
			t.Errorf("%q:\n got %s\nwant %s", c.src, err, c.want)
		}
	}
}

func TestParseFormat(t *testing.T) {
	src := "# TLS partners\n" +
		"partner.com\n" +
		"bank.example         bits=256 min-tls=1.2 verify=cert\n" +
		"ceo@Supplier.Example\n" +
		"*                    mode=testing          # catch-all, audit only for now\n" +
		"legacy.example       mode=off              # exempt from the catch-all\n" +
		"\tspaced.example.\t\r\n" +
		"a#b@hash.example # '#' only starts a comment after white space\n"
	f, err := Parse("p.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range f.Entries() {
		got = append(got, e.Target.Key()+" ["+e.Options.String()+"] #"+e.Comment)
	}
	want := []string{
		"partner.com [] #",
		"bank.example [bits=256 min-tls=1.2 verify=cert] #",
		"ceo@supplier.example [] #",
		"* [mode=testing] #catch-all, audit only for now",
		"legacy.example [mode=off] #exempt from the catch-all",
		"spaced.example [] #",
		"a#b@hash.example [] #'#' only starts a comment after white space",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if string(f.Bytes()) != src {
		t.Fatalf("untouched file does not round-trip:\n%q\n%q", f.Bytes(), src)
	}
}

func TestEditsKeepUntouchedLines(t *testing.T) {
	src := "# head\n\npartner.com   # keep me\nbank.example bits=256\n# tail\n"
	f, err := Parse("p.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	bank, _ := ParseTarget("bank.example")
	opts := DefaultOptions()
	opts.Bits = 128
	if !f.Set(Entry{Target: bank, Options: opts}) {
		t.Fatal("update reported no change")
	}
	if f.Set(Entry{Target: bank, Options: opts}) {
		t.Fatal("identical update reported a change")
	}
	newT, _ := ParseTarget("new.example")
	f.Set(Entry{Target: newT, Options: DefaultOptions(), Comment: "added"})
	partner, _ := ParseTarget("partner.com")
	if !f.Remove(partner) || f.Remove(partner) {
		t.Fatal("remove must report true once, then false")
	}
	want := "# head\n\nbank.example             bits=128\n# tail\nnew.example  # added\n"
	if got := string(f.Bytes()); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	g, err := Parse("p.conf", f.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if e := g.Get(bank); e == nil || e.Options.Bits != 128 || e.Line != 3 {
		t.Fatalf("re-parsed bank entry: %+v", e)
	}
}

func TestTargetDisplay(t *testing.T) {
	tg, err := ParseTarget("Bücher.Example.")
	if err != nil {
		t.Fatal(err)
	}
	if tg.Key() != "xn--bcher-kva.example" || tg.Display() != "xn--bcher-kva.example (bücher.example)" {
		t.Fatalf("key %q display %q", tg.Key(), tg.Display())
	}
	for _, s := range []string{"", "*", "  *  "} {
		if tg, _ := ParseTarget(s); tg.Kind != KindCatchAll {
			t.Errorf("ParseTarget(%q) is not the catch-all", s)
		}
	}
}
