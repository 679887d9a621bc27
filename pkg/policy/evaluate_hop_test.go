package policy

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Outcomes as the courier reports them.
var (
	hopPlain    = Outcome{Failure: "STARTTLS not offered"}
	hopAnon     = Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Auth: AuthNone, VerifyError: "x509: certificate signed by unknown authority"}
	hopPKIX     = Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: AuthPKIX}
	hopDANE     = Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: AuthDANE, TLSA: "3 1 1 ab"}
	hopPKIX11   = Outcome{TLS: true, Version: tls.VersionTLS11, CipherSuite: tls.TLS_RSA_WITH_AES_128_CBC_SHA, Verified: true, Auth: AuthPKIX}
	hopPKIXRTLS = Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: AuthPKIX, RequireTLSOffered: true}
	hopDANERTLS = Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: AuthDANE, RequireTLSOffered: true}
)

// TestEvaluateHop: each source alone, strictest wins, and the exemptions
// (mode=off, TLS-Required: No, published policies off) reach exactly as
// far as they should.
func TestEvaluateHop(t *testing.T) {
	entry := func(opts string) Requirement {
		t.Helper()
		p := mustParse(t, "partner.example "+opts+"\n")
		return p.Lookup("partner.example").Requirement()
	}
	none := Requirement{} // no entry
	enforce := &STS{ID: "20260101", Mode: STSEnforce, MX: []string{"*.partner.example"}}
	testing_ := &STS{ID: "20260102", Mode: STSTesting, MX: []string{"mx.partner.example"}}
	mx := HopFacts{Name: "mx1.partner.example"}
	usable := HopFacts{Name: "mx1.partner.example", DANE: DANEUsable}
	unusable := HopFacts{Name: "mx1.partner.example", DANE: DANEUnusable}
	failed := HopFacts{Name: "mx1.partner.example", DANE: DANEFailed, DANEError: "SERVFAIL"}
	outside := HopFacts{Name: "mx.elsewhere.example"}

	cases := []struct {
		name    string
		req     Requirement
		pub     Published
		hop     HopFacts
		out     Outcome
		maySend bool
		reply   smtpreply.Reply // zero: met
		by      SourceKind
	}{
		// Nothing published: the list alone, as Evaluate.
		{"no entry, nothing published", none, Published{}, mx, hopPlain, true, smtpreply.Reply{}, ""},
		{"list alone refuses", entry(""), Published{}, mx, hopPlain, false, smtpreply.EncryptionTooWeak(0, 112), SourceList},
		{"verify=dane, DANE-authenticated", entry("verify=dane"), Published{}, usable, hopDANE, true, smtpreply.Reply{}, ""},
		{"verify=dane, PKIX only: the list names it", entry("verify=dane"), Published{}, usable, hopPKIX, false, smtpreply.NotDANEAuthenticated("no TLSA record matched the certificate chain"), SourceList},
		{"verify=dane, no usable TLSA: no delivery", entry("verify=dane"), Published{}, mx, hopPKIX, false, smtpreply.DANERequired("mx1.partner.example"), SourceList},

		// DANE alone, no entry.
		{"DANE usable, matched", none, Published{}, usable, hopDANE, true, smtpreply.Reply{}, ""},
		{"DANE usable, no TLS", none, Published{}, usable, hopPlain, false, smtpreply.DANENoTLS("mx1.partner.example", "STARTTLS not offered"), SourceDANE},
		{"DANE usable, no match", none, Published{}, usable, hopAnon, false, smtpreply.DANENotAuthenticated("mx1.partner.example", "no TLSA record matched the certificate chain"), SourceDANE},
		{"DANE unusable, TLS unauthenticated is enough", none, Published{}, unusable, hopAnon, true, smtpreply.Reply{}, ""},
		{"DANE unusable, no TLS", none, Published{}, unusable, hopPlain, false, smtpreply.DANEUnusableNoTLS("mx1.partner.example", "STARTTLS not offered"), SourceDANE},
		{"DANE lookup failed: defer even over good TLS", none, Published{}, failed, hopPKIX, false, smtpreply.DANELookupFailed("mx1.partner.example", "SERVFAIL"), SourceDANE},

		// MTA-STS alone.
		{"STS enforce met", none, Published{STS: enforce}, mx, hopPKIX, true, smtpreply.Reply{}, ""},
		{"STS enforce, MX outside the patterns", none, Published{STS: enforce}, outside, hopPKIX, false, smtpreply.STSMXNotListed("mx.elsewhere.example", "20260101"), SourceMTASTS},
		{"STS enforce, no TLS", none, Published{STS: enforce}, mx, hopPlain, false, smtpreply.STSNoTLS("mx1.partner.example", "STARTTLS not offered"), SourceMTASTS},
		{"STS enforce, TLS 1.1", none, Published{STS: enforce}, mx, hopPKIX11, false, smtpreply.STSProtocolTooOld("mx1.partner.example", "TLSv1.1"), SourceMTASTS},
		{"STS enforce, certificate not valid", none, Published{STS: enforce}, mx, hopAnon, false, smtpreply.STSCertificateInvalid("mx1.partner.example", "x509: certificate signed by unknown authority"), SourceMTASTS},
		{"STS enforce, DANE-authenticated counts", none, Published{STS: enforce}, usable, hopDANE, true, smtpreply.Reply{}, ""},
		{"STS testing: delivered, would-be failure recorded", none, Published{STS: testing_}, mx, hopPlain, true, smtpreply.STSMXNotListed("mx1.partner.example", "20260102"), SourceMTASTS},
		{"STS none: nothing required", none, Published{STS: &STS{ID: "x", Mode: STSNone}}, mx, hopPlain, true, smtpreply.Reply{}, ""},

		// REQUIRETLS alone.
		{"REQUIRETLS met", none, Published{RequireTLS: true}, mx, hopPKIXRTLS, true, smtpreply.Reply{}, ""},
		{"REQUIRETLS, no TLS", none, Published{RequireTLS: true}, mx, hopPlain, false, smtpreply.RequireTLSNoTLS("mx1.partner.example", "STARTTLS not offered"), SourceRequireTLS},
		{"REQUIRETLS, unauthenticated", none, Published{RequireTLS: true}, mx, hopAnon, false, smtpreply.RequireTLSNotAuthenticated("mx1.partner.example", "x509: certificate signed by unknown authority"), SourceRequireTLS},
		{"REQUIRETLS, next hop does not offer it", none, Published{RequireTLS: true}, mx, hopPKIX, false, smtpreply.RequireTLSNotOffered("mx1.partner.example"), SourceRequireTLS},
		{"REQUIRETLS with usable DANE needs DANE", none, Published{RequireTLS: true}, usable, hopPKIXRTLS, false, smtpreply.DANENotAuthenticated("mx1.partner.example", "no TLSA record matched the certificate chain"), SourceDANE},
		{"REQUIRETLS over DANE", none, Published{RequireTLS: true}, usable, hopDANERTLS, true, smtpreply.Reply{}, ""},
		// RFC 8689 §4.2.1 step 2: an MX found without DNSSEC is
		// validated by the domain's MTA-STS policy, testing mode too.
		{"REQUIRETLS, MTA-STS testing does not list the MX", none, Published{RequireTLS: true, STS: testing_}, mx, hopPKIXRTLS, false, smtpreply.RequireTLSNotAuthenticated("mx1.partner.example", "MTA-STS policy 20260102 does not list it"), SourceRequireTLS},
		{"REQUIRETLS, MTA-STS testing lists the MX", none, Published{RequireTLS: true, STS: testing_}, HopFacts{Name: "mx.partner.example"}, hopPKIXRTLS, true, smtpreply.Reply{}, ""},
		{"REQUIRETLS over DANE, MTA-STS testing not listing: DNSSEC named the MX", none, Published{RequireTLS: true, STS: testing_}, usable, hopDANERTLS, true, smtpreply.STSMXNotListed("mx1.partner.example", "20260102"), SourceMTASTS},
		{"REQUIRETLS ignores TLS-Required: No", none, Published{RequireTLS: true, TLSRequiredNo: true, STS: enforce}, outside, hopPKIXRTLS, false, smtpreply.STSMXNotListed("mx.elsewhere.example", "20260101"), SourceMTASTS},

		// Strictest wins.
		{"weak list, STS enforce is stricter", entry("bits=56"), Published{STS: enforce}, mx, hopAnon, false, smtpreply.STSCertificateInvalid("mx1.partner.example", "x509: certificate signed by unknown authority"), SourceMTASTS},
		{"list stricter than DANE unusable", entry("min-tls=1.3"), Published{}, unusable, hopPKIX11, false, smtpreply.ProtocolTooOld("TLSv1.1", "TLSv1.3"), SourceList},
		{"list and DANE both fail: the list names it", entry(""), Published{}, usable, hopPlain, false, smtpreply.EncryptionTooWeak(0, 112), SourceList},

		// mode=off exempts from the list only.
		{"mode=off, STS enforce still enforced", entry("mode=off"), Published{STS: enforce}, mx, hopPlain, false, smtpreply.STSNoTLS("mx1.partner.example", "STARTTLS not offered"), SourceMTASTS},
		{"mode=off, DANE still enforced", entry("mode=off"), Published{}, usable, hopAnon, false, smtpreply.DANENotAuthenticated("mx1.partner.example", "no TLSA record matched the certificate chain"), SourceDANE},

		// TLS-Required: No relaxes what is published, never the list.
		{"TLS-Required: No relaxes STS", none, Published{STS: enforce, TLSRequiredNo: true}, mx, hopPlain, true, smtpreply.Reply{}, ""},
		{"TLS-Required: No relaxes DANE", none, Published{TLSRequiredNo: true}, usable, hopPlain, true, smtpreply.Reply{}, ""},
		{"TLS-Required: No never below the list", entry("verify=cert"), Published{STS: enforce, TLSRequiredNo: true}, usable, hopAnon, false, smtpreply.CertificateNotVerified("x509: certificate signed by unknown authority"), SourceList},

		// Published policies switched off.
		{"published off ignores STS", none, Published{STS: enforce, Ignored: true}, outside, hopPlain, true, smtpreply.Reply{}, ""},
		{"published off ignores a DANE lookup failure", none, Published{Ignored: true}, failed, hopPlain, true, smtpreply.Reply{}, ""},
		{"published off keeps the list", entry(""), Published{STS: enforce, Ignored: true}, usable, hopPlain, false, smtpreply.EncryptionTooWeak(0, 112), SourceList},
		{"published off keeps REQUIRETLS", none, Published{Ignored: true, RequireTLS: true}, mx, hopPKIX, false, smtpreply.RequireTLSNotOffered("mx1.partner.example"), SourceRequireTLS},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := EvaluateHop(Combine(c.req, c.pub), c.hop, c.out)
			if v.MaySend != c.maySend {
				t.Errorf("MaySend %v, want %v (%s)", v.MaySend, c.maySend, v.Diagnostic)
			}
			if v.Reply.String() != c.reply.String() || v.FailedBy != c.by {
				t.Errorf("reply %q by %q, want %q by %q", v.Reply.String(), v.FailedBy, c.reply.String(), c.by)
			}
			if met := c.reply.Code == 0; v.Met != met {
				t.Errorf("Met %v, want %v", v.Met, met)
			}
			if c.by != "" && c.by != SourceList && c.by != SourceRequireTLS && !v.Reply.Temporary() {
				t.Errorf("a published policy's failure %q is not temporary", v.Diagnostic)
			}
		})
	}
}

// The sources name every origin, ignored ones with why (SPEC §6.6).
func TestHopSources(t *testing.T) {
	list := Requirement{Options: DefaultOptions(), Target: "partner.example", Line: 4}
	list.Mode = ModeOff
	sts := &STS{ID: "abc", Mode: STSEnforce, MX: []string{"mx.partner.example"}}
	hop := HopFacts{Name: "mx.partner.example", DANE: DANEUsable}

	v := EvaluateHop(Combine(list, Published{STS: sts, RequireTLS: true}), hop, hopDANERTLS)
	want := []Source{
		{Kind: SourceList, Target: "partner.example", Line: 4, Mode: "off"},
		{Kind: SourceMTASTS, PolicyID: "abc", Mode: "enforce", MX: []string{"mx.partner.example"}},
		{Kind: SourceRequireTLS},
		{Kind: SourceDANE, Host: "mx.partner.example", DANE: DANEUsable},
	}
	if !slices.EqualFunc(v.Sources, want, sourceEqual) {
		t.Errorf("sources %+v\nwant %+v", v.Sources, want)
	}

	v = EvaluateHop(Combine(list, Published{STS: sts, Ignored: true}), hop, hopPlain)
	want = []Source{
		{Kind: SourceList, Target: "partner.example", Line: 4, Mode: "off"},
		{Kind: SourceMTASTS, PolicyID: "abc", Mode: "enforce", MX: []string{"mx.partner.example"}, Ignored: IgnoredPublishedOff},
		{Kind: SourceDANE, Host: "mx.partner.example", DANE: DANEUsable, Ignored: IgnoredPublishedOff},
	}
	if !slices.EqualFunc(v.Sources, want, sourceEqual) || !v.MaySend {
		t.Errorf("published off: sources %+v, may send %v\nwant %+v, true", v.Sources, v.MaySend, want)
	}

	v = EvaluateHop(Combine(Requirement{}, Published{STS: sts, TLSRequiredNo: true}), hop, hopPlain)
	if len(v.Sources) != 2 || v.Sources[0].Ignored != IgnoredTLSRequiredNo || v.Sources[1].Ignored != IgnoredTLSRequiredNo {
		t.Errorf("TLS-Required: No: sources %+v, want MTA-STS and DANE ignored", v.Sources)
	}
}

func sourceEqual(a, b Source) bool {
	return a.Kind == b.Kind && a.Target == b.Target && a.Line == b.Line && a.PolicyID == b.PolicyID &&
		slices.Equal(a.MX, b.MX) && a.Mode == b.Mode && a.Host == b.Host && a.DANE == b.DANE && a.Ignored == b.Ignored
}

// STS testing records every would-be failure, the list's testing bounce
// is kept beside a published refusal.
func TestHopFailuresRecorded(t *testing.T) {
	sts := &STS{ID: "t1", Mode: STSTesting, MX: []string{"other.example"}}
	v := EvaluateHop(Combine(Requirement{}, Published{STS: sts}), HopFacts{Name: "mx.partner.example"}, hopPKIX)
	if !v.MaySend || v.Met || len(v.Failures) != 1 || v.Failures[0].Enforced || v.Failures[0].Source != SourceMTASTS {
		t.Errorf("STS testing: %+v", v)
	}
	testing_ := Requirement{Options: DefaultOptions(), Target: "partner.example", Line: 1}
	testing_.Mode = ModeTesting
	v = EvaluateHop(Combine(testing_, Published{}), HopFacts{Name: "mx.partner.example", DANE: DANEUsable}, hopPlain)
	if v.MaySend || v.FailedBy != SourceDANE || len(v.Failures) != 2 || v.Failures[0].Source != SourceList || v.Failures[0].Enforced || !v.WouldBounce {
		t.Errorf("list testing + DANE: %+v", v)
	}
}

// RFC 8461 §4.1 matching.
func TestMatchMX(t *testing.T) {
	for _, c := range []struct {
		pattern, host string
		want          bool
	}{
		{"mx.example.com", "mx.example.com", true},
		{"mx.example.com", "MX.Example.COM.", true},
		{"*.example.com", "mx1.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"mx.example.com", "mx.example.org", false},
		{"", "", false},
	} {
		if got := MatchMX(c.pattern, c.host); got != c.want {
			t.Errorf("MatchMX(%q, %q) = %v, want %v", c.pattern, c.host, got, c.want)
		}
	}
}
