package dane

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

const hash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

func TestLookup(t *testing.T) {
	d := testpeer.StartDNS(t)
	d.SetAD(true) // a validating resolver on loopback
	r, err := mx.NewResolver(d.Addr(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	host := func(name, ip string) { d.AddA(name, ip) }
	host("usable.a.test", "127.64.0.1")
	d.AddTLSA("_25._tcp.usable.a.test", 3, 1, 1, hash)
	host("pkix.a.test", "127.64.0.2")
	d.AddTLSA("_25._tcp.pkix.a.test", 1, 1, 1, hash)
	host("none.a.test", "127.64.0.3")
	host("unsigned.other.test", "127.64.0.4")
	d.AddTLSA("_25._tcp.unsigned.other.test", 3, 1, 1, hash)
	d.Insecure("unsigned.other.test")
	host("servfail.a.test", "127.64.0.5")
	d.ServFail("_25._tcp.servfail.a.test")
	host("timeout.a.test", "127.64.0.6")
	d.Drop("_25._tcp.timeout.a.test")
	host("insecure-tlsa.a.test", "127.64.0.7")
	d.AddTLSA("_25._tcp.insecure-tlsa.a.test", 3, 1, 1, hash)
	d.Insecure("_25._tcp.insecure-tlsa.a.test")
	// CNAMEs: TLSA at the expanded name wins; without one there, the
	// host name's records are used (RFC 7672 §2.2.2).
	d.AddCNAME("alias.a.test", "mx.hosting.test")
	host("mx.hosting.test", "127.64.0.8")
	d.AddTLSA("_25._tcp.mx.hosting.test", 2, 0, 1, hash)
	d.AddTLSA("_25._tcp.alias.a.test", 3, 0, 1, hash)
	d.AddCNAME("alias2.a.test", "mx2.hosting.test")
	host("mx2.hosting.test", "127.64.0.9")
	d.AddTLSA("_25._tcp.alias2.a.test", 3, 1, 2, hash+hash)
	d.AddCNAME("alias3.a.test", "mx3.hosting.test")
	host("mx3.hosting.test", "127.64.0.10")
	d.ServFail("_25._tcp.mx3.hosting.test")

	tests := []struct {
		host      string
		mxAD      bool
		state     State
		owner     string
		names     string
		reason    string // exact, when set
		noTLSAAsk bool   // RFC 7672 §2.2: TLSA must not even be asked
	}{
		{host: "usable.a.test", mxAD: true, state: StateUsable, owner: "_25._tcp.usable.a.test", names: "usable.a.test"},
		{host: "pkix.a.test", mxAD: true, state: StateUnusable, owner: "_25._tcp.pkix.a.test",
			reason: "DANE: no usable TLSA record at _25._tcp.pkix.a.test; TLS required without authentication"},
		{host: "none.a.test", mxAD: true, state: StateNone, owner: "_25._tcp.none.a.test",
			reason: "no TLSA records at _25._tcp.none.a.test (authenticated denial)"},
		{host: "usable.a.test", mxAD: false, state: StateNone, noTLSAAsk: true,
			reason: "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)"},
		{host: "unsigned.other.test", mxAD: true, state: StateNone, noTLSAAsk: true,
			reason: "address records of unsigned.other.test not DNSSEC-authenticated (RFC 7672 §2.2.2)"},
		{host: "insecure-tlsa.a.test", mxAD: true, state: StateNone,
			reason: "TLSA records at _25._tcp.insecure-tlsa.a.test not DNSSEC-authenticated: ignored (RFC 7672 §2.2)"},
		{host: "servfail.a.test", mxAD: true, state: StateFailed, owner: "_25._tcp.servfail.a.test",
			reason: "DANE: TLSA lookup of _25._tcp.servfail.a.test failed: SERVFAIL"},
		{host: "timeout.a.test", mxAD: true, state: StateFailed, owner: "_25._tcp.timeout.a.test"},
		{host: "alias.a.test", mxAD: true, state: StateUsable, owner: "_25._tcp.mx.hosting.test", names: "alias.a.test mx.hosting.test"},
		{host: "alias2.a.test", mxAD: true, state: StateUsable, owner: "_25._tcp.alias2.a.test", names: "alias2.a.test mx2.hosting.test"},
		{host: "alias3.a.test", mxAD: true, state: StateFailed, owner: "_25._tcp.mx3.hosting.test"},
		{host: "127.64.0.1", mxAD: true, state: StateNone, noTLSAAsk: true},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			ctx := context.Background()
			h := r.LookupHost(ctx, tc.host)
			before := len(d.Queries())
			got := Lookup(ctx, r, tc.mxAD, h, 25)
			if got.State != tc.state {
				t.Fatalf("state %q (%s), want %q", got.State, got.Reason, tc.state)
			}
			if tc.owner != "" && got.Owner != tc.owner {
				t.Errorf("owner %q, want %q", got.Owner, tc.owner)
			}
			if tc.names != "" && strings.Join(got.Names, " ") != tc.names {
				t.Errorf("names %q, want %q", got.Names, tc.names)
			}
			if tc.reason != "" && got.Reason != tc.reason {
				t.Errorf("reason %q, want %q", got.Reason, tc.reason)
			}
			if got.State == StateFailed && (!mx.IsTemporary(got.Err) || !strings.HasPrefix(got.Reason, "DANE: TLSA lookup of "+got.Owner+" failed: ")) {
				t.Errorf("failed lookup: err %v (temporary %v), reason %q", got.Err, mx.IsTemporary(got.Err), got.Reason)
			}
			if (got.State == StateUsable || got.State == StateUnusable) != (len(got.Records) > 0) {
				t.Errorf("state %q with %d records", got.State, len(got.Records))
			}
			for _, q := range d.Queries()[before:] {
				if q.Qtype == dns.TypeTLSA && tc.noTLSAAsk {
					t.Errorf("TLSA asked (%s) although DANE cannot apply", q.Name)
				}
			}
		})
	}
}
