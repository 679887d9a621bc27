package delivery

import (
	"crypto/tls"
	"testing"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
)

// The TLS-RPT result type (RFC 8460 §4.3) recorded for each way a hop
// fails a published policy, taken from the verdict EvaluateHop gives.
func TestAuditResultType(t *testing.T) {
	enforce := policy.Combine(policy.Requirement{}, policy.Published{STS: &policy.STS{ID: "p", Mode: policy.STSEnforce, MX: []string{"mx.x.test"}}})
	tls13 := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Auth: policy.AuthNone}
	withErr := func(e string) policy.Outcome { o := tls13; o.VerifyError = e; return o }
	usable := policy.HopFacts{Name: "mx.x.test", DANE: policy.DANEUsable}
	dane := policy.Combine(policy.Requirement{}, policy.Published{})
	f, err := policy.Parse("p", []byte("x.test verify=dane\n"))
	if err != nil {
		t.Fatal(err)
	}
	daneOnly := policy.Combine(f.Compile().Lookup("x.test").Requirement(), policy.Published{})
	for _, tc := range []struct {
		name  string
		req   policy.Requirement
		facts policy.HopFacts
		out   policy.Outcome
		want  string
	}{
		{"STS, no STARTTLS", enforce, policy.HopFacts{Name: "mx.x.test"}, policy.Outcome{Failure: "STARTTLS not offered"}, audit.ResultSTARTTLSNotSupported},
		{"STS, expired", enforce, policy.HopFacts{Name: "mx.x.test"}, withErr("x509: certificate has expired or is not yet valid: current time"), audit.ResultCertExpired},
		{"STS, unknown CA", enforce, policy.HopFacts{Name: "mx.x.test"}, withErr("x509: certificate signed by unknown authority; certificate does not name mx.x.test"), audit.ResultCertNotTrusted},
		{"STS, wrong name", enforce, policy.HopFacts{Name: "mx.x.test"}, withErr("certificate does not name mx.x.test"), audit.ResultCertHostMismatch},
		{"STS, TLS 1.1", enforce, policy.HopFacts{Name: "mx.x.test"}, policy.Outcome{TLS: true, Version: tls.VersionTLS11, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, Verified: true, Auth: policy.AuthPKIX}, audit.ResultValidationFailure},
		{"STS, MX not listed", enforce, policy.HopFacts{Name: "other.x.test"}, tls13, audit.ResultValidationFailure},
		{"DANE, no TLS", dane, usable, policy.Outcome{Failure: "STARTTLS not offered"}, audit.ResultSTARTTLSNotSupported},
		{"DANE, no match", dane, usable, tls13, audit.ResultTLSAInvalid},
		{"DANE, lookup failed", dane, policy.HopFacts{Name: "mx.x.test", DANE: policy.DANEFailed, DANEError: "SERVFAIL"}, tls13, audit.ResultDNSSECInvalid},
		{"verify=dane, no TLSA", daneOnly, policy.HopFacts{Name: "mx.x.test"}, withErr("certificate does not name mx.x.test"), audit.ResultDANERequired},
		{"nothing failed", dane, usable, policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: policy.AuthDANE}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hop := courier.Hop{MX: tc.facts.Name, Outcome: tc.out, Facts: tc.facts, Verdict: policy.EvaluateHop(tc.req, tc.facts, tc.out)}
			var rec audit.Record
			auditPublished(&rec, tc.req, stsInfo{}, hop)
			if rec.ResultType != tc.want {
				t.Errorf("result type %q, want %q (verdict %q)", rec.ResultType, tc.want, hop.Verdict.Diagnostic)
			}
		})
	}
}
