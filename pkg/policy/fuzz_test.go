package policy

import (
	"strings"
	"testing"
)

// FuzzParse: the parser is total (never panics) and what it accepts
// renders back to a file that parses to the same entries.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"partner.com\n",
		"bank.example bits=256 min-tls=1.2 verify=cert\nceo@supplier.example\n* mode=testing # c\n",
		"legacy.example mode=off on-fail=defer\n",
		"p.example verify=dane on-fail=route:[2001:db8::1]:2525\n", "q.example on-fail=route:gw.example:25\n",
		"bücher.example\n",
		"a..b\n", "a@b@c\n", "x bits=999\n", "\xff\xfe\n", "#only\n\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		var b strings.Builder
		for _, e := range file.Entries() {
			b.WriteString(e.String() + "\n")
		}
		again, err := Parse("again", []byte(b.String()))
		if err != nil {
			t.Fatalf("rendered entries do not parse: %v\n%s", err, b.String())
		}
		a, z := file.Entries(), again.Entries()
		if len(a) != len(z) {
			t.Fatalf("%d entries became %d", len(a), len(z))
		}
		for i := range a {
			if a[i].Target != z[i].Target || a[i].Options != z[i].Options {
				t.Fatalf("entry %d: %+v became %+v", i, a[i], z[i])
			}
		}
	})
}

// FuzzNormalize: normalisation is total and idempotent, and lookups of
// arbitrary recipients never panic.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Partner.COM.", "bücher.example", "xn--bcher-kva.example", "a@b.c", "用户@例子.中国", "a..b", "", "@", "x@"} {
		f.Add(s)
	}
	p := New(nil)
	f.Fuzz(func(t *testing.T, s string) {
		p.Lookup(s)
		tg, err := ParseTarget(s)
		if err != nil {
			return
		}
		again, err := ParseTarget(tg.Key())
		if err != nil {
			t.Fatalf("key %q of %q does not parse: %v", tg.Key(), s, err)
		}
		if again != tg {
			t.Fatalf("not idempotent: %q → %+v → %+v", s, tg, again)
		}
		if tg.Kind != KindCatchAll {
			one := New([]*Entry{{Target: tg, Options: DefaultOptions()}})
			if m := one.Lookup(tg.Key()); m.Entry == nil {
				t.Fatalf("entry %q does not match its own key", tg.Key())
			}
		}
	})
}
