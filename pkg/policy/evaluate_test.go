package policy

import (
	"crypto/tls"
	"testing"
)

func TestEvaluate(t *testing.T) {
	enforce := Requirement{Options: DefaultOptions(), Target: "partner.com", Line: 1}
	with := func(f func(*Requirement)) Requirement { r := enforce; f(&r); return r }
	modern := Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true}
	tls10 := Outcome{TLS: true, Version: tls.VersionTLS10, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA}
	selfSigned := Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384,
		VerifyError: "x509: certificate signed by unknown authority"}

	cases := []struct {
		name  string
		req   Requirement
		out   Outcome
		met   bool
		send  bool
		would bool
		diag  string
	}{
		{"no STARTTLS", enforce, Outcome{Failure: "STARTTLS not offered"}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"handshake failed", enforce, Outcome{Failure: "tls: handshake failure"}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"NULL cipher", enforce, Outcome{TLS: true, Version: tls.VersionTLS12, CipherSuite: 0x0002}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"3DES meets the floor", enforce, Outcome{TLS: true, Version: tls.VersionTLS12, CipherSuite: tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA}, true, true, false, ""},
		{"DES under the floor", enforce, Outcome{TLS: true, Version: tls.VersionTLS10, CipherSuite: 0x0009}, false, false, false,
			"503 5.7.0 encryption too weak 56 less than 112"},
		{"unknown suite fails closed", enforce, Outcome{TLS: true, Version: tls.VersionTLS12, CipherSuite: 0xfefe}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"modern", enforce, modern, true, true, false, ""},
		{"bits=256 vs 128", with(func(r *Requirement) { r.Bits = 256 }), modern, false, false, false,
			"503 5.7.0 encryption too weak 128 less than 256"},
		{"min-tls=1.2 vs TLS 1.0", with(func(r *Requirement) { r.MinTLS = tls.VersionTLS12 }), tls10, false, false, false,
			"503 5.7.0 protocol too old TLSv1.0 less than TLSv1.2"},
		{"bits checked before version", with(func(r *Requirement) { r.MinTLS = tls.VersionTLS13 }), Outcome{}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"verify=cert vs self-signed", with(func(r *Requirement) { r.Verify = VerifyCert }), selfSigned, false, false, false,
			"503 5.7.0 certificate not verified: x509: certificate signed by unknown authority"},
		{"verify=cert without reason", with(func(r *Requirement) { r.Verify = VerifyCert }), tls10, false, false, false,
			"503 5.7.0 certificate not verified: no verified chain"},
		{"verify=cert verified", with(func(r *Requirement) { r.Verify = VerifyCert }), modern, true, true, false, ""},
		{"testing delivers but records", with(func(r *Requirement) { r.Mode = ModeTesting }), Outcome{}, false, true, true,
			"503 5.7.0 encryption too weak 0 less than 112"},
		{"off never judges", with(func(r *Requirement) { r.Mode = ModeOff }), Outcome{}, true, true, false, ""},
		{"no entry is opportunistic", Lookup0(), Outcome{}, true, true, false, ""},
		{"probe default", DefaultRequirement(), Outcome{}, false, false, false,
			"503 5.7.0 encryption too weak 0 less than 112"},
	}
	for _, c := range cases {
		v := Evaluate(c.req, c.out)
		if v.Met != c.met || v.MaySend != c.send || v.WouldBounce != c.would || v.Diagnostic != c.diag {
			t.Errorf("%s: got met=%v send=%v would=%v %q; want met=%v send=%v would=%v %q",
				c.name, v.Met, v.MaySend, v.WouldBounce, v.Diagnostic, c.met, c.send, c.would, c.diag)
		}
	}
}

// Lookup0 is the requirement of a recipient no entry applies to.
func Lookup0() Requirement { return New(nil).Lookup("a@b.example").Requirement() }
