package smtpserver

import (
	"strings"
	"testing"

	"github.com/smgctl/smgctl/pkg/xtext"
)

func TestParsePathArg(t *testing.T) {
	tests := []struct {
		arg, keyword string
		local, dom   string
		params       string
		ok           bool
	}{
		{"FROM:<a@example.com>", "FROM:", "a", "example.com", "", true},
		{"from:<a@example.com>", "FROM:", "a", "example.com", "", true},
		{"FROM: <a@example.com>", "FROM:", "a", "example.com", "", true},
		{"FROM:<>", "FROM:", "", "", "", true},
		{"FROM:<> SIZE=10 BODY=8BITMIME", "FROM:", "", "", "SIZE=10|BODY=8BITMIME", true},
		{"TO:<Postmaster>", "TO:", "Postmaster", "", "", true},
		{"TO:<postmaster> NOTIFY=NEVER", "TO:", "", "", "", false}, // parameters need a full path
		{"TO:<\"john smith\"@example.com>", "TO:", "john smith", "example.com", "", true},
		{"TO:<\"a>b\"@example.com> NOTIFY=NEVER", "TO:", "a>b", "example.com", "NOTIFY=NEVER", true},
		{"TO:<\"a\\\"b\\\\c\"@example.com>", "TO:", "a\"b\\c", "example.com", "", true},
		{"TO:<@relay1.example,@relay2.example:user@example.com>", "TO:", "user", "example.com", "", true},
		{"TO:<user@[192.0.2.1]>", "TO:", "user", "[192.0.2.1]", "", true},
		{"TO:<user@[IPv6:2001:db8::1]>", "TO:", "user", "[IPv6:2001:db8::1]", "", true},
		{"TO:<δοκιμή@παράδειγμα.δοκιμή>", "TO:", "δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp", "", true}, // the canonical domain
		{"TO:<A@Example.COM.>", "TO:", "A", "example.com", "", true},
		{"TO:<a@[IPv6:2001:DB8:0::1]>", "TO:", "a", "[IPv6:2001:db8::1]", "", true},
		{"TO:<first.last@sub.example.com>", "TO:", "first.last", "sub.example.com", "", true},
		{"TO:<a@b>x", "TO:", "", "", "", false},
		{"TO:a@b", "TO:", "", "", "", false},
		{"TO:<a@b", "TO:", "", "", "", false},
		{"TO:<>", "TO:", "", "", "", true}, // syntax only; RCPT refuses the null path
		{"TO:<a..b@example.com>", "TO:", "", "", "", false},
		{"TO:<.a@example.com>", "TO:", "", "", "", false},
		{"TO:<a@-example.com>", "TO:", "", "", "", false},
		{"TO:<a@example..com>", "TO:", "", "", "", false},
		{"TO:<a@[192.0.2.300]>", "TO:", "", "", "", false},
		{"TO:<a@[IPv6:192.0.2.1]>", "TO:", "", "", "", false},
		{"TO:<a@[tag:content]>", "TO:", "", "", "", false},
		{"TO:<a b@example.com>", "TO:", "", "", "", false},
		{"TO:<\"\"@example.com>", "TO:", "", "", "", false},
		{"TO:<\"a\x01\"@example.com>", "TO:", "", "", "", false},
		{"TO:<@a.example:>", "TO:", "", "", "", false},
		{"TO:<a@" + strings.Repeat("x", 64) + ".com>", "TO:", "", "", "", false},
		{"FROM:<a@b> ", "FROM:", "a", "b", "", true},
		{"TO <a@b>", "TO:", "", "", "", false},
	}
	for _, tc := range tests {
		p, params, err := parsePathArg(tc.arg, tc.keyword)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok %v", tc.arg, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if p.Local != tc.local || p.Domain != tc.dom || strings.Join(params, "|") != tc.params {
			t.Errorf("%q: got %q %q %q", tc.arg, p.Local, p.Domain, params)
		}
	}
}

func TestMailParams(t *testing.T) {
	full := offer{esmtp: true, auth: true, maxSize: 1000, requireTLS: true}
	tests := []struct {
		params string
		o      offer
		want   MailParams
		code   int // 0: accepted
		enh    string
	}{
		{"SIZE=1000", full, MailParams{Size: 1000}, 0, ""},
		{"SIZE=1001", full, MailParams{}, 552, "5.3.4"},
		{"SIZE=99999999999999999999", full, MailParams{}, 552, "5.3.4"},
		{"SIZE=x", full, MailParams{}, 501, "5.5.4"},
		{"SIZE", full, MailParams{}, 501, "5.5.4"},
		{"BODY=8bitmime SMTPUTF8", full, MailParams{Body: Body8BitMIME, SMTPUTF8: true}, 0, ""},
		{"BODY=BINARYMIME", full, MailParams{}, 501, "5.5.4"},
		{"RET=hdrs ENVID=QQ+2B1", full, MailParams{Ret: "HDRS", EnvID: "QQ+1"}, 0, ""},
		{"RET=ALL", full, MailParams{}, 501, "5.5.4"},
		{"ENVID=a+2", full, MailParams{}, 501, "5.5.4"},
		{"ENVID=a+2b", full, MailParams{}, 501, "5.5.4"}, // HEXCHAR is upper case
		{"ENVID=" + strings.Repeat("x", 101), full, MailParams{}, 501, "5.5.4"},
		{"REQUIRETLS", full, MailParams{RequireTLS: true}, 0, ""},
		{"REQUIRETLS", offer{esmtp: true}, MailParams{}, 555, "5.5.4"},
		{"AUTH=<>", full, MailParams{Auth: "<>"}, 0, ""},
		{"AUTH=a+40b", offer{esmtp: true}, MailParams{}, 555, "5.5.4"},
		{"SIZE=1 SIZE=2", full, MailParams{}, 501, "5.5.4"},
		{"X-FOO=bar", full, MailParams{}, 555, "5.5.4"},
		{"SIZE=10", offer{}, MailParams{}, 555, "5.5.4"}, // after HELO
		{"=x", full, MailParams{}, 501, "5.5.4"},
	}
	for _, tc := range tests {
		mp, r := parseMailParams(strings.Fields(tc.params), tc.o)
		if r == nil && tc.code != 0 || r != nil && (r.Code != tc.code || r.Enhanced != tc.enh) {
			t.Errorf("%q: reply %v, want %d %s", tc.params, r, tc.code, tc.enh)
			continue
		}
		if r == nil && mp != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.params, mp, tc.want)
		}
	}
}

func TestRcptParams(t *testing.T) {
	o := offer{esmtp: true}
	tests := []struct {
		params string
		utf8   bool
		want   RcptParams
		code   int
	}{
		{"NOTIFY=NEVER", false, RcptParams{Notify: NotifyNever}, 0},
		{"NOTIFY=success,Failure,DELAY", false, RcptParams{Notify: NotifySuccess | NotifyFailure | NotifyDelay}, 0},
		{"NOTIFY=NEVER,SUCCESS", false, RcptParams{}, 501},
		{"NOTIFY=SUCCESS,SUCCESS", false, RcptParams{}, 501},
		{"NOTIFY=", false, RcptParams{}, 501},
		{"ORCPT=rfc822;a+2Bb@example.com", false, RcptParams{ORcpt: ORcpt{"rfc822", "a+b@example.com"}}, 0},
		{"ORCPT=utf-8;\\x{E9}t\\x{E9}@example.com", false, RcptParams{ORcpt: ORcpt{"utf-8", "été@example.com"}}, 0},
		{"ORCPT=utf-8;été@example.com", true, RcptParams{ORcpt: ORcpt{"utf-8", "été@example.com"}}, 0},
		{"ORCPT=utf-8;été@example.com", false, RcptParams{}, 501},
		{"ORCPT=rfc822", false, RcptParams{}, 501},
		{"ORCPT=;a@b", false, RcptParams{}, 501},
		{"ORCPT=rfc822;" + strings.Repeat("a", 500), false, RcptParams{}, 501},
		{"FOO", false, RcptParams{}, 555},
	}
	for _, tc := range tests {
		rp, r := parseRcptParams(strings.Fields(tc.params), o, tc.utf8)
		if r == nil && tc.code != 0 || r != nil && r.Code != tc.code {
			t.Errorf("%q: reply %v, want %d", tc.params, r, tc.code)
			continue
		}
		if r == nil && rp != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.params, rp, tc.want)
		}
	}
}

func TestXtextRoundTrip(t *testing.T) {
	for _, s := range []string{"", "abc", "a+b=c d\x00\xff", "<id@example.com>"} {
		enc := xtext.Encode(s)
		if dec, err := decodeXtext(enc, false); err != nil || dec != s {
			t.Errorf("%q: encoded %q, decoded %q %v", s, enc, dec, err)
		}
	}
}

// FuzzCommand feeds arbitrary command lines to the parsers: no panic, and
// a parsed path written out with Path.String parses back to the same
// value.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@example.com> SIZE=10 BODY=8BITMIME RET=FULL ENVID=x+2B",
		"RCPT TO:<\"a b\"@[IPv6:::1]> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a@b",
		"RCPT TO:<Postmaster>", "MAIL FROM:<>", "RCPT TO:<@a,@b:c@d>", "EHLO x", "BDAT 10 LAST",
	} {
		f.Add(s)
	}
	full := offer{esmtp: true, auth: true, maxSize: 1 << 20, requireTLS: true}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg := splitCommand(line)
		keyword := "FROM:"
		if verb == "RCPT" {
			keyword = "TO:"
		}
		p, params, err := parsePathArg(arg, keyword)
		if err != nil {
			return
		}
		parseMailParams(params, full)
		parseRcptParams(params, full, true)
		if p.IsNull() || p.Domain == "" {
			return
		}
		again, rest, err := parsePath("<" + p.String() + ">")
		if err != nil || rest != "" || again != p {
			t.Fatalf("%q: %+v written %q read back %+v %q %v", line, p, p.String(), again, rest, err)
		}
	})
}
