package lint

import (
	"fmt"
	"strings"
	"testing"
)

func show(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%d %s %s %s\n", f.Line, f.Severity, f.Check, f.Target)
	}
	return b.String()
}

func TestLint(t *testing.T) {
	cases := []struct {
		name string
		file string
		want string // "line severity check target" per finding
	}{
		{"clean", "partner.com\nbank.example bits=256\n", ""},
		{"empty", "", ""},
		{"subdomain with the parent's options", "x.com\nsales.x.com\n", "2 warning redundant sales.x.com\n"},
		{"subdomain stronger than the parent", "x.com\nsales.x.com bits=256\n", ""},
		{"grandparent counts when the parent is absent", "x.com bits=128\na.b.x.com bits=128\n", "2 warning redundant a.b.x.com\n"},
		{"nearest broader entry decides", "x.com bits=128\nb.x.com\na.b.x.com bits=128\n", ""},
		{"address with its domain's options", "ceo@x.com\nx.com\n", "1 warning redundant ceo@x.com\n"},
		{"address covered by a parent domain", "ceo@a.x.com verify=cert\nx.com verify=cert\n", "1 warning redundant ceo@a.x.com\n"},
		{"redundant with the catch-all", "*\nx.com\n", "1 warning catch-all *\n2 warning redundant x.com\n"},
		{"comments do not matter", "x.com # a\nsales.x.com # b\n", "2 warning redundant sales.x.com\n"},
		{"mode=off without a broader entry", "x.com mode=off\n", "1 warning exempts-nothing x.com\n"},
		{"mode=off under a parent", "x.com\nlegacy.x.com mode=off\n", ""},
		{"mode=off under the catch-all", "* mode=testing\nlegacy.com mode=off\n", "1 warning catch-all *\n"},
		{"mode=off under mode=off", "x.com mode=off bits=200\n* \nsub.x.com mode=off\n", "2 warning catch-all *\n3 warning redundant sub.x.com\n"},
		{"catch-all off", "* mode=off\n", "1 warning exempts-nothing *\n"},
		{"catch-all enforce", "* on-fail=defer\n", "1 warning catch-all *\n"},
		{"tld", "com\n", "1 warning public-suffix com\n"},
		{"registry suffix", "co.uk bits=128\n", "1 warning public-suffix co.uk\n"},
		{"unlisted tld", "internal\n", "1 warning public-suffix internal\n"},
		{"registered domain is fine", "example.co.uk\n", ""},
		{"weak bits", "x.com bits=56\n", "1 warning weak-bits x.com\n"},
		{"weak bits but off", "x.com bits=56 mode=off\n* \n", "2 warning catch-all *\n"},
		{"parse error", "x.com\ny.com bits=0\n", "2 error parse \n"},
		{"duplicate", "x.com\nX.com.\n", "2 error parse \n"},
		{"route and dane are fine", "x.com verify=dane on-fail=route:gw.example:2525\n", ""},
		{"route under mode=testing is never used", "x.com mode=testing on-fail=route:gw.example\n", "1 warning route-unused x.com\n"},
		{"route under mode=off is never used", "x.com\nsub.x.com mode=off on-fail=route:[192.0.2.7]\n", "2 warning route-unused sub.x.com\n"},
		{"bad route host", "x.com on-fail=route:gw..example\n", "1 error parse \n"},
		{"bad route port", "x.com on-fail=route:gw.example:99999\n", "1 error parse \n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := show(Lint("p.conf", []byte(c.file)))
			if got != c.want {
				t.Errorf("findings:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// A bad route says what is wrong with the host or the port, where.
func TestRouteErrors(t *testing.T) {
	for _, c := range []struct{ file, msg string }{
		{"x.com on-fail=route:gw.example:0\n", `on-fail="route:gw.example:0": port "0": want a number from 1 to 65535`},
		{"x.com on-fail=route:10.0.0.1\n", `on-fail="route:10.0.0.1": IP address 10.0.0.1 must be written in brackets: [10.0.0.1]`},
		{"x.com on-fail=route:-gw.example\n", `on-fail="route:-gw.example": bad host "-gw.example": label "-gw" starts or ends with a hyphen`},
	} {
		fs := Lint("p.conf", []byte(c.file))
		if len(fs) != 1 || fs[0].Severity != Error || fs[0].Line != 1 || fs[0].Col != 7 || fs[0].Message != c.msg {
			t.Errorf("%q: %+v, want one error at 1:7: %s", c.file, fs, c.msg)
		}
	}
}

func TestParseErrorPosition(t *testing.T) {
	fs := Lint("p.conf", []byte("x.com\n  y.com min-tls=9\n"))
	if len(fs) != 1 || fs[0].Line != 2 || fs[0].Col != 9 || !strings.Contains(fs[0].Message, `min-tls="9"`) {
		t.Errorf("%+v", fs)
	}
}

func TestFailed(t *testing.T) {
	warn := []Finding{{Severity: Warning}}
	errs := []Finding{{Severity: Warning}, {Severity: Error}}
	for _, c := range []struct {
		fs     []Finding
		strict bool
		want   bool
	}{
		{nil, false, false}, {nil, true, false},
		{warn, false, false}, {warn, true, true},
		{errs, false, true}, {errs, true, true},
	} {
		if got := Failed(c.fs, c.strict); got != c.want {
			t.Errorf("Failed(%v, %v) = %v", c.fs, c.strict, got)
		}
	}
}

// FuzzLint: whatever the bytes, lint never panics, reports at most one
// error (the parser stops at the first), and points into the file.
func FuzzLint(f *testing.F) {
	f.Add([]byte("x.com\nsales.x.com\n* mode=off\ncom\n"))
	f.Add([]byte("ceo@x.com bits=56\nx.com mode=off\n"))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fs := Lint("f", data)
		lines := strings.Count(string(data), "\n") + 1
		errs := 0
		for _, x := range fs {
			if x.Severity == Error {
				errs++
			}
			if x.Line < 1 || x.Line > lines {
				t.Fatalf("finding at line %d of %d: %+v", x.Line, lines, x)
			}
		}
		if errs > 1 || errs == 1 && len(fs) != 1 {
			t.Fatalf("findings %+v", fs)
		}
	})
}

func BenchmarkLint(b *testing.B) {
	var in strings.Builder
	for i := 0; i < 10_000; i++ {
		fmt.Fprintf(&in, "p%d.example\nsales.p%d.example bits=256\n", i, i)
	}
	data := []byte(in.String())
	for b.Loop() {
		Lint("p", data)
	}
}
