package mx

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// TestValidatingResolver asks a real validating resolver (unbound over
// zones served by nsd, signed by ldns-signzone): a signed TLSA answer is
// Secure, a TLSA with a broken signature is a temporary error (never "no
// records"), and an unsigned zone's answers are not Secure (RFC 7672 §2.2).
// The TTLs a cache may keep them for are the resolver's: the RRset's, and
// for a denial the SOA's negative TTL (the zone's is 300 s).
func TestValidatingResolver(t *testing.T) {
	ca := testpeer.NewCA(t)
	leaf := ca.Issue(t, "mx.dane.test")
	dnssec := testpeer.StartSignedDNS(t,
		testpeer.Zone{Name: "dane.test", Records: []string{
			"@ IN MX 10 mx",
			"mx IN A 127.64.0.1",
			testpeer.TLSARecord("mx.dane.test", 25, leaf.TLSA()),
			testpeer.TLSARecord("forged.dane.test", 25, leaf.TLSA()),
		}, Bogus: []string{"_25._tcp.forged"}},
		testpeer.Zone{Name: "plain.test", Unsigned: true, Records: []string{
			"@ IN MX 10 mx",
			"mx IN A 127.64.0.2",
			testpeer.TLSARecord("mx.plain.test", 25, leaf.TLSA()),
		}},
	)
	r, err := NewResolver(dnssec.Addr(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("signed", func(t *testing.T) {
		mx, err := r.LookupMX(ctx, "dane.test")
		if err != nil || !mx.AD || len(mx.Hosts) != 1 || mx.Hosts[0].Name != "mx.dane.test" {
			t.Fatalf("MX: %+v, %v", mx, err)
		}
		tlsa, err := r.LookupTLSA(ctx, "mx.dane.test", 25)
		if err != nil || !tlsa.Secure || len(tlsa.Records) != 1 || tlsa.Records[0].String() != leaf.TLSA() {
			t.Fatalf("TLSA: %+v, %v; want Secure %s", tlsa, err, leaf.TLSA())
		}
		if tlsa.TTL <= 0 || tlsa.TTL > 300*time.Second {
			t.Errorf("TLSA TTL %v, want (0, 300s]", tlsa.TTL)
		}
		none, err := r.LookupTLSA(ctx, "none.dane.test", 25)
		if err != nil || !none.Secure || len(none.Records) != 0 || none.TTL <= 0 || none.TTL > 300*time.Second {
			t.Fatalf("denied TLSA: %+v, %v; want a Secure denial with a TTL in (0, 300s]", none, err)
		}
	})
	t.Run("bogus", func(t *testing.T) {
		tlsa, err := r.LookupTLSA(ctx, "forged.dane.test", 25)
		var e *Error
		if !errors.As(err, &e) || !e.Temporary || e.Step != "TLSA" || !IsTemporary(err) {
			t.Fatalf("bogus TLSA: %+v, %v; want a temporary TLSA *mx.Error", tlsa, err)
		}
		t.Logf("bogus TLSA: %v", err)
	})
	t.Run("unsigned", func(t *testing.T) {
		mx, err := r.LookupMX(ctx, "plain.test")
		if err != nil || mx.AD || len(mx.Hosts) != 1 {
			t.Fatalf("MX: %+v, %v; want one host, no AD", mx, err)
		}
		tlsa, err := r.LookupTLSA(ctx, "mx.plain.test", 25)
		if err != nil || tlsa.AD || tlsa.Secure || len(tlsa.Records) != 1 {
			t.Fatalf("TLSA: %+v, %v; want the record, not Secure", tlsa, err)
		}
	})
}
