package policy

import (
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/address"
)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	f, err := Parse("test.conf", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return f.Compile()
}

func TestLookupOrder(t *testing.T) {
	p := mustParse(t, `
partner.com
ceo@partner.com        bits=256
deep.sales.partner.com bits=128 min-tls=1.2
*                      mode=testing
legacy.example         mode=off
bücher.example         verify=cert
`)
	cases := []struct {
		rcpt string
		want string // matching entry key; "" for none
		line int
	}{
		{"ceo@partner.com", "ceo@partner.com", 3},                     // user entry beats its domain
		{"CEO@Partner.COM", "ceo@partner.com", 3},                     // local parts and domains case-insensitive
		{"cfo@partner.com", "partner.com", 2},                         // another user falls back to the domain
		{"ceo@sales.partner.com", "partner.com", 2},                   // user entries match one address only
		{"bob@sales.partner.com", "partner.com", 2},                   // B1: subdomains fall back to the parent
		{"bob@x.deep.sales.partner.com", "deep.sales.partner.com", 4}, // closest parent wins
		{"bob@partner.com.", "partner.com", 2},                        // trailing dot
		{"partner.com", "partner.com", 2},                             // bare domains look up the same way
		{"bob@otherpartner.com", "*", 5},                              // no label-suffix confusion
		{"bob@legacy.example", "legacy.example", 6},                   // mode=off entry still named
		{"bob@sub.legacy.example", "legacy.example", 6},
		{"bob@bücher.example", "xn--bcher-kva.example", 7}, // U-label recipient, A-label entry
		{"bob@xn--bcher-kva.example", "xn--bcher-kva.example", 7},
		{"bob@BÜCHER.example", "xn--bcher-kva.example", 7},
		{"", "*", 5},
	}
	for _, c := range cases {
		m := p.Lookup(c.rcpt)
		got, line := "", 0
		if m.Entry != nil {
			got, line = m.Entry.Target.Key(), m.Entry.Line
		}
		if got != c.want || line != c.line {
			t.Errorf("Lookup(%q) = %q line %d, want %q line %d", c.rcpt, got, line, c.want, c.line)
		}
	}
}

func TestLookupWithoutCatchAll(t *testing.T) {
	p := mustParse(t, "partner.com\n")
	if m := p.Lookup("a@example.org"); m.Entry != nil {
		t.Fatalf("unlisted domain matched %v", m.Entry)
	}
	req := p.Lookup("a@example.org").Requirement()
	if req.Judged() || req.Enforced() {
		t.Fatalf("no entry must mean opportunistic TLS, got %+v", req)
	}
}

func TestModeOffExemptsFromCatchAll(t *testing.T) {
	p := mustParse(t, "*\nlegacy.example mode=off\n")
	req := p.Lookup("a@legacy.example").Requirement()
	if req.Judged() || req.Enforced() {
		t.Fatalf("mode=off must exempt from the catch-all, got %+v", req)
	}
	v := Evaluate(req, Outcome{})
	if !v.Met || !v.MaySend || v.Diagnostic != "" {
		t.Fatalf("exempt recipient over clear text: %+v", v)
	}
	if !p.Lookup("a@example.org").Requirement().Enforced() {
		t.Fatal("catch-all must enforce other domains")
	}
}

func TestRequirementNamesEntry(t *testing.T) {
	p := mustParse(t, "# comment\n\nbank.example bits=256 min-tls=1.2 verify=cert on-fail=defer\n")
	req := p.Lookup("x@bank.example").Requirement()
	want := Requirement{Options: Options{Bits: 256, MinTLS: 0x0303, Verify: VerifyCert, OnFail: OnFailDefer}, Target: "bank.example", Line: 3}
	if req != want {
		t.Fatalf("got %+v, want %+v", req, want)
	}
}

func TestLookupLongAndNonASCIIRecipients(t *testing.T) {
	p := mustParse(t, "example.com\n")
	long := strings.Repeat("a", 400) + "@example.com"
	if m := p.Lookup(long); m.Entry == nil {
		t.Fatal("long recipient must still match")
	}
	if m := p.Lookup("用户@example.com"); m.Entry == nil {
		t.Fatal("UTF-8 local part must still match its domain")
	}
}

func TestLookupAllocs(t *testing.T) {
	p := mustParse(t, "partner.com\nceo@partner.com bits=256\n*\n")
	for _, rcpt := range []string{"Bob@Sales.Partner.com", "ceo@partner.com", "x@unlisted.example.org"} {
		n := testing.AllocsPerRun(100, func() { p.Lookup(rcpt) })
		if n != 0 {
			t.Errorf("Lookup(%q) allocates %.0f times, want 0", rcpt, n)
		}
	}
}

// Every spelling of a listed domain the relay accepts at RCPT meets the
// entry: the relay looks up the address package's canonical form (issue
// 10: "user@plain.test.." found no entry but plain.test's MX).
func TestLookupMailboxEverySpelling(t *testing.T) {
	p := mustParse(t, `
plain.test    bits=256
"ceo"@good.test bits=128
bücher.example
`)
	for _, tc := range []struct{ rcpt, want string }{
		{"user@plain.test", "plain.test"},
		{"user@PLAIN.Test.", "plain.test"},
		{"user@ｐｌａｉｎ.test", "plain.test"},
		{"user@sub.ＰＬＡＩＮ．ｔｅｓｔ", "plain.test"},
		{`"ceo"@good.test`, "ceo@good.test"},
		{`CEO@Good.Test.`, "ceo@good.test"},
		{"u@BÜCHER.example.", "xn--bcher-kva.example"},
		{"u@[127.0.0.12]", ""},
	} {
		m, err := address.Parse(tc.rcpt)
		if err != nil {
			t.Fatalf("%s: %v", tc.rcpt, err)
		}
		got := ""
		if e := p.LookupMailbox(m).Entry; e != nil {
			got = e.Target.Key()
		}
		if got != tc.want {
			t.Errorf("LookupMailbox(%s) = %q, want %q", tc.rcpt, got, tc.want)
		}
	}
}
