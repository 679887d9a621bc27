package smtpreply

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The relay's own texts are a contract (SPEC §4, docs/policy.md): DSNs,
// audit records and operators' filters match them byte for byte.
func TestCodesText(t *testing.T) {
	for _, c := range []struct {
		got  Reply
		want string
	}{
		{EncryptionTooWeak(0, 112), "503 5.7.0 encryption too weak 0 less than 112"},
		{ProtocolTooOld("TLSv1.0", "TLSv1.2"), "503 5.7.0 protocol too old TLSv1.0 less than TLSv1.2"},
		{CertificateNotVerified("no verified chain"), "503 5.7.0 certificate not verified: no verified chain"},
		{NullMX("null.test"), "556 5.1.10 Recipient address rejected: null.test does not accept mail (null MX)"},
		{NoDomain(errors.New("NXDOMAIN")), "550 5.4.4 Host or domain name not found: NXDOMAIN"},
		{LookupFailed("SERVFAIL"), "451 4.4.3 Host or domain name lookup failed: SERVFAIL"},
		{NoMXReached("p.test"), "451 4.4.4 no MX host of p.test could be reached"},
		{AdminReturn, "550 5.0.0 delivery cancelled by the administrator"},
		{RequireTLS(""), "550 5.7.30 REQUIRETLS support required"},
		{RequireTLS("mx.p.test did not offer REQUIRETLS"), "550 5.7.30 REQUIRETLS support required: mx.p.test did not offer REQUIRETLS"},
	} {
		if s := c.got.String(); s != c.want {
			t.Errorf("got %q, want %q", s, c.want)
		}
	}
}

// A DSN built from an envelope on disk has only the text: the readers
// must find what the constructors put there, and nothing in a remote
// server's look-alike with another code.
func TestCodesReadBack(t *testing.T) {
	if g, w, ok := ReadEncryptionTooWeak(EncryptionTooWeak(128, 256).String()); !ok || g != 128 || w != 256 {
		t.Errorf("too weak: %d %d %v", g, w, ok)
	}
	if g, w, ok := ReadProtocolTooOld(ProtocolTooOld("TLSv1.1", "TLSv1.3").String()); !ok || g != "TLSv1.1" || w != "TLSv1.3" {
		t.Errorf("too old: %q %q %v", g, w, ok)
	}
	if r, ok := ReadCertificateNotVerified(CertificateNotVerified("expired").String()); !ok || r != "expired" {
		t.Errorf("not verified: %q %v", r, ok)
	}
	if _, _, ok := ReadEncryptionTooWeak("550 5.7.0 encryption too weak 0 less than 112"); ok {
		t.Error("a 550 read as the relay's verdict")
	}
}

func TestError(t *testing.T) {
	err := fmt.Errorf("RCPT: %w", NoMXReached("p.test").Err())
	rep, ok := ErrorOf(err)
	if !ok || rep.Code != 451 || rep.Enhanced != "4.4.4" {
		t.Fatalf("ErrorOf: %+v %v", rep, ok)
	}
	var e *Error
	if !errors.As(err, &e) || !e.Temporary() || e.Permanent() || e.Error() != "451 4.4.4 no MX host of p.test could be reached" {
		t.Errorf("Error: %v temporary=%v", e, e.Temporary())
	}
	if _, ok := ErrorOf(errors.New("plain")); ok {
		t.Error("ErrorOf found a reply in a plain error")
	}
}

// FromLine reads an envelope's stored last reply back: what String
// wrote comes back the same, anything without a code is Local.
func TestFromLine(t *testing.T) {
	for _, r := range []Reply{EncryptionTooWeak(0, 112), NullMX("n.test"), Local("mx[192.0.2.1]: dial tcp: refused"), {Code: 250, Lines: []string{"ok"}}, {}} {
		if got := FromLine(r.String()); got.Code != r.Code || got.Enhanced != r.Enhanced || got.String() != r.String() {
			t.Errorf("FromLine(%q) = %+v", r.String(), got)
		}
	}
	if r := FromLine("no code here"); r.Code != 0 || r.Temporary() || r.Permanent() || r.String() != "no code here" {
		t.Errorf("FromLine(no code) = %+v", r)
	}
}

// The published-policy and REQUIRETLS replies are documented in
// docs/policy.md with placeholders; each documented text is exactly what
// the constructor makes, and temporary or permanent as the RFCs say.
func TestPublishedPolicyTextsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	const h, why = "<host>", "<why>"
	for _, c := range []struct {
		r         Reply
		temporary bool
	}{
		{DANENoTLS(h, why), true},
		{DANENotAuthenticated(h, why), true},
		{DANEUnusableNoTLS(h, why), true},
		{DANELookupFailed(h, why), true},
		{STSMXNotListed(h, "<id>"), true},
		{STSNoTLS(h, why), true},
		{STSProtocolTooOld(h, "<version>"), true},
		{STSCertificateInvalid(h, why), true},
		{RequireTLSNoTLS(h, why), false},
		{RequireTLSNotAuthenticated(h, why), false},
		{RequireTLSNotOffered(h), false},
	} {
		if !strings.Contains(string(doc), "`"+c.r.String()+"`") {
			t.Errorf("docs/policy.md does not show %q", c.r.String())
		}
		if c.r.Temporary() != c.temporary || (!c.temporary && c.r.Enhanced != "5.7.30") {
			t.Errorf("%q: temporary %v, want %v", c.r.String(), c.r.Temporary(), c.temporary)
		}
	}
	for _, r := range []Reply{NotDANEAuthenticated("<reason>"), DANERequired(h)} {
		if s := strings.TrimPrefix(r.String(), policyPrefix); !strings.Contains(string(doc), "`"+s+"`") || r.Code != policyCode {
			t.Errorf("docs/policy.md does not show the list failure %q", s)
		}
	}
}
