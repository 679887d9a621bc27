package inbound

import (
	"testing"
)

// RFC 8689 §3, §4.1: "TLS-Required: No" in the message's own header
// section is stored with the message, whatever the case and white space
// of the field, folded or not; the same text in the body or in an
// attached message's header is not a request; REQUIRETLS on MAIL FROM
// wins over the field.
func TestTLSRequiredNoStored(t *testing.T) {
	const nested = "From: alice@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: carol@example.com\r\nTLS-Required: No\r\nSubject: inner\r\n\r\ninner body\r\n--b--\r\n"
	for _, c := range []struct {
		name       string
		msg        string
		requireTLS bool
		want       bool
	}{
		{"plain", "From: alice@example.com\r\nTLS-Required: No\r\nSubject: x\r\n\r\nHi.\r\n", false, true},
		{"case and space", "From: alice@example.com\r\ntls-required :\t no  \r\nSubject: x\r\n\r\nHi.\r\n", false, true},
		{"folded", "From: alice@example.com\r\nTLS-REQUIRED:\r\n NO\r\n\r\nHi.\r\n", false, true},
		{"last field", "From: alice@example.com\r\nTLS-Required: No\r\n\r\nHi.\r\n", false, true},
		{"absent", simpleMsg, false, false},
		{"other value", "From: alice@example.com\r\nTLS-Required: Yes\r\n\r\nHi.\r\n", false, false},
		{"No and something else", "TLS-Required: No\r\nTLS-Required: Nope\r\nFrom: alice@example.com\r\n\r\nHi.\r\n", false, false},
		{"in the body", "From: alice@example.com\r\nSubject: x\r\n\r\nTLS-Required: No\r\n", false, false},
		{"in a continuation line", "From: alice@example.com\r\nSubject: x\r\n TLS-Required: No\r\n\r\nHi.\r\n", false, false},
		{"in an attached message", nested, false, false},
		{"with REQUIRETLS", "From: alice@example.com\r\nTLS-Required: No\r\n\r\nHi.\r\n", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := startRelay(t, Config{})
			cl := r.dial()
			cl.hello()
			cl.startTLS(r.ca)
			cl.expect("EHLO client.test", "250")
			mail := "MAIL FROM:<alice@example.com>"
			if c.requireTLS {
				mail += " REQUIRETLS"
			}
			cl.expect(mail, "250 ")
			cl.expect("RCPT TO:<bob@partner.test>", "250 ")
			cl.expect("DATA", "354 ")
			cl.send(c.msg + ".\r\n")
			env, _ := r.message(queuedID(t, cl.reply()))
			if env.TLSRequiredNo != c.want || env.RequireTLS != c.requireTLS {
				t.Errorf("TLSRequiredNo %v RequireTLS %v, want %v %v", env.TLSRequiredNo, env.RequireTLS, c.want, c.requireTLS)
			}
		})
	}
}
