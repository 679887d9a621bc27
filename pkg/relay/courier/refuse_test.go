package courier

import (
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
)

// A hop whose TLSA lookup failed is not dialled while anything still
// needs its DANE state (RFC 7672 §2.2: defer, never a downgrade). That
// includes a list entry with verify=dane when TLS-Required: No relaxes
// what the partner publishes: the header never lowers a list entry, and
// dialled without its TLSA records the hop could only fail verify=dane
// as the list's own refusal, which on-fail=bounce returns to the sender
// for a DNS failure that may clear in minutes.
func TestRefuseBeforeDialDANEFailed(t *testing.T) {
	f, err := policy.Parse("p", []byte("dane.test verify=dane\ntesting.test verify=dane mode=testing\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol := f.Compile()
	failed := target{name: "mx.dane.test", addr: "127.0.0.1:25", facts: policy.HopFacts{Name: "mx.dane.test", DANE: policy.DANEFailed, DANEError: "SERVFAIL"}}
	for _, tc := range []struct {
		name   string
		rcpt   string
		pub    policy.Published
		refuse bool
	}{
		{"unlisted", "a@other.test", policy.Published{}, true},
		{"unlisted, TLS-Required: No", "a@other.test", policy.Published{TLSRequiredNo: true}, false},
		{"unlisted, published policies off", "a@other.test", policy.Published{Ignored: true}, false},
		{"verify=dane", "a@dane.test", policy.Published{}, true},
		{"verify=dane, TLS-Required: No", "a@dane.test", policy.Published{TLSRequiredNo: true}, true},
		{"verify=dane mode=testing, TLS-Required: No", "a@testing.test", policy.Published{TLSRequiredNo: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := policy.Combine(pol.Lookup(tc.rcpt).Requirement(), tc.pub)
			f := refuseBeforeDial(failed, req)
			if (f != nil) != tc.refuse {
				t.Fatalf("refused = %v, want %v", f != nil, tc.refuse)
			}
			if f != nil && (!f.temporary || !f.notDialled || f.hop.Verdict.MaySend) {
				t.Errorf("refusal %+v: want a temporary refusal before dialling", f)
			}
		})
	}
}
