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
		switch {
		case x.Invalid:
			mark = "INVALID"
		case x.Lost:
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

// verdict sums up a Result: "invalid" when any line is not valid
// input (Read refuses it), else "lost" when meaning was lost, else
// "exact".
func verdict(r *Result) string {
	switch {
	case len(r.Invalid()) > 0:
		return "invalid"
	case r.Lost():
		return "lost"
	}
	return "exact"
}

// TestFixtures reads the Sendmail, Postfix and vendor fixtures: every
// line is valid input, some cannot be mapped exactly and must come back
// with their line.
func TestFixtures(t *testing.T) {
	cases := []struct {
		format  Format
		file    string
		opt     ReadOptions
		entries string
		notes   string
		lost    bool
	}{
		{SMG, "vendor.txt", ReadOptions{}, `partner.com
ceo@supplier.example
*
bank.example
xn--bcher-kva.example
`, `3 note: blank line: the catch-all * (TLS with every recipient domain)
6 note: partner.com again (first on line 1); imported once
`, false},
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
13 LOST: TLS_Rcpt:[192.0.2.1] is an address literal, not a recipient domain; not imported
14 LOST: Try_TLS: entries apply to a server name, not to recipients as smgctl's do; not imported
16 LOST: partner.com again with other options (first on line 5, which wins); not imported
`, true},
		{Sendmail, "access", ReadOptions{SendmailPermErr: true}, `partner.com
bank.example             bits=256 verify=cert
ceo@supplier.example     bits=128
legacy.example           mode=off
*
named.example            verify=cert
temp.example             bits=168 on-fail=defer
`, "", true},
		{Postfix, "tls_policy", ReadOptions{}, `partner.com
bank.example             bits=128 min-tls=1.2 verify=cert
old.example              min-tls=1.2 verify=cert
opp.example              mode=off
none.example             mode=off
dane.example             mode=off
only-dane.example        verify=dane
subs.example
mixed.example
strict.example           min-tls=1.3
capped.example           min-tls=1.2
nexthop.example          verify=cert
merge.example            bits=128 min-tls=1.3 verify=cert
dotfirst.example
exempt.example           mode=off
`, `9 note: dane: imported as mode=off; smgctl honours published TLSA records for every domain, as Postfix's dane level does, unless published policies are switched off in the relay's settings
11 note: .subs.example imported as subs.example, which also covers subs.example itself
12 LOST: [mx.relay.example]:587 is a next-hop key, not a recipient domain; not imported
14 note: .mixed.example and mixed.example (line 13) have different policies; one smgctl entry covers mixed.example and its subdomains alike, so the stricter applies to both: the default requirement (bits=112)
17 LOST: protocols=>=TLSv1.2:<=TLSv1.2: smgctl sets only a minimum version; the upper limit or gap is ignored
18 LOST: secure: the certificate will be matched against the MX host name (Postfix match=hostname), not the next-hop domain (match=nexthop:dot-nexthop)
20 note: .merge.example and merge.example (line 19) have different policies; one smgctl entry covers merge.example and its subdomains alike, so the stricter applies to both: bits=128 min-tls=1.3 verify=cert
23 LOST: .exempt.example imported as exempt.example mode=off, which also exempts exempt.example itself from any broader entry (Postfix left it to the default level)
`, true},
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
			if r.Lost() != c.lost {
				t.Errorf("Lost() = %v, want %v", r.Lost(), c.lost)
			}
		})
	}
}

// TestInvalidFixtures: input with lines that are not valid for the
// format is refused as a whole, and the error names every bad line
// (and only those: valid lines that merely cannot be mapped are not
// errors).
func TestInvalidFixtures(t *testing.T) {
	cases := []struct {
		format Format
		file   string
		lines  string
	}{
		{SMG, "vendor.bad", `2 INVALID: "not a domain" is not a domain or address (character ' ' not allowed in domain "not a domain")
3 INVALID: "bad..example" is not a domain or address (empty label in "bad..example")
`},
		{Sendmail, "access.bad", `3 INVALID: TLS_Rcpt:bad..example: empty label in "bad..example"
4 INVALID: ENCR:512: bits="512": want a whole number from 1 to 256
5 INVALID: ENCR without a number of bits (want ENCR:n)
6 INVALID: TLS_Rcpt:norhs.example has no right-hand side
7 INVALID: ENCR:abc: bits="abc": want a whole number from 1 to 256
`},
		{Postfix, "tls_policy.bad", `3 INVALID: unknown security level "opportunistic" (want none, may, encrypt, dane, dane-only, fingerprint, verify or secure)
4 INVALID: nolevel.example has no security level (want KEY LEVEL [name=value ...])
5 INVALID: a..b: empty label in "a..b"
6 INVALID: attribute "junk" is not name=value
7 INVALID: protocols=>=TLSv9: unknown protocol ">=TLSv9" (want SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)
8 INVALID: protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3 allows no protocol
9 INVALID: ciphers=strong: unknown cipher grade (want high, medium, low, export or null)
10 INVALID: unknown attribute foo= (Postfix knows ciphers, protocols, exclude, match, tafile, connection_reuse, servername, enable_rpk)
11 INVALID: .: not a domain
`},
	}
	for _, c := range cases {
		t.Run(string(c.format), func(t *testing.T) {
			r, err := Read(c.format, c.file, readFixture(t, c.file), ReadOptions{})
			var ie *InvalidLinesError
			if !errors.As(err, &ie) || r != nil {
				t.Fatalf("Read = %v, %v; want no result and an *InvalidLinesError", r, err)
			}
			_, got := render(&Result{Notes: ie.Lines})
			if got != c.lines {
				t.Errorf("invalid lines:\n%s\nwant:\n%s", got, c.lines)
			}
			first := strings.SplitN(c.lines, "\n", 2)[0]
			n, text, _ := strings.Cut(first, " INVALID: ")
			want := fmt.Sprintf("%s:%s: %s (and %d more invalid line(s))", c.file, n, text, len(ie.Lines)-1)
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

// TestSendmailRHS maps single TLS_Rcpt right-hand sides.
func TestSendmailRHS(t *testing.T) {
	cases := []struct {
		rhs     string
		entry   string // "" when not imported
		want    string // verdict
		permErr bool
	}{
		{"ENCR:112", "x.example                on-fail=defer", "exact", false},
		{"ENCR:112", "x.example", "exact", true},
		{"PERM+ENCR:112", "x.example", "exact", false},
		{"TEMP+ENCR:112", "x.example                on-fail=defer", "exact", true},
		{"PERM+ENCR:256", "x.example                bits=256", "exact", false},
		{"perm+encr:128", "x.example                bits=128", "exact", false},
		{"PERM+VERIFY", "x.example                verify=cert", "exact", false},
		{"PERM+VERIFY:168", "x.example                bits=168 verify=cert", "exact", false},
		{"PERM+VERIFY+ENCR:256", "x.example                bits=256 verify=cert", "exact", false},
		{"PERM+ENCR:128+CS:Partner", "x.example                bits=128", "lost", false},
		{"PERM+CN:mx.x.example", "x.example", "lost", false},
		{"OK", "x.example                mode=off", "exact", false},
		{"RELAY", "x.example                mode=off", "exact", false},
		// Bad values: invalid input, nothing imported.
		{"ENCR", "", "invalid", false},
		{"ENCR:0", "", "invalid", false},
		{"ENCR:abc", "", "invalid", false},
		{"VERIFY:999", "", "invalid", false},
	}
	for _, c := range cases {
		r := ReadSendmail([]byte("TLS_Rcpt:x.example "+c.rhs+"\n"), ReadOptions{SendmailPermErr: c.permErr})
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || verdict(r) != c.want {
			t.Errorf("%q (perm-err %v): entries %q %s (%s); want %q %s", c.rhs, c.permErr, entries, verdict(r), notes, want, c.want)
		}
	}
}

func TestSendmailKeys(t *testing.T) {
	cases := []struct {
		line  string
		entry string
		want  string // verdict
	}{
		{"TLS_Rcpt:\tENCR:112", "*                        on-fail=defer", "exact"},
		{"TLS_Rcpt:Sales.Example. ENCR:112", "sales.example            on-fail=defer", "exact"},
		{"TLS_Rcpt:CEO@Example.com ENCR:112", "ceo@example.com          on-fail=defer", "exact"},
		{"TLS_Rcpt:bücher.example ENCR:112", "xn--bcher-kva.example    on-fail=defer", "exact"},
		{"TLS_Rcpt:user@ ENCR:112", "", "lost"},
		{"TLS_Rcpt:[192.0.2.1] ENCR:112", "", "lost"},
		{"Try_TLS:x.example NO", "", "lost"},
		{"TLS_Rcpt:x.example", "", "invalid"},
		{"TLS_Rcpt:bad..example ENCR:112", "", "invalid"},
		{"TLS_Rcpt:a_b!.example ENCR:112", "", "invalid"},
		{"TLS_Clt:x.example VERIFY", "", "exact"},
		{"Connect:x.example RELAY", "", "exact"},
		{"x.example REJECT", "", "exact"},
		{"# TLS_Rcpt:x.example ENCR:112", "", "exact"},
	}
	for _, c := range cases {
		r := ReadSendmail([]byte(c.line+"\n"), ReadOptions{})
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || verdict(r) != c.want {
			t.Errorf("%q: entries %q %s (%s); want %q %s", c.line, entries, verdict(r), notes, want, c.want)
		}
	}
}

func TestPostfixPolicies(t *testing.T) {
	cases := []struct {
		line  string
		entry string
		want  string // verdict
	}{
		{"x.example encrypt", "x.example", "exact"},
		{"X.Example. ENCRYPT", "x.example", "exact"},
		{"x.example may", "x.example                mode=off", "exact"},
		{"x.example none", "x.example                mode=off", "exact"},
		{"x.example may protocols=>=TLSv1.2", "x.example                mode=off", "exact"},
		{"x.example may exclude=3DES", "x.example                mode=off", "exact"},
		{"x.example verify", "x.example                verify=cert", "exact"},
		{"x.example verify match=hostname", "x.example                verify=cert", "exact"},
		{"x.example verify match=nexthop", "x.example                verify=cert", "lost"},
		{"x.example secure", "x.example                verify=cert", "lost"},
		{"x.example secure match=hostname", "x.example                verify=cert", "exact"},
		{"x.example fingerprint match=AA:BB", "x.example", "lost"},
		{"x.example dane", "x.example                mode=off", "exact"},
		{"x.example dane-only", "x.example                verify=dane", "exact"},
		{"x.example dane-only protocols=>=TLSv1.2", "x.example                min-tls=1.2 verify=dane", "exact"},
		{"x.example encrypt protocols=>=TLSv1.2", "x.example                min-tls=1.2", "exact"},
		{"x.example encrypt protocols=>=TLSv1.3", "x.example                min-tls=1.3", "exact"},
		{"x.example encrypt protocols=>=TLSv1", "x.example", "exact"},
		{"x.example encrypt protocols=!SSLv2:!SSLv3", "x.example", "exact"},
		{"x.example encrypt protocols=!SSLv2,!SSLv3,!TLSv1", "x.example                min-tls=1.1", "exact"},
		{"x.example encrypt protocols=TLSv1.2:TLSv1.3", "x.example                min-tls=1.2", "exact"},
		{"x.example encrypt protocols=TLSv1.2", "x.example                min-tls=1.2", "lost"},
		{"x.example encrypt protocols=!TLSv1.3", "x.example", "lost"},
		{"x.example encrypt ciphers=high", "x.example                bits=128", "exact"},
		{"x.example encrypt ciphers=medium", "x.example", "exact"},
		{"x.example encrypt ciphers=low", "x.example                bits=56", "exact"},
		{"x.example encrypt ciphers=export", "x.example                bits=40", "exact"},
		{"x.example encrypt ciphers=null", "x.example", "lost"},
		{"x.example encrypt exclude=3DES", "x.example", "lost"},
		{"x.example encrypt tafile=/etc/ta.pem", "x.example", "lost"},
		{"x.example encrypt connection_reuse=yes servername=hostname", "x.example", "exact"},
		{"/\\.example$/ encrypt", "", "lost"},
		{"[mx.example]:25 encrypt", "", "lost"},
		{"u@x.example encrypt", "", "lost"},
		// A .domain key becomes the domain's entry: a note, not a loss.
		{".x.example encrypt", "x.example", "exact"},
		{".x.example verify protocols=>=TLSv1.2", "x.example                min-tls=1.2 verify=cert", "exact"},
		// ... unless it exempts: then the bare domain is exempted too.
		{".x.example may", "x.example                mode=off", "lost"},
		// Not valid Postfix input: refused.
		{"x.example encrypt protocols=TLSv9", "", "invalid"},
		{"x.example encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3", "", "invalid"},
		{"x.example may protocols=TLSv9", "", "invalid"},
		{"x.example encrypt ciphers=strong", "", "invalid"},
		{"x.example encrypt junk", "", "invalid"},
		{"x.example encrypt frobnicate=yes", "", "invalid"},
		{"x.example", "", "invalid"},
		{"x.example opportunistic", "", "invalid"},
		{"a..b encrypt", "", "invalid"},
		{". encrypt", "", "invalid"},
		{"..x.example encrypt", "", "invalid"},
	}
	for _, c := range cases {
		r := ReadPostfix([]byte(c.line + "\n"))
		entries, notes := render(r)
		want := ""
		if c.entry != "" {
			want = c.entry + "\n"
		}
		if entries != want || verdict(r) != c.want {
			t.Errorf("%q: entries %q %s (%s); want %q %s", c.line, entries, verdict(r), notes, want, c.want)
		}
	}
}

// TestPostfixDotKeys: a ".domain" key is imported as the domain's entry;
// a "domain" and ".domain" pair is one entry, and when they disagree the
// stricter of the two in every respect applies, with a note (not a loss).
func TestPostfixDotKeys(t *testing.T) {
	const differ = " have different policies; one smgctl entry covers x.example and its subdomains alike, so the stricter applies to both: "
	cases := []struct {
		name    string
		in      string
		entries string
		notes   string
		verdict string
	}{
		{"same policy", "x.example encrypt\n.x.example encrypt\n", "x.example\n", "", "exact"},
		{"same policy, dot first", ".x.example verify\nx.example verify\n", "x.example                verify=cert\n", "", "exact"},
		{"dot alone", ".x.example encrypt ciphers=high\n", "x.example                bits=128\n",
			"1 note: .x.example imported as x.example, which also covers x.example itself\n", "exact"},
		{"dot alone, exempting", ".x.example may\n", "x.example                mode=off\n",
			"1 LOST: .x.example imported as x.example mode=off, which also exempts x.example itself from any broader entry (Postfix left it to the default level)\n", "lost"},
		{"higher bits wins", "x.example encrypt ciphers=high\n.x.example encrypt\n", "x.example                bits=128\n",
			"2 note: .x.example and x.example (line 1)" + differ + "bits=128\n", "exact"},
		{"higher min-tls wins", ".x.example encrypt protocols=>=TLSv1.3\nx.example encrypt protocols=>=TLSv1.2\n", "x.example                min-tls=1.3\n",
			"2 note: x.example and .x.example (line 1)" + differ + "min-tls=1.3\n", "exact"},
		{"verify if either", "x.example encrypt ciphers=high\n.x.example verify\n", "x.example                bits=128 verify=cert\n",
			"2 note: .x.example and x.example (line 1)" + differ + "bits=128 verify=cert\n", "exact"},
		{"enforce over off", "x.example may\n.x.example encrypt\n", "x.example\n",
			"2 note: .x.example and x.example (line 1)" + differ + "the default requirement (bits=112)\n", "exact"},
		{"enforce over off, dot exempts", "x.example verify\n.x.example none\n", "x.example                verify=cert\n",
			"2 note: .x.example and x.example (line 1)" + differ + "verify=cert\n", "exact"},
		{"dot repeated", ".x.example encrypt\n.x.example encrypt\n", "x.example\n",
			"1 note: .x.example imported as x.example, which also covers x.example itself\n2 note: .x.example again (first on line 1); imported once\n", "exact"},
		{"dot repeated, other policy", ".x.example encrypt\nx.example encrypt\n.x.example may\n", "x.example\n",
			"3 LOST: .x.example again with another policy (first on line 1, which postmap keeps); not imported\n", "lost"},
		// A repeat is judged against the line it repeats, not against
		// the merged entry.
		{"bare repeated after a merge", "x.example encrypt\n.x.example verify\nx.example encrypt\n", "x.example                verify=cert\n",
			"2 note: .x.example and x.example (line 1)" + differ + "verify=cert\n3 note: x.example again (first on line 1); imported once\n", "exact"},
		{"parent and child stay apart", ".x.example encrypt\nsub.x.example may\n", "x.example\nsub.x.example            mode=off\n",
			"1 note: .x.example imported as x.example, which also covers x.example itself\n", "exact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ReadPostfix([]byte(c.in))
			entries, notes := render(r)
			if entries != c.entries || notes != c.notes || verdict(r) != c.verdict {
				t.Errorf("got\n%s%s(%s)\nwant\n%s%s(%s)", entries, notes, verdict(r), c.entries, c.notes, c.verdict)
			}
		})
	}
}

func TestPostfixStricter(t *testing.T) {
	a := policy.Options{Bits: 256, MinTLS: 0x0301, Verify: policy.VerifyNone, Mode: policy.ModeTesting, OnFail: policy.OnFailDefer}
	b := policy.Options{Bits: 112, MinTLS: 0x0303, Verify: policy.VerifyCert, Mode: policy.ModeOff, OnFail: policy.OnFailBounce}
	want := policy.Options{Bits: 256, MinTLS: 0x0303, Verify: policy.VerifyCert, Mode: policy.ModeTesting, OnFail: policy.OnFailBounce}
	if got := postfixStricter(a, b); got != want {
		t.Errorf("stricter(a, b) = %+v, want %+v", got, want)
	}
	if got := postfixStricter(b, a); got != want {
		t.Errorf("stricter(b, a) = %+v, want %+v", got, want)
	}
	if got := postfixStricter(a, a); got != a {
		t.Errorf("stricter(a, a) = %+v, want a", got)
	}
	enforce := policy.DefaultOptions()
	if got := postfixStricter(enforce, policy.Options{Bits: 112, MinTLS: 0x0301, Mode: policy.ModeOff}); got != enforce {
		t.Errorf("stricter(enforce, off) = %+v, want enforce", got)
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
	wantNotes := "7 LOST: y.example again with another policy (first on line 6, which postmap keeps); not imported\n"
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
		{"a.example x\n", "", false},
		{"a@b@c.example\n", "", false},
	}
	for _, c := range cases {
		r := ReadSMG([]byte(c.in))
		entries, notes := render(r)
		if c.entries == "" && c.in != "" && len(r.Invalid()) != 1 {
			t.Errorf("%q: %d invalid lines (%s), want 1", c.in, len(r.Invalid()), notes)
		}
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
dane.example verify=dane on-fail=route:[2001:db8::7]:2525
`)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, src); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"verify": "dane"`) || !strings.Contains(buf.String(), `"on_fail": "route:[2001:db8::7]:2525"`) {
		t.Errorf("JSON does not spell verify=dane and the route as the policy file does:\n%s", buf.String())
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

// Lists exported before smgctl's JSON became snake_case ("version",
// "min-tls", "on-fail") read as the new spelling does.
func TestReadJSONOldSpelling(t *testing.T) {
	for _, in := range []string{
		`{"schema_version": 1, "entries": [{"target": "a.example", "min_tls": "1.2", "on_fail": "defer"}]}`,
		`{"version": 1, "entries": [{"target": "a.example", "min-tls": "1.2", "on-fail": "defer"}]}`,
	} {
		r, err := ReadJSON("x.json", []byte(in))
		if err != nil || len(r.Entries) != 1 || r.Entries[0].Options.String() != "min-tls=1.2 on-fail=defer" {
			t.Errorf("%s: %+v %v", in, r, err)
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
		{`{"entries": [{"target": "a.example", "on_fail": "defer", "on-fail": "bounce"}]}`, `x.json:1:14: both "on_fail" and "on-fail"`},
		{`{"schema_version": 1, "version": 1, "entries": []}`, "a second schema_version"},
		{`{"schema_version": 2, "entries": []}`, "version 2: this smgctl reads version 1"},
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
	if _, err := ParseFormat("csv", ExportFormats); err == nil || !strings.Contains(err.Error(), "want smg, json, postfix, sendmail") {
		t.Errorf("csv for export: %v", err)
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
	if len(r.Invalid()) > 0 {
		t.Fatalf("Read succeeded with invalid lines: %v", r.Invalid())
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
