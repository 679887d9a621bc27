package exchange

import (
	"strings"

	"github.com/smgctl/smgctl/pkg/policy"
)

// ReadSendmail reads the TLS_Rcpt: lines of a Sendmail access file, the
// makemap source (cf/README "Configuring TLS", "TLS_Rcpt"):
//
//	TLS_Rcpt:partner.com        PERM+ENCR:112
//	TLS_Rcpt:ceo@supplier.ex    PERM+VERIFY:256
//	TLS_Rcpt:                   ENCR:112
//	TLS_Rcpt:legacy.example     OK
//
// Sendmail looks TLS_Rcpt up by user@domain, the domain and each parent,
// then the empty key — smgctl's own order, so keys map one to one: the
// empty key is the catch-all. On the right-hand side, ENCR:n gives bits,
// VERIFY (or VERIFY:n) verify=cert, PERM+ on-fail=bounce and TEMP+
// on-fail=defer; neither prefix means Sendmail's default, a temporary
// error (defer), unless the .mc defined TLS_PERM_ERR (opt.SendmailPermErr).
// A right-hand side with no requirement at all (OK, RELAY, ...) becomes
// mode=off: the recipient is exempt from broader entries, as in Sendmail.
//
// CN, CS and CI name checks have no equivalent; a line with one is
// imported with the rest of its requirement and reported (Lost). A
// TLS_Rcpt line that is not valid — a bad domain, no right-hand side,
// ENCR without bits, bits outside 1–256 — is invalid input (Invalid). TLS_Srv and
// Try_TLS lines are per server, not per recipient, and are reported;
// other access-map lines (Connect:, To:, TLS_Clt:, ...) do not concern
// outbound TLS and are skipped.
func ReadSendmail(data []byte, opt ReadOptions) *Result {
	c := newCollector()
	for i, raw := range lines(data) {
		n := i + 1
		s := strings.TrimSpace(raw)
		if s == "" || s[0] == '#' {
			continue
		}
		key, rhs := s, ""
		if j := strings.IndexAny(s, " \t"); j >= 0 {
			key, rhs = s[:j], strings.TrimSpace(s[j+1:])
		}
		tag, rest, tagged := strings.Cut(key, ":")
		if !tagged {
			continue
		}
		switch strings.ToLower(tag) {
		case "tls_rcpt":
		case "tls_srv", "try_tls":
			c.res.note(n, true, "%s: entries apply to a server name, not to recipients as smgctl's do; not imported", tag)
			continue
		default:
			continue
		}
		t, ok := sendmailTarget(c.res, n, rest)
		if !ok {
			continue
		}
		if rhs == "" {
			c.res.invalid(n, "TLS_Rcpt:%s has no right-hand side", rest)
			continue
		}
		e := policy.Entry{Target: t, Options: policy.DefaultOptions()}
		if !sendmailRHS(c.res, n, rhs, &e.Options, opt) {
			continue
		}
		c.add(n, e)
	}
	return c.res
}

// sendmailTarget maps the key after "TLS_Rcpt:".
func sendmailTarget(res *Result, n int, key string) (policy.Target, bool) {
	switch {
	case key == "":
		return policy.CatchAll, true
	case strings.HasSuffix(key, "@"):
		res.note(n, true, "TLS_Rcpt:%s matches a local part in every domain, which smgctl cannot express; not imported", key)
		return policy.Target{}, false
	case strings.HasPrefix(key, "["):
		res.note(n, true, "TLS_Rcpt:%s is an address literal, not a recipient domain; not imported", key)
		return policy.Target{}, false
	}
	t, err := policy.ParseTarget(key)
	if err != nil {
		res.invalid(n, "TLS_Rcpt:%s: %v", key, err)
		return policy.Target{}, false
	}
	return t, true
}

// sendmailRHS applies a TLS_Rcpt right-hand side such as
// PERM+VERIFY:128+CN:mx.example to o. It reports false when the line
// cannot be imported at all.
func sendmailRHS(res *Result, n int, rhs string, o *policy.Options, opt ReadOptions) bool {
	o.OnFail = policy.OnFailDefer
	if opt.SendmailPermErr {
		o.OnFail = policy.OnFailBounce
	}
	required := false // ENCR or VERIFY seen
	var unknown []string
	for _, tok := range strings.Split(rhs, "+") {
		name, arg, hasArg := strings.Cut(tok, ":")
		switch strings.ToUpper(name) {
		case "PERM":
			o.OnFail = policy.OnFailBounce
		case "TEMP":
			o.OnFail = policy.OnFailDefer
		case "ENCR", "VERIFY":
			required = true
			if strings.EqualFold(name, "VERIFY") {
				o.Verify = policy.VerifyCert
			} else if !hasArg {
				res.invalid(n, "ENCR without a number of bits (want ENCR:n)")
				return false
			}
			if hasArg {
				if err := o.Set("bits", arg); err != nil {
					res.invalid(n, "%s: %v", tok, err)
					return false
				}
			}
		default:
			unknown = append(unknown, tok)
		}
	}
	switch {
	case required && len(unknown) > 0:
		res.note(n, true, "%s cannot be expressed; imported without it", strings.Join(unknown, "+"))
	case !required && hasRequirementTag(unknown):
		// A name check means the connection must carry a certificate,
		// so TLS was required: keep that much rather than exempt.
		res.note(n, true, "%s cannot be expressed; imported as an encryption requirement only", strings.Join(unknown, "+"))
	case !required:
		// No requirement at all: in Sendmail the recipient is then exempt
		// from the broader keys, which is exactly mode=off.
		*o = policy.DefaultOptions()
		o.Mode = policy.ModeOff
	}
	return true
}

// hasRequirementTag reports whether tokens hold one of TLS_Rcpt's
// certificate checks (CN, CS, CI), as opposed to a plain access result.
func hasRequirementTag(tokens []string) bool {
	for _, t := range tokens {
		name, _, _ := strings.Cut(t, ":")
		switch strings.ToUpper(name) {
		case "CN", "CS", "CI", "CITAG":
			return true
		}
	}
	return false
}
