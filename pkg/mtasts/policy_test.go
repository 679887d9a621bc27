package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name, in string
		want     Policy
		errHas   string
	}{
		{name: "rfc example", in: "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			want: Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800}},
		{name: "LF, no space after colon, trailing blanks, extension", in: "version:STSv1\nmode:\ttesting \nmx:  MX.Example.COM. \nmax_age: 0\next_1.a-b: some value\n",
			want: Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"mx.example.com"}, MaxAge: 0}},
		{name: "no final newline", in: "version: STSv1\nmode: none\nmax_age: 86400", want: Policy{Version: "STSv1", Mode: ModeNone, MaxAge: 86400}},
		{name: "first of a repeated key wins", in: "version: STSv1\nmode: enforce\nmode: none\nmx: a.test\nmax_age: 1\n",
			want: Policy{Version: "STSv1", Mode: ModeEnforce, MX: []string{"a.test"}, MaxAge: 1}},
		{name: "max_age at the limit", in: "version: STSv1\nmode: testing\nmx: a.test\nmax_age: 31557600\n",
			want: Policy{Version: "STSv1", Mode: ModeTesting, MX: []string{"a.test"}, MaxAge: 31557600}},
		{name: "space before colon", in: "version: STSv1\nmode : enforce\nmx: a.test\nmax_age: 1\n", errHas: "not a field name"},
		{name: "leading space", in: "version: STSv1\n mode: enforce\nmx: a.test\nmax_age: 1\n", errHas: "not a field name"},
		{name: "bad version", in: "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n", errHas: "version"},
		{name: "version case", in: "version: stsv1\nmode: enforce\nmx: a.test\nmax_age: 1\n", errHas: "version"},
		{name: "bad mode", in: "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n", errHas: "mode"},
		{name: "mode case", in: "version: STSv1\nmode: Enforce\nmx: a.test\nmax_age: 1\n", errHas: "mode"},
		{name: "max_age too big", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 31557601\n", errHas: "max_age"},
		{name: "max_age signed", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: +5\n", errHas: "max_age"},
		{name: "max_age negative", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: -1\n", errHas: "max_age"},
		{name: "max_age 11 digits", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: 00000000001\n", errHas: "max_age"},
		{name: "max_age empty", in: "version: STSv1\nmode: enforce\nmx: a.test\nmax_age:\n", errHas: "max_age"},
		{name: "no max_age", in: "version: STSv1\nmode: enforce\nmx: a.test\n", errHas: "max_age"},
		{name: "no mx in enforce", in: "version: STSv1\nmode: enforce\nmax_age: 5\n", errHas: "mx"},
		{name: "no mode", in: "version: STSv1\nmx: a.test\nmax_age: 5\n", errHas: "mode"},
		{name: "no version", in: "mode: enforce\nmx: a.test\nmax_age: 5\n", errHas: "version"},
		{name: "mx with space", in: "version: STSv1\nmode: enforce\nmx: a b.test\nmax_age: 5\n", errHas: "mx"},
		{name: "mx underscore", in: "version: STSv1\nmode: enforce\nmx: a_b.test\nmax_age: 5\n", errHas: "mx"},
		{name: "mx leading hyphen", in: "version: STSv1\nmode: enforce\nmx: -a.test\nmax_age: 5\n", errHas: "mx"},
		{name: "double wildcard", in: "version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 5\n", errHas: "mx"},
		{name: "inner wildcard", in: "version: STSv1\nmode: enforce\nmx: mx.*.a.test\nmax_age: 5\n", errHas: "mx"},
		{name: "bare wildcard", in: "version: STSv1\nmode: enforce\nmx: *.\nmax_age: 5\n", errHas: "mx"},
		{name: "extension with control character", in: "version: STSv1\nmode: none\nmax_age: 5\nx: a\x01b\n", errHas: "control"},
		{name: "extension name too long", in: "version: STSv1\nmode: none\nmax_age: 5\n" + strings.Repeat("x", 33) + ": v\n", errHas: "field name"},
		{name: "no colon", in: "version STSv1\n", errHas: "no ':'"},
		{name: "html", in: "<html><body>404</body></html>", errHas: "no ':'"},
		{name: "empty", in: "", errHas: "no version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tc.in))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err = %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestMatchMX(t *testing.T) {
	p := Policy{MX: []string{"mail.example.com", "*.example.net"}}
	for host, want := range map[string]bool{
		"mail.example.com":     true,
		"MAIL.example.com.":    true,
		"mx1.example.net":      true,
		"MX1.Example.NET.":     true,
		"example.net":          false, // the wildcard needs one label
		"a.b.example.net":      false, // and only one (RFC 8461 §4.1)
		"mail.example.com.x":   false,
		"xmail.example.com":    false,
		"sub.mail.example.com": false,
		".example.net":         false,
		"":                     false,
	} {
		if got := p.MatchMX(host); got != want {
			t.Errorf("MatchMX(%q) = %v, want %v", host, got, want)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{
		"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n",
		"version: STSv1\nmode: none\nmax_age: 0\n",
		"version: STSv1\nmode: testing\nmx: *.a\nmax_age: 31557600",
		"version:STSv1\nmode:enforce\nmx:A.B.\nmax_age:1\nx-y: z z\n",
		"", ":", "mx: *.", "max_age: 99999999999999999999", "\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			return
		}
		if p.Version != "STSv1" || p.MaxAge < 0 || p.MaxAge > MaxMaxAge || (p.Mode != ModeNone && len(p.MX) == 0) {
			t.Fatalf("accepted an invalid policy %+v from %q", p, body)
		}
		// Round trip: the canonical text, as the cache stores it, reads
		// back to the same policy.
		again, err := ParsePolicy([]byte(p.String()))
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", p.String(), again, err, p)
		}
		for _, m := range p.MX {
			if !validMXPattern(m) || m != strings.ToLower(m) {
				t.Fatalf("bad pattern %q accepted", m)
			}
			// A plain name matches itself; a wildcard one label in its
			// place and not the bare parent.
			if rest, ok := strings.CutPrefix(m, "*."); ok {
				if !p.MatchMX("x." + rest) {
					t.Fatalf("%q does not match x.%s", m, rest)
				}
			} else if !p.MatchMX(m) {
				t.Fatalf("%q does not match itself", m)
			}
		}
	})
}

func TestParseRecord(t *testing.T) {
	tests := []struct {
		txts    []string
		id      string
		invalid bool // ErrInvalidRecord rather than ErrNoRecord
	}{
		{txts: []string{"v=STSv1; id=20160831085700Z;"}, id: "20160831085700Z"},
		{txts: []string{"v=spf1 -all", "v=STSv1; id=abc"}, id: "abc"},
		{txts: []string{"v=STSv1;id=abc; ext_1=x.y"}, id: "abc"},
		{txts: []string{"v=STSv1 ; id=abc"}, id: "abc"},
		{txts: []string{"v=STSv1; id=" + strings.Repeat("a", 32)}, id: strings.Repeat("a", 32)},
		{txts: []string{"v=STSv1; id=a", "v=STSv1; id=b"}, invalid: true},
		{txts: []string{"v=STSv1; id="}, invalid: true},
		{txts: []string{"v=STSv1"}, invalid: true},
		{txts: []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, invalid: true},
		{txts: []string{"v=STSv1; id=a-b"}, invalid: true},
		{txts: []string{"v=STSv1; id=a; id=b"}, invalid: true},
		{txts: []string{"v=STSv1; id=a; junk"}, invalid: true},
		{txts: []string{"v=STSv1; id=é"}, invalid: true},
		{txts: []string{"v=STSv10; id=a"}},
		{txts: []string{"v=spf1 -all"}},
		{txts: nil},
	}
	for _, tc := range tests {
		id, err := ParseRecord(tc.txts)
		switch {
		case tc.id != "":
			if err != nil || id != tc.id {
				t.Errorf("%q: id %q err %v, want %q", tc.txts, id, err, tc.id)
			}
		case tc.invalid:
			if !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("%q: err %v, want ErrInvalidRecord", tc.txts, err)
			}
		default:
			if !errors.Is(err, ErrNoRecord) {
				t.Errorf("%q: err %v, want ErrNoRecord", tc.txts, err)
			}
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add("v=STSv1; id=20160831085700Z;")
	f.Add("v=STSv1;id=a;;")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRecord([]string{s})
		if err != nil {
			return
		}
		if id == "" || len(id) > 32 || !printableASCII(id) {
			t.Fatalf("id %q accepted from %q", id, s)
		}
	})
}
