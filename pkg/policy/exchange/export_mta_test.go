package exchange

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
)

func entriesOf(t *testing.T, text string) []*policy.Entry {
	t.Helper()
	f, err := policy.Parse("policy.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f.Entries()
}

// What Postfix and Sendmail can express comes back unchanged through
// their readers; the rest is reported with its policy line.
func TestExportRoundTrip(t *testing.T) {
	const exact = `partner.com
bank.example bits=128 min-tls=1.2 verify=cert
legacy.example mode=off
weak.example bits=56 on-fail=defer
dane.example min-tls=1.2 verify=dane
`
	for _, tc := range []struct {
		format Format
		write  func(*bytes.Buffer, []*policy.Entry) ([]Note, error)
		want   string
	}{
		{Postfix, func(b *bytes.Buffer, e []*policy.Entry) ([]Note, error) { return WritePostfix(b, e) },
			"partner.com\tencrypt\n.partner.com\tencrypt\n" +
				"bank.example\tverify protocols=>=TLSv1.2 ciphers=high\n.bank.example\tverify protocols=>=TLSv1.2 ciphers=high\n" +
				"legacy.example\tmay\n.legacy.example\tmay\n" +
				"weak.example\tencrypt ciphers=low\n.weak.example\tencrypt ciphers=low\n" +
				"dane.example\tdane-only protocols=>=TLSv1.2\n.dane.example\tdane-only protocols=>=TLSv1.2\n"},
	} {
		var buf bytes.Buffer
		notes, err := tc.write(&buf, entriesOf(t, exact))
		if err != nil {
			t.Fatal(err)
		}
		if buf.String() != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.format, buf.String(), tc.want)
		}
		for _, n := range notes {
			if n.Lost {
				t.Errorf("%s: exact entries reported lost: %v", tc.format, n)
			}
		}
		checkReadBack(t, tc.format, buf.Bytes(), exact, "on-fail")
	}

	const sendmailExact = `partner.com
bank.example bits=256 verify=cert
ceo@supplier.example on-fail=defer bits=128
legacy.example mode=off
* bits=128
`
	var buf bytes.Buffer
	notes, err := WriteSendmail(&buf, entriesOf(t, sendmailExact))
	if err != nil || len(notes) != 0 {
		t.Fatalf("%v %v", notes, err)
	}
	want := "TLS_Rcpt:partner.com\tPERM+ENCR:112\nTLS_Rcpt:bank.example\tPERM+VERIFY:256\n" +
		"TLS_Rcpt:ceo@supplier.example\tTEMP+ENCR:128\nTLS_Rcpt:legacy.example\tOK\nTLS_Rcpt:\tPERM+ENCR:128\n"
	if buf.String() != want {
		t.Errorf("sendmail:\n%s\nwant\n%s", buf.String(), want)
	}
	checkReadBack(t, Sendmail, buf.Bytes(), sendmailExact, "")
}

// checkReadBack imports data and compares each entry's options with the
// source policy's; ignore names an option the format does not carry.
func checkReadBack(t *testing.T, format Format, data []byte, source, ignore string) {
	t.Helper()
	res, err := Read(format, "out", data, ReadOptions{})
	if err != nil {
		t.Fatalf("%s: reading back: %v", format, err)
	}
	want := map[string]policy.Options{}
	for _, e := range entriesOf(t, source) {
		want[e.Target.Key()] = e.Options
	}
	if len(res.Entries) != len(want) {
		t.Fatalf("%s: read back %d entries, want %d", format, len(res.Entries), len(want))
	}
	for _, e := range res.Entries {
		got, w := e.Options, want[e.Target.Key()]
		if ignore == "on-fail" {
			got.OnFail, w.OnFail = 0, 0
		}
		if w.Mode == policy.ModeOff {
			got, w = policy.Options{Mode: got.Mode}, policy.Options{Mode: w.Mode}
		}
		if got != w {
			t.Errorf("%s: %s read back as %s, want %s", format, e.Target.Key(), got, w)
		}
	}
}

func TestExportReportsWhatCannotBeExpressed(t *testing.T) {
	entries := entriesOf(t, `* bits=112
ceo@supplier.example
strong.example bits=256
audit.example mode=testing
tls12.example min-tls=1.2
`)
	var buf bytes.Buffer
	notes, err := WritePostfix(&buf, entries)
	if err != nil {
		t.Fatal(err)
	}
	lostLines := map[int]string{}
	for _, n := range notes {
		if n.Lost {
			lostLines[n.Line] = n.Text
		}
	}
	for line, word := range map[int]string{1: "catch-all", 2: "next-hop domain", 3: "ciphers=high", 4: "mode=testing"} {
		if !strings.Contains(lostLines[line], word) {
			t.Errorf("postfix: line %d: note %q, want one naming %q", line, lostLines[line], word)
		}
	}
	if strings.Contains(buf.String(), "ceo@") || strings.Contains(buf.String(), "*") {
		t.Errorf("postfix table holds what it cannot express:\n%s", buf.String())
	}

	buf.Reset()
	notes, err = WriteSendmail(&buf, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 2 || notes[0].Line != 4 || notes[1].Line != 5 || !strings.Contains(notes[1].Text, "min-tls") {
		t.Errorf("sendmail notes: %v", notes)
	}
}

// A hand-off route has no Postfix or Sendmail equivalent, and Sendmail
// cannot demand DANE: each is reported with its line, and the table still
// carries the entry's TLS level.
func TestExportReportsRouteAndDANE(t *testing.T) {
	entries := entriesOf(t, `routed.example on-fail=route:gw.example:2525
dane.example verify=dane
`)
	var buf bytes.Buffer
	notes, err := WritePostfix(&buf, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) < 1 || !notes[0].Lost || notes[0].Line != 1 || !strings.Contains(notes[0].Text, "on-fail=route:gw.example:2525 has no Postfix equivalent") {
		t.Errorf("postfix notes: %v", notes)
	}
	for _, n := range notes {
		if n.Lost && n.Line == 2 {
			t.Errorf("postfix: verify=dane reported lost, but dane-only expresses it: %v", n)
		}
	}
	if want := "routed.example\tencrypt\n.routed.example\tencrypt\ndane.example\tdane-only\n.dane.example\tdane-only\n"; buf.String() != want {
		t.Errorf("postfix table:\n%s\nwant\n%s", buf.String(), want)
	}

	buf.Reset()
	notes, err = WriteSendmail(&buf, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 2 || notes[0].Line != 1 || !strings.Contains(notes[0].Text, "no Sendmail equivalent") ||
		notes[1].Line != 2 || !strings.Contains(notes[1].Text, "cannot demand DANE") {
		t.Errorf("sendmail notes: %v", notes)
	}
	if want := "TLS_Rcpt:routed.example\tPERM+ENCR:112\nTLS_Rcpt:dane.example\tPERM+ENCR:112\n"; buf.String() != want {
		t.Errorf("sendmail:\n%s\nwant\n%s", buf.String(), want)
	}
}
