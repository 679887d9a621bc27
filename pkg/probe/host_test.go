package probe

import (
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
)

func TestParseHostTarget(t *testing.T) {
	for in, want := range map[string]string{
		"[127.0.0.11]":        "[127.0.0.11]",
		"[127.0.0.11]:2525":   "[127.0.0.11]:2525",
		"127.0.0.11":          "[127.0.0.11]",
		"127.0.0.11:25":       "[127.0.0.11]:25",
		"[MX.Partner.Test.]":  "[mx.partner.test]",
		"mx.partner.test:587": "[mx.partner.test]:587",
		"[::1]:25":            "[::1]:25",
		"[IPv6:::1]":          "[::1]",
		"::1":                 "[::1]",
	} {
		h, ok, err := ParseHostTarget(in)
		if !ok || err != nil || h.Key() != want {
			t.Errorf("ParseHostTarget(%q) = %q %v %v, want %q", in, h.Key(), ok, err, want)
		}
	}
	for _, in := range []string{"partner.test", "ceo@partner.test", "ceo@partner.test:25"} {
		if _, ok, err := ParseHostTarget(in); ok || err != nil {
			t.Errorf("ParseHostTarget(%q): a domain or address taken for a host (%v)", in, err)
		}
	}
	for _, in := range []string{"[127.0.0.11", "[mx.test]x", "[mx.test]:0", "mx.test:99999", "[bad..name]", "mx.test:smtp"} {
		if _, ok, err := ParseHostTarget(in); !ok || err == nil {
			t.Errorf("ParseHostTarget(%q): no error", in)
		}
	}
}

// A hop that meets 112 bits over TLS 1.0 with RSA key exchange passes,
// but the risks say what is weak about it.
func TestRisksOfWeakTLS(t *testing.T) {
	p := &Prober{cfg: Config{Now: time.Now}}
	at := func(version policy.VersionLabel, suite string) *Attempt {
		return &Attempt{Addr: "192.0.2.1:25", TLS: true, graded: true, Met: true, Version: version, Suite: suite, Bits: 256}
	}
	rep := &Report{Hosts: []HostReport{{Name: "mx.weak.test", Attempts: []*Attempt{
		at("TLSv1.0", "TLS_RSA_WITH_AES_256_CBC_SHA"),
		at("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
	}}}}
	risks := strings.Join(p.risks(rep), "\n")
	for _, want := range []string{
		"MX mx.weak.test [192.0.2.1:25] negotiated TLSv1.0, deprecated (RFC 8996)",
		"negotiated TLS_RSA_WITH_AES_256_CBC_SHA: RSA key exchange, no forward secrecy",
	} {
		if !strings.Contains(risks, want) {
			t.Errorf("risks do not say %q:\n%s", want, risks)
		}
	}
	if strings.Count(risks, "forward secrecy") != 1 || strings.Count(risks, "deprecated") != 1 {
		t.Errorf("the TLS 1.2 ECDHE hop was named too:\n%s", risks)
	}
}
