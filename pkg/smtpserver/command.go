package smtpserver

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// splitCommand splits a command line into its verb, upper-cased (RFC 5321
// §2.4: verbs are case-insensitive), and the argument after the one SP
// that separates them (§4.1.1).
func splitCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), arg
}

// parsePathArg reads the argument of MAIL ("FROM:") or RCPT ("TO:"): the
// keyword, the path and the parameters (RFC 5321 §4.1.1.2, §4.1.1.3).
// One SP after the colon is tolerated: RFC 5321's grammar has none, but
// old clients send it and it is unambiguous.
func parsePathArg(arg, keyword string) (Path, []string, error) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return Path{}, nil, errPathSyntax
	}
	arg = strings.TrimPrefix(arg[len(keyword):], " ")
	var p Path
	var rest string
	var err error
	if keyword == "TO:" && len(arg) == len("<postmaster>") && strings.EqualFold(arg, "<postmaster>") {
		// RFC 5321 §4.1.1.3: <Postmaster> without a domain.
		p, rest = Path{Mailbox: address.Mailbox{Local: arg[1 : len(arg)-1]}}, ""
	} else if p, rest, err = parsePath(arg); err != nil {
		return Path{}, nil, err
	}
	if rest == "" {
		return p, nil, nil
	}
	if rest[0] != ' ' {
		return Path{}, nil, errPathSyntax
	}
	return p, strings.Fields(rest), nil
}

// Body is MAIL's BODY parameter (RFC 6152). BINARYMIME (RFC 3030) is not
// offered: the relay cannot promise a binary-clean path to every next
// hop.
type Body string

const (
	BodyUnset    Body = ""
	Body7Bit     Body = "7BIT"
	Body8BitMIME Body = "8BITMIME"
)

// MailParams are MAIL's ESMTP parameters, checked and decoded.
type MailParams struct {
	Size       int64  // SIZE= (RFC 1870), 0 when not given
	Body       Body   // BODY= (RFC 6152)
	SMTPUTF8   bool   // RFC 6531 §3.4
	RequireTLS bool   // RFC 8689 §4.1; only accepted over TLS
	Ret        string // RET= FULL or HDRS (RFC 3461 §4.3), "" when not given
	EnvID      string // ENVID= (RFC 3461 §4.4), xtext decoded
	// Auth is AUTH= (RFC 4954 §5), xtext decoded; "<>" when the client
	// said the submitter is unknown. Only accepted when AUTH is offered.
	Auth string
}

// Notify is RCPT's NOTIFY parameter (RFC 3461 §4.1); 0 when not given.
type Notify uint8

const (
	NotifyNever Notify = 1 << iota
	NotifySuccess
	NotifyFailure
	NotifyDelay
)

// ORcpt is RCPT's ORCPT parameter (RFC 3461 §4.2): the original
// recipient as the client knew it. Both fields are "" when not given.
type ORcpt struct {
	AddrType string // "rfc822", "utf-8" (RFC 6533 §3), as sent
	Addr     string // decoded
}

// RcptParams are RCPT's ESMTP parameters, checked and decoded.
type RcptParams struct {
	Notify Notify
	ORcpt  ORcpt
}

// offer is what the server offered on this connection, which decides
// which parameters are known (RFC 5321 §4.1.1.11: an unknown or unoffered
// parameter gets 555).
type offer struct {
	esmtp      bool // EHLO, not HELO: no parameters at all after HELO
	auth       bool // AUTH offered: over TLS, to an Authenticator
	maxSize    int64
	requireTLS bool // offered only over TLS (RFC 8689 §4)
}

// DSN length limits (RFC 3461 §4.4 and §4.2).
const (
	maxEnvID = 100
	maxORcpt = 500
)

// splitParam splits esmtp-param = esmtp-keyword ["=" esmtp-value] and
// checks both (RFC 5321 §4.1.2; RFC 6531 §3.3 lets the value be UTF-8).
func splitParam(p string) (key, value string, hasValue, ok bool) {
	key, value, hasValue = strings.Cut(p, "=")
	if key == "" || !isAlnum(key[0]) {
		return "", "", false, false
	}
	for i := 1; i < len(key); i++ {
		if !isAlnum(key[i]) && key[i] != '-' {
			return "", "", false, false
		}
	}
	if hasValue {
		if value == "" || !utf8.ValidString(value) {
			return "", "", false, false
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 33 || c == '=' || c == 127 {
				return "", "", false, false
			}
		}
	}
	return strings.ToUpper(key), value, hasValue, true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// parseMailParams interprets MAIL's parameters. A nil reply means all
// were accepted.
func parseMailParams(fields []string, o offer) (MailParams, *smtpreply.Reply) {
	var mp MailParams
	seen := map[string]bool{}
	for _, f := range fields {
		key, value, hasValue, ok := splitParam(f)
		if !ok {
			return mp, ptr(replySyntax("MAIL FROM:<address> [parameters]"))
		}
		if !o.esmtp {
			return mp, ptr(replyUnknownParam(key))
		}
		if seen[key] {
			return mp, ptr(replyBadParam(key))
		}
		seen[key] = true
		bad := ptr(replyBadParam(key))
		switch key {
		case "SIZE": // RFC 1870 §3: size-value = 1*20DIGIT
			if !hasValue || len(value) > 20 || strings.Trim(value, "0123456789") != "" {
				return mp, bad
			}
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || o.maxSize > 0 && n > o.maxSize {
				return mp, ptr(replySizeParamBig) // RFC 1870 §6
			}
			mp.Size = n
		case "BODY":
			switch strings.ToUpper(value) {
			case "7BIT":
				mp.Body = Body7Bit
			case "8BITMIME":
				mp.Body = Body8BitMIME
			default:
				return mp, bad
			}
		case "SMTPUTF8":
			if hasValue {
				return mp, bad
			}
			mp.SMTPUTF8 = true
		case "REQUIRETLS":
			// In clear text it was not offered, so it is unknown (555).
			if !o.requireTLS {
				return mp, ptr(replyUnknownParam(key))
			}
			if hasValue {
				return mp, bad
			}
			mp.RequireTLS = true
		case "RET":
			switch v := strings.ToUpper(value); v {
			case "FULL", "HDRS":
				mp.Ret = v
			default:
				return mp, bad
			}
		case "ENVID":
			v, err := decodeXtext(value, false)
			if !hasValue || err != nil || len(v) > maxEnvID {
				return mp, bad
			}
			mp.EnvID = v
		case "AUTH":
			if !o.auth {
				return mp, ptr(replyUnknownParam(key))
			}
			v, err := decodeXtext(value, true)
			if !hasValue || err != nil {
				return mp, bad
			}
			mp.Auth = v
		default:
			return mp, ptr(replyUnknownParam(key))
		}
	}
	return mp, nil
}

// parseRcptParams interprets RCPT's parameters; utf8ok is MAIL's
// SMTPUTF8.
func parseRcptParams(fields []string, o offer, utf8ok bool) (RcptParams, *smtpreply.Reply) {
	var rp RcptParams
	seen := map[string]bool{}
	for _, f := range fields {
		key, value, hasValue, ok := splitParam(f)
		if !ok {
			return rp, ptr(replySyntax("RCPT TO:<address> [parameters]"))
		}
		if !o.esmtp {
			return rp, ptr(replyUnknownParam(key))
		}
		if seen[key] {
			return rp, ptr(replyBadParam(key))
		}
		seen[key] = true
		bad := ptr(replyBadParam(key))
		switch key {
		case "NOTIFY":
			n, ok := parseNotify(value)
			if !hasValue || !ok {
				return rp, bad
			}
			rp.Notify = n
		case "ORCPT":
			t, v, ok := strings.Cut(value, ";")
			if !hasValue || !ok || t == "" || len(value) > maxORcpt {
				return rp, bad
			}
			for i := 0; i < len(t); i++ {
				if !isAlnum(t[i]) && t[i] != '-' {
					return rp, bad
				}
			}
			addr, err := decodeXtext(v, utf8ok)
			if err == nil && strings.EqualFold(t, "utf-8") {
				addr, err = decodeUTF8Addr(addr)
			}
			if err != nil || addr == "" {
				return rp, bad
			}
			rp.ORcpt = ORcpt{AddrType: t, Addr: addr}
		default:
			return rp, ptr(replyUnknownParam(key))
		}
	}
	return rp, nil
}

// parseNotify reads "NEVER" or a list of SUCCESS, FAILURE and DELAY
// (RFC 3461 §4.1), case-insensitively, each at most once.
func parseNotify(v string) (Notify, bool) {
	if strings.EqualFold(v, "NEVER") {
		return NotifyNever, true
	}
	var n Notify
	for w := range strings.SplitSeq(v, ",") {
		var bit Notify
		switch strings.ToUpper(w) {
		case "SUCCESS":
			bit = NotifySuccess
		case "FAILURE":
			bit = NotifyFailure
		case "DELAY":
			bit = NotifyDelay
		default:
			return 0, false
		}
		if n&bit != 0 {
			return 0, false
		}
		n |= bit
	}
	return n, true
}

func ptr(r smtpreply.Reply) *smtpreply.Reply { return &r }
