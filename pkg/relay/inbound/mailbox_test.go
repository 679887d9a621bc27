package inbound

import (
	"slices"
	"strings"
	"testing"
)

// Issue 10 points 3, 5 and 14: every address is parsed at MAIL/RCPT,
// refused when it is not an RFC 5321 Mailbox, and stored in its one
// canonical form; a quoted local part is stored quoted, so it can never
// become parameters on the next hop's command line.
func TestEnvelopeAddresses(t *testing.T) {
	r := startRelay(t, Config{MaxRecipients: 20})
	c := r.dial()
	c.hello()

	c.expect("MAIL FROM:<alice@example.com..>", "501 5.1.7 Bad sender address syntax")
	c.expect("MAIL FROM:<alice@[192.0.2.1]>", "550 5.1.8")
	c.expect("MAIL FROM:<alice\x01@example.com>", "501 5.1.7")
	c.expect("MAIL FROM:<Alice@Example.COM.> SMTPUTF8", "250 ")
	for _, bad := range []string{
		"user@plain.test..", "user@.plain.test", "user@plain..test", "user@-plain.test",
		"user@plain_x.test", "user@" + strings.Repeat("a", 64) + ".test",
		"user@" + strings.Repeat("abcdefghi.", 26) + "test", "user@xn--zz.test",
		"us\x7fer@plain.test", "us\x01er@plain.test", "\"a\tb\"@plain.test",
	} {
		c.expect("RCPT TO:<"+bad+">", "501 5.1.3 Bad recipient address syntax")
	}
	c.expect("RCPT TO:<\"us\x00er\"@plain.test>", "500 5.5.2 Error: NUL character in command")
	c.expect("RCPT TO:<user@[127.0.0.12]>", "550 5.1.2")
	c.expect("RCPT TO:<user@[IPv6:::1]>", "550 5.1.2")
	c.expect("RCPT TO:<user@plain.test>x>", "501 5.1.3") // what follows ">" is no parameter
	for _, good := range []string{
		"user@PLAIN.Test.",
		"u2@ｐｌａｉｎ.test",
		"u3@ＰＬＡＩＮ．ｔｅｓｔ",
		"u4@bücher.example",
		`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`,
		`"a b"@good.test`,
		`"a\\b\"c"@good.test`,
		`"plain"@good.test`,
		`"user"@plain.test`, // the first one again: stored once
	} {
		c.expect("RCPT TO:<"+good+">", "250 ")
	}
	c.expect("DATA", "354 ")
	c.send(simpleMsg + ".\r\n")
	env, _ := r.message(queuedID(t, c.reply()))
	if env.From != "Alice@example.com" {
		t.Errorf("sender stored as %q, want Alice@example.com", env.From)
	}
	var got []string
	for _, rc := range env.Recipients {
		got = append(got, rc.Address)
	}
	want := []string{
		"user@plain.test", "u2@plain.test", "u3@plain.test", "u4@xn--bcher-kva.example",
		`"inj1@good.test> NOTIFY=SUCCESS ORCPT=rfc822;x"@good.test`, `"a b"@good.test`,
		`"a\\b\"c"@good.test`, "plain@good.test",
	}
	if !slices.Equal(got, want) {
		t.Errorf("recipients stored as\n%q\nwant\n%q", got, want)
	}
}
