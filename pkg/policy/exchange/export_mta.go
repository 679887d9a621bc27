package exchange

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"strconv"

	"github.com/smgctl/smgctl/pkg/policy"
)

// WritePostfix writes entries as an smtp_tls_policy_maps table in
// postmap(1) source form, the reverse of ReadPostfix:
//
//	partner.com     encrypt
//	.partner.com    encrypt
//	bank.example    verify protocols=>=TLSv1.2 ciphers=high
//	legacy.example  may
//
// A domain entry becomes a "domain" and a ".domain" line, since Postfix
// matches subdomains only through the dot key. verify=cert is Postfix's
// verify level (the certificate must name the MX host); min-tls is
// protocols=>=TLSv1.x; bits map to the OpenSSL cipher grade that is at
// least as strong (export 40, low 56, medium 112 — Postfix's default for
// encrypt — high 128). mode=off is may. What Postfix cannot express is
// reported: bits above 128 (high is the strongest grade), mode=testing
// (no audit-only level: written as may), address entries (the table is
// looked up by next-hop domain), the catch-all (smtp_tls_security_level in
// main.cf, not a table key), and on-fail=bounce (Postfix defers mail that
// fails its level and returns it only when the queue lifetime ends), and
// on-fail=route (a transport map would send all of the domain's mail to
// the gateway, not only what fails TLS: written as the level alone).
func WritePostfix(w io.Writer, entries []*policy.Entry) ([]Note, error) {
	var notes []Note
	bw := bufio.NewWriter(w)
	bounceSaid := false
	for _, e := range entries {
		o := e.Options
		lost := func(format string, args ...any) {
			notes = append(notes, Note{Line: e.Line, Lost: true, Text: e.Target.Display() + ": " + fmt.Sprintf(format, args...)})
		}
		switch e.Target.Kind {
		case policy.KindCatchAll:
			lost("the catch-all is not a table key; set smtp_tls_security_level = encrypt in main.cf; left out")
			continue
		case policy.KindAddress:
			lost("Postfix looks TLS policy up by next-hop domain, not by recipient; left out")
			continue
		}
		level := "encrypt"
		var attrs string
		switch o.Mode {
		case policy.ModeOff:
			level = "may"
		case policy.ModeTesting:
			level = "may"
			lost("mode=testing has no Postfix equivalent (nothing records would-be failures); written as may")
		}
		if level == "encrypt" {
			switch o.Verify {
			case policy.VerifyCert:
				level = "verify"
			case policy.VerifyDANE:
				level = "dane-only"
			}
			if o.OnFail == policy.OnFailRoute {
				lost("on-fail=route:%s has no Postfix equivalent (a transport map would send all of the domain's mail there, not only what fails TLS); left out, mail that fails the level is deferred", o.Route)
			}
			if o.MinTLS > tls.VersionTLS10 {
				attrs += " protocols=>=" + policy.VersionName(o.MinTLS)
			}
			switch {
			case o.Bits <= 40:
				attrs += " ciphers=export"
			case o.Bits <= 56:
				attrs += " ciphers=low"
			case o.Bits <= 112:
				// medium: Postfix's smtp_tls_mandatory_ciphers default
			case o.Bits <= 128:
				attrs += " ciphers=high"
			default:
				attrs += " ciphers=high"
				lost("bits=%d: Postfix's strongest cipher grade is high (128 bits); written as ciphers=high", o.Bits)
			}
			if o.OnFail == policy.OnFailBounce && !bounceSaid {
				bounceSaid = true
				notes = append(notes, Note{Line: e.Line, Text: "Postfix defers mail that does not get its TLS level and returns it when maximal_queue_lifetime ends; " +
					"on-fail=bounce entries (this and any later ones) are written as that"})
			}
		}
		fmt.Fprintf(bw, "%s\t%s%s\n", e.Target.Domain, level, attrs)
		fmt.Fprintf(bw, ".%s\t%s%s\n", e.Target.Domain, level, attrs)
	}
	return notes, bw.Flush()
}

// WriteSendmail writes entries as TLS_Rcpt: lines of a Sendmail access
// file, the reverse of ReadSendmail: the key is the target (the empty key
// for the catch-all), the right-hand side ENCR:bits, or VERIFY:bits for
// verify=cert, with PERM+ for on-fail=bounce and TEMP+ for defer, so that
// the meaning does not depend on TLS_PERM_ERR. mode=off is OK (exempt from
// broader entries). Reported: min-tls (TLS_Rcpt has no protocol floor)
// mode=testing (no audit-only form: written as OK), verify=dane (TLS_Rcpt
// cannot demand DANE: written as ENCR) and on-fail=route (no hand-off in
// the access map: written as PERM+, which the route falls back to).
func WriteSendmail(w io.Writer, entries []*policy.Entry) ([]Note, error) {
	var notes []Note
	bw := bufio.NewWriter(w)
	for _, e := range entries {
		o := e.Options
		lost := func(format string, args ...any) {
			notes = append(notes, Note{Line: e.Line, Lost: true, Text: e.Target.Display() + ": " + fmt.Sprintf(format, args...)})
		}
		key := ""
		if e.Target.Kind != policy.KindCatchAll {
			key = e.Target.Key()
		}
		var rhs string
		switch o.Mode {
		case policy.ModeOff:
			rhs = "OK"
		case policy.ModeTesting:
			rhs = "OK"
			lost("mode=testing has no Sendmail equivalent (nothing records would-be failures); written as OK")
		default:
			rhs = "PERM+"
			if o.OnFail == policy.OnFailDefer {
				rhs = "TEMP+"
			}
			if o.OnFail == policy.OnFailRoute {
				lost("on-fail=route:%s has no Sendmail equivalent; written as PERM+ (bounce)", o.Route)
			}
			switch o.Verify {
			case policy.VerifyCert:
				rhs += "VERIFY:" + strconv.Itoa(o.Bits)
			case policy.VerifyDANE:
				rhs += "ENCR:" + strconv.Itoa(o.Bits)
				lost("verify=dane: TLS_Rcpt cannot demand DANE authentication; written as ENCR:%d (encryption only)", o.Bits)
			default:
				rhs += "ENCR:" + strconv.Itoa(o.Bits)
			}
			if o.MinTLS > tls.VersionTLS10 {
				lost("min-tls=%s: TLS_Rcpt has no protocol floor; left out of the line", policy.VersionName(o.MinTLS))
			}
		}
		fmt.Fprintf(bw, "TLS_Rcpt:%s\t%s\n", key, rhs)
	}
	return notes, bw.Flush()
}
