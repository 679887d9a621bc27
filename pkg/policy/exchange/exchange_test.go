package exchange

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
)

// render shows a Result as policy lines and notes, for comparison.
func render(r *Result) (entries, notes string) {
	var e, n strings.Builder
	for i := range r.Entries {
		e.WriteString(r.Entries[i].String() + "\n")
	}
	for _, x := range r.Notes {
		mark := "note"
		if x.Lost {
			mark = "LOST"
		}
		fmt.Fprintf(&n, "%d %s: %s\n", x.Line, mark, x.Text)
	}
	return e.String(), n.String()
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFixtures reads the Sendmail, Postfix and vendor fixtures: each has
// lines that cannot be mapped, which must come back with their line.
func TestFixtures(t *testing.T) {
	cases := []struct {
		format  Format
		file    string
		opt     ReadOptions
		entries string
		notes   string
	}{
		{SMG, "vendor.txt", ReadOptions{}, `partner.com
ceo@supplier.example
*
bank.example
xn--bcher-kva.example
`, `3 note: blank line: the catch-all * (B3: TLS with every recipient domain)
5 LOST: "not a domain" is not a domain or address (character ' ' not allowed in domain "not a domain"); not imported
7 note: partner.com again (first on line 1); imported once
`},
		{Sendmail, "access", ReadOptions{}, `partner.com
bank.example             bits=256 verify=cert
ceo@supplier.example     bits=128 on-fail=defer
legacy.example           mode=off
*
named.example            verify=cert
temp.example             bits=168 on-fail=defer
`, `10 LOST: CN:mx.named.example cannot be expressed; imported without it
11 LOST: TLS_Rcpt:postmaster@ matches a local part in every domain, which smgctl cannot express; not imported
12 LOST: TLS_Srv: entries apply to a server name, not to recipients as smgctl's do; not imported
13 LOST: TLS_Rcpt:bad..example: empty label in "bad..example"; not imported
14 LOST: ENCR:512: bits="512": want a whole number from 1 to 256; not imported
16 LOST: partner.com again with other options (first on line 5, which wins); not imported
`},
		{Sendmail, "access", ReadOptions{SendmailPermErr: true}, `partner.com
bank.example             bits=256 verify=cert
ceo@supplier.example     bits=128
legacy.example           mode=off
*
named.example            verify=cert
temp.example             bits=168 on-fail=defer
`, ""},
		{Postfix, "tls_policy", ReadOptions{}, `partner.com
bank.example             bits=128 min-tls=1.2 verify=cert
old.example              min-tls=1.2 verify=cert
opp.example              mode=off
none.example             mode=off
dane.example             mode=off
only-dane.example
mixed.example
strict.example           min-tls=1.3
capped.example           min-tls=1.2
nexthop.example          verify=cert
`, `9 LOST: dane: smgctl does not enforce DANE; imported as mode=off (opportunistic), so a published TLSA record no longer makes TLS mandatory
10 LOST: dane-only: authentication by DANE TLSA records cannot be expressed; imported as an encryption requirement only
11 LOST: .subs.example matches only the subdomains of subs.example, which smgctl cannot express (an entry for subs.example also covers subs.example itself); not imported
12 LOST: [mx.relay.example]:587 is a next-hop key, not a recipient domain; not imported
14 LOST: .mixed.example has another policy than mixed.example (line 13); an smgctl entry covers a domain and its subdomains alike, so mixed.example's applies; not imported
17 LOST: protocols=>=TLSv1.2:<=TLSv1.2: smgctl sets only a minimum version; the upper limit or gap is ignored
18 LOST: secure: the certificate will be matched against the MX host name (Postfix match=hostname), not the next-hop domain (match=nexthop:dot-nexthop)
19 LOST: unknown security level "opportunistic"; not imported
`},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%s/%v", c.format, c.file, c.opt.SendmailPermErr), func(t *testing.T) {
			r, err := Read(c.format, c.file, readFixture(t, c.file), c.opt)
			if err != nil {
				t.Fatal(err)
			}
			entries, notes := render(r)
			if entries != c.entries {
				t.Errorf("entries:\n%s\nwant:\n%s", entries, c.entries)
			}
			if c.notes != "" && notes != c.notes {
				t.Errorf("notes:\n%s\nwant:\n%s", notes, c.notes)
			}
			if !r.Lost() {
				t.Error("Lost() = false for a fixture with unmappable lines")
			}
		})
	}
}

// TestSendmailRHS maps single TLS_Rcpt right-hand sides.
func TestSendmailRHS(t *testing.T) {
	cases := []struct {
		rhs     string
		entry   string // "" when not imported
		lost    bool
		permErr bool
	}{
		{"ENCR:112", "x.example                on-fail=defer", false, false},
		{"ENCR:112", "x.example", false, true},
		{"PERM+ENCR:112", "x.example", false, false},
		{"TEMP+ENCR:112", "x.example                on-fail=defer", false, true},
		{"PERM+ENCR:256", "x.example                bits=256", false, false},
		{"perm+encr:128", "x.example                bits=128", false, false},
		{"PERM+VERIFY", "x.example                verify=cert", false, false},
		{"PERM+VERIFY:168", "x.example                bits=168 verify=cert", false, false},
		{"PERM+VERIFY+ENCR:256", "x.example                bits=256 verify=cert", false, false},
		{"PERM+ENCR:128+CS:Partner", "x.example                bits=128", true, false},
		{"PERM+CN:mx.x.example", "x.example", true, false},
		{"OK", "x.example                mode=off", false, false},
		{"RELAY", "x.example                mode=off", false, false},
		{"ENCR", "", true, false},
		{"ENCR:0", "", true, false},
		{"ENCR:abc", "", true, false},
		{"VERIFY:999", "", true, false},
	}
	for _, c := range cases {
		r := ReadSendmail([]byte("TLS_Rcpt:x.example "+c.rhs+"\n"), ReadOptions{SendmailPermErr: c.permErr})
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || r.Lost() != c.lost {
			t.Errorf("%q (perm-err %v): entries %q lost %v (%s); want %q lost %v", c.rhs, c.permErr, entries, r.Lost(), notes, want, c.lost)
		}
	}
}

func TestSendmailKeys(t *testing.T) {
	cases := []struct {
		line  string
		entry string
		lost  bool
	}{
		{"TLS_Rcpt:\tENCR:112", "*                        on-fail=defer", false},
		{"TLS_Rcpt:Sales.Example. ENCR:112", "sales.example            on-fail=defer", false},
		{"TLS_Rcpt:CEO@Example.com ENCR:112", "ceo@example.com          on-fail=defer", false},
		{"TLS_Rcpt:bücher.example ENCR:112", "xn--bcher-kva.example    on-fail=defer", false},
		{"TLS_Rcpt:user@ ENCR:112", "", true},
		{"TLS_Rcpt:[192.0.2.1] ENCR:112", "", true},
		{"TLS_Rcpt:x.example", "", true},
		{"Try_TLS:x.example NO", "", true},
		{"TLS_Clt:x.example VERIFY", "", false},
		{"Connect:x.example RELAY", "", false},
		{"x.example REJECT", "", false},
		{"# TLS_Rcpt:x.example ENCR:112", "", false},
	}
	for _, c := range cases {
		r := ReadSendmail([]byte(c.line+"\n"), ReadOptions{})
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || r.Lost() != c.lost {
			t.Errorf("%q: entries %q lost %v (%s); want %q lost %v", c.line, entries, r.Lost(), notes, want, c.lost)
		}
	}
}

func TestPostfixPolicies(t *testing.T) {
	cases := []struct {
		line  string
		entry string
		lost  bool
	}{
		{"x.example encrypt", "x.example", false},
		{"X.Example. ENCRYPT", "x.example", false},
		{"x.example may", "x.example                mode=off", false},
		{"x.example none", "x.example                mode=off", false},
		{"x.example may protocols=>=TLSv1.2", "x.example                mode=off", false},
		{"x.example verify", "x.example                verify=cert", false},
		{"x.example verify match=hostname", "x.example                verify=cert", false},
		{"x.example verify match=nexthop", "x.example                verify=cert", true},
		{"x.example secure", "x.example                verify=cert", true},
		{"x.example secure match=hostname", "x.example                verify=cert", false},
		{"x.example fingerprint match=AA:BB", "x.example", true},
		{"x.example encrypt protocols=>=TLSv1.2", "x.example                min-tls=1.2", false},
		{"x.example encrypt protocols=>=TLSv1.3", "x.example                min-tls=1.3", false},
		{"x.example encrypt protocols=>=TLSv1", "x.example", false},
		{"x.example encrypt protocols=!SSLv2:!SSLv3", "x.example", false},
		{"x.example encrypt protocols=!SSLv2,!SSLv3,!TLSv1", "x.example                min-tls=1.1", false},
		{"x.example encrypt protocols=TLSv1.2:TLSv1.3", "x.example                min-tls=1.2", false},
		{"x.example encrypt protocols=TLSv1.2", "x.example                min-tls=1.2", true},
		{"x.example encrypt protocols=!TLSv1.3", "x.example", true},
		{"x.example encrypt protocols=TLSv9", "x.example", true},
		{"x.example encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3", "x.example", true},
		{"x.example encrypt ciphers=high", "x.example                bits=128", false},
		{"x.example encrypt ciphers=medium", "x.example", false},
		{"x.example encrypt ciphers=low", "x.example                bits=56", false},
		{"x.example encrypt ciphers=export", "x.example                bits=40", false},
		{"x.example encrypt ciphers=null", "x.example", true},
		{"x.example encrypt exclude=3DES", "x.example", true},
		{"x.example encrypt tafile=/etc/ta.pem", "x.example", true},
		{"x.example encrypt connection_reuse=yes servername=hostname", "x.example", false},
		{"x.example encrypt junk", "x.example", true},
		{"x.example", "", true},
		{"x.example opportunistic", "", true},
		{"/\\.example$/ encrypt", "", true},
		{"[mx.example]:25 encrypt", "", true},
		{"u@x.example encrypt", "", true},
		{".x.example encrypt", "", true},
		{"a..b encrypt", "", true},
	}
	for _, c := range cases {
		r := ReadPostfix([]byte(c.line + "\n"))
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || r.Lost() != c.lost {
			t.Errorf("%q: entries %q lost %v (%s); want %q lost %v", c.line, entries, r.Lost(), notes, want, c.lost)
		}
	}
}

func TestPostfixTable(t *testing.T) {
	in := `# comment
x.example     encrypt
  protocols=>=TLSv1.2

.x.example    encrypt protocols=>=TLSv1.2
y.example     verify
y.example     encrypt
  # an indented comment is still a comment
.z.example    may
z.example     may
`
	r := ReadPostfix([]byte(in))
	entries, notes := render(r)
	wantEntries := "x.example                min-tls=1.2\ny.example                verify=cert\nz.example                mode=off\n"
	wantNotes := "7 LOST: y.example again with other options (first on line 6, which wins); not imported\n"
	if entries != wantEntries || notes != wantNotes {
		t.Errorf("entries:\n%s\nnotes:\n%s\nwant:\n%s\n%s", entries, notes, wantEntries, wantNotes)
	}
}

func TestSMG(t *testing.T) {
	cases := []struct {
		in      string
		entries string
		lost    bool
	}{
		{"", "", false},
		{"a.example\n", "a.example\n", false},
		{"a.example", "a.example\n", false},
		{"a.example\r\nb.example\r\n", "a.example\nb.example\n", false},
		{"\n", "*\n", false},
		{"a.example\n\n", "a.example\n*\n", false},
		{"  \t\na.example\n\n", "*\na.example\n", false},
		{"*\n", "*\n", false},
		{"a.example x\n", "", true},
		{"a@b@c.example\n", "", true},
	}
	for _, c := range cases {
		r := ReadSMG([]byte(c.in))
		entries, notes := render(r)
		if entries != c.entries || r.Lost() != c.lost {
			t.Errorf("%q: entries %q lost %v (%s); want %q lost %v", c.in, entries, r.Lost(), notes, c.entries, c.lost)
		}
	}
}

func parsePolicy(t testing.TB, s string) []*policy.Entry {
	t.Helper()
	f, err := policy.Parse("p", []byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return f.Entries()
}

func TestWriteSMG(t *testing.T) {
	entries := parsePolicy(t, `a.example
*
b.example bits=256
c.example mode=testing
d.example mode=off
u@e.example  # comment dropped
`)
	var buf bytes.Buffer
	notes, err := WriteSMG(&buf, entries)
	if err != nil {
		t.Fatal(err)
	}
	if want := "a.example\n\nb.example\nu@e.example\n"; buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
	if len(notes) != 3 || notes[0].Line != 3 || notes[1].Line != 4 || notes[2].Line != 5 {
		t.Errorf("notes %+v", notes)
	}
	// And back: the blank line is the catch-all again.
	r := ReadSMG(buf.Bytes())
	if got, _ := render(r); got != "a.example\n*\nb.example\nu@e.example\n" {
		t.Errorf("read back %q", got)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	src := parsePolicy(t, `bank.example bits=256 min-tls=1.2 verify=cert on-fail=defer  # contract "17"
*  mode=testing
u@xn--bcher-kva.example min-tls=1.3 mode=off
plain.example
`)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, src); err != nil {
		t.Fatal(err)
	}
	r, err := ReadJSON("x.json", buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Entries) != len(src) {
		t.Fatalf("%d entries back, want %d", len(r.Entries), len(src))
	}
	for i := range src {
		if got, want := r.Entries[i].String(), src[i].String(); got != want {
			t.Errorf("entry %d: %q, want %q", i, got, want)
		}
	}
}

func TestReadJSONErrors(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{`[]`, "x.json:1:1: want a JSON object"},
		{`{"version": 1}`, `x.json:1:1: no "entries" field`},
		{`{"entries": [{"target": "a.example", "bits": "256"}]}`, "x.json:1:14: cannot unmarshal string"},
		{`{"entries": [{"target": "a.example", "bits": 256.5}]}`, "x.json:1:14: cannot unmarshal number 256.5"},
		{`{"entries": [{"target": "a..example"}]}`, `x.json:1:14: bad target "a..example"`},
		{`{"entries": [{"target": "a.example", "verify": "yes"}]}`, `x.json:1:14: a.example: verify="yes"`},
		{`{"entries": [{"target": "a.example", "comment": "a\nb"}]}`, `x.json:1:14: a.example: comment: control character`},
		{`{"entries": [{"target": "a.example"}, {"target": "A.example"}]}`, "x.json:1:39: second entry for a.example (first on line 1)"},
		{`{"entries": [{"target": "*"}, {"target": ""}]}`, "second entry for *"},
		{`{"entries": {}}`, "x.json:1:2: entries: want an array"},
		{`{"entries": []} {}`, "data after the JSON object"},
		{`{"entries": [`, "x.json:1:13: unexpected end of JSON"},
		{`{"entries": [}`, "x.json:1:14: invalid character '}'"},
		{``, "unexpected end of JSON"},
		{"\xff", "invalid character"},
	}
	for _, c := range cases {
		_, err := ReadJSON("x.json", []byte(c.in))
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want *InputError containing %q", c.in, err, c.want)
		}
	}
	// "entries": null is an empty list, not an error.
	if r, err := ReadJSON("x.json", []byte(`{"version":1,"entries":null}`)); err != nil || len(r.Entries) != 0 {
		t.Errorf("null entries: %v %v", r, err)
	}
}

func TestReadRefusesBinary(t *testing.T) {
	for _, f := range []Format{SMG, Sendmail, Postfix} {
		_, err := Read(f, "g.bin", []byte("ok.example\n\x00\x01"), ReadOptions{})
		var ie *InputError
		if !errors.As(err, &ie) || ie.Line != 2 {
			t.Errorf("%s: %v, want an InputError at line 2", f, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	if f, err := ParseFormat("postfix", ImportFormats); err != nil || f != Postfix {
		t.Errorf("postfix: %v %v", f, err)
	}
	if _, err := ParseFormat("postfix", ExportFormats); err == nil || !strings.Contains(err.Error(), "want smg, json") {
		t.Errorf("postfix for export: %v", err)
	}
}

// checkResult holds for every reader on every input: each entry is valid
// policy (its line re-parses to the same entry), targets are unique,
// notes point into the input in order.
func checkResult(t *testing.T, data []byte, r *Result, ordered bool) {
	t.Helper()
	nLines := len(lines(data))
	var file strings.Builder
	for i := range r.Entries {
		file.WriteString(r.Entries[i].String() + "\n")
	}
	f, err := policy.Parse("out", []byte(file.String()))
	if err != nil {
		t.Fatalf("imported entries do not make a valid policy: %v\n%s", err, file.String())
	}
	for i, e := range f.Entries() {
		if e.Target != r.Entries[i].Target || e.Options != r.Entries[i].Options {
			t.Fatalf("entry %d does not round-trip: %+v vs %+v", i, e, r.Entries[i])
		}
	}
	last := 0
	for _, n := range r.Notes {
		if n.Line < 1 || n.Line > nLines {
			t.Fatalf("note at line %d of %d: %s", n.Line, nLines, n.Text)
		}
		if ordered && n.Line < last {
			t.Fatalf("notes out of order: %d after %d", n.Line, last)
		}
		last = n.Line
	}
}

func FuzzReadSMG(f *testing.F) {
	f.Add([]byte("partner.com\n\nceo@supplier.example\n"))
	f.Add([]byte("bücher.example\r\n*\n"))
	f.Add([]byte("a b\n\xff\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Read(SMG, "f", data, ReadOptions{})
		if err != nil {
			return
		}
		checkResult(t, data, r, true)
	})
}

func FuzzReadSendmail(f *testing.F) {
	f.Add(readFixture(f, "access"))
	f.Add([]byte("TLS_Rcpt:x PERM+VERIFY:256+CN\nTLS_Rcpt: OK\n"))
	f.Add([]byte("TLS_Rcpt:x ENCR:\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Read(Sendmail, "f", data, ReadOptions{})
		if err != nil {
			return
		}
		checkResult(t, data, r, true)
	})
}

func FuzzReadPostfix(f *testing.F) {
	f.Add(readFixture(f, "tls_policy"))
	f.Add([]byte("x encrypt protocols=>=TLSv1.2:<=TLSv1.3 ciphers=high\n  match=hostname\n.x encrypt\n"))
	f.Add([]byte(" leading continuation\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Read(Postfix, "f", data, ReadOptions{})
		if err != nil {
			return
		}
		checkResult(t, data, r, true)
	})
}

func FuzzReadJSON(f *testing.F) {
	f.Add([]byte(`{"version":1,"entries":[{"target":"a.example","bits":256,"min-tls":"1.2","verify":"cert","mode":"testing","on-fail":"defer","comment":"c"}]}`))
	f.Add([]byte(`{"entries":[{"target":""}]}`))
	f.Add([]byte(`{"entries":[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadJSON("f", data)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		// What was read writes back and reads again unchanged.
		ptrs := make([]*policy.Entry, len(r.Entries))
		for i := range r.Entries {
			ptrs[i] = &r.Entries[i]
		}
		var buf bytes.Buffer
		if err := WriteJSON(&buf, ptrs); err != nil {
			t.Fatal(err)
		}
		r2, err := ReadJSON("f2", buf.Bytes())
		if err != nil {
			t.Fatalf("re-read: %v\n%s", err, buf.String())
		}
		for i := range r.Entries {
			if r.Entries[i].Target != r2.Entries[i].Target || r.Entries[i].Options != r2.Entries[i].Options || r.Entries[i].Comment != r2.Entries[i].Comment {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
	})
}

// BenchmarkReadPostfix: a 10,000-line table, about the largest a site
// migrates.
func BenchmarkReadPostfix(b *testing.B) {
	var in bytes.Buffer
	for i := 0; i < 10_000; i++ {
		fmt.Fprintf(&in, "p%d.example encrypt protocols=>=TLSv1.2 ciphers=high\n.p%d.example encrypt protocols=>=TLSv1.2 ciphers=high\n", i, i)
	}
	b.SetBytes(int64(in.Len()))
	for b.Loop() {
		if r := ReadPostfix(in.Bytes()); len(r.Entries) != 10_000 || r.Lost() {
			b.Fatal("bad result")
		}
	}
}
