package testpeer

import (
	"testing"

	"github.com/miekg/dns"
)

// TestSignedDNS: nsd serves a signed and an unsigned zone, unbound
// validates: AD for the signed zone, SERVFAIL for a name made bogus on
// purpose (the rest of its zone still AD), no AD for the unsigned zone.
func TestSignedDNS(t *testing.T) {
	ca := NewCA(t)
	leaf := ca.Issue(t, "mx.dane.test")
	s := StartSignedDNS(t,
		Zone{Name: "dane.test", Records: []string{
			"mx IN A 127.64.0.1",
			TLSARecord("mx.dane.test", 25, leaf.TLSA()),
			TLSARecord("bad.dane.test", 25, ca.TLSA()),
		}, Bogus: []string{"_25._tcp.bad"}},
		Zone{Name: "plain.test", Unsigned: true, Records: []string{"mx 300 IN A 127.64.0.2"}},
	)
	t.Logf("startup %v", s.StartupTime)
	q := func(name string, qt uint16) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.SetEdns0(1232, true)
		m.AuthenticatedData = true
		r, err := dns.Exchange(m, s.Addr())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return r
	}
	if r := q("_25._tcp.mx.dane.test", dns.TypeTLSA); r.Rcode != dns.RcodeSuccess || !r.AuthenticatedData || len(r.Answer) == 0 {
		t.Errorf("signed TLSA: %v", r)
	}
	if r := q("_25._tcp.bad.dane.test", dns.TypeTLSA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("bogus TLSA: %v", r)
	}
	if r := q("mx.plain.test", dns.TypeA); r.Rcode != dns.RcodeSuccess || r.AuthenticatedData || len(r.Answer) != 1 {
		t.Errorf("unsigned A: %v", r)
	}
	if r := q("nowhere.example", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("outside: %v", r)
	}
}
