package mx

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnssecZone: a.test's MX RRset is signed; mx1 is signed, mx2 in an
// unsigned zone, mx3 a signed CNAME to the signed hosting.test, mx4 a
// signed CNAME into the unsigned other.test.
func dnssecZone(t *testing.T) *Resolver {
	d, r := newTest(t)
	d.SetAD(true)
	d.AddMX("a.test", 10, "mx1.a.test")
	d.AddMX("a.test", 20, "mx2.unsigned.test")
	d.AddMX("a.test", 30, "mx3.a.test")
	d.AddMX("a.test", 40, "mx4.a.test")
	d.AddA("mx1.a.test", "127.64.0.1")
	d.AddA("mx2.unsigned.test", "127.64.0.2")
	d.Insecure("mx2.unsigned.test")
	d.AddCNAME("mx3.a.test", "mx3.hosting.test")
	d.AddA("mx3.hosting.test", "127.64.0.3")
	d.AddCNAME("mx4.a.test", "mx4.other.test")
	d.AddA("mx4.other.test", "127.64.0.4")
	d.Insecure("mx4.other.test")
	d.AddMX("unsigned.test", 10, "mx1.a.test")
	d.Insecure("unsigned.test")
	return r
}

// RFC 7672 §2.2: per host, whether its address records were authentic,
// and the CNAME-expanded name the TLSA lookup starts from.
func TestHostAddressesAuthentic(t *testing.T) {
	r := dnssecZone(t)
	res, err := r.LookupMX(context.Background(), "a.test")
	if err != nil {
		t.Fatal(err)
	}
	if !res.AD {
		t.Fatal("signed MX RRset from a loopback resolver: Result.AD false")
	}
	want := map[string]struct {
		ad        bool
		canonical string
	}{
		"mx1.a.test":        {true, "mx1.a.test"},
		"mx2.unsigned.test": {false, "mx2.unsigned.test"},
		"mx3.a.test":        {true, "mx3.hosting.test"},
		"mx4.a.test":        {false, "mx4.other.test"},
	}
	for _, h := range res.Hosts {
		w := want[h.Name]
		if h.AD != w.ad || h.Canonical != w.canonical || len(h.Addrs) != 1 {
			t.Errorf("%s: AD=%v Canonical=%q addrs=%v, want AD=%v Canonical=%q", h.Name, h.AD, h.Canonical, h.Addrs, w.ad, w.canonical)
		}
	}
	res, err = r.LookupMX(context.Background(), "unsigned.test")
	if err != nil || res.AD {
		t.Fatalf("unsigned MX RRset: AD=%v err=%v", res.AD, err)
	}
	if h := r.LookupHost(context.Background(), "MX3.a.test."); h.Name != "mx3.a.test" || !h.AD || h.Canonical != "mx3.hosting.test" || len(h.Addrs) != 1 {
		t.Fatalf("LookupHost: %+v", h)
	}
}

// RFC 6840 §5.7: the AD bit of a resolver off loopback is believed only
// when the operator marks it trusted.
func TestADIgnoredUnlessTrusted(t *testing.T) {
	loop := dnssecZone(t)
	// The same server seen as if it were not on loopback (no other
	// address can be served in tests).
	untrusted := *loop
	untrusted.trustAD = false
	for _, tc := range []struct {
		name string
		r    *Resolver
		want bool
	}{
		{"loopback", loop, true},
		{"not trusted", &untrusted, false},
		{"marked trusted", untrusted.WithTrustedAD(true), true},
	} {
		ctx := context.Background()
		res, err := tc.r.LookupMX(ctx, "a.test")
		if err != nil {
			t.Fatal(err)
		}
		if res.AD != tc.want || res.Hosts[0].AD != tc.want {
			t.Errorf("%s: Result.AD=%v Host.AD=%v, want %v", tc.name, res.AD, res.Hosts[0].AD, tc.want)
		}
		tl, err := tc.r.LookupTLSA(ctx, "mx1.a.test", 25)
		if err != nil || tl.Secure != tc.want || !tl.AD {
			t.Errorf("%s: TLSA denial Secure=%v AD=%v err=%v, want Secure=%v", tc.name, tl.Secure, tl.AD, err, tc.want)
		}
	}
	far, err := NewResolver("192.0.2.1:53", 0)
	if err != nil {
		t.Fatal(err)
	}
	if far.TrustsAD() || !far.WithTrustedAD(true).TrustsAD() || far.WithTrustedAD(true).WithTrustedAD(false).TrustsAD() {
		t.Fatal("WithTrustedAD does not switch the trust of a non-loopback resolver")
	}
	if !loop.WithTrustedAD(false).TrustsAD() {
		t.Fatal("WithTrustedAD(false) dropped the loopback trust")
	}
}

// A validating resolver sets AD only for a query that asks for it, by
// the AD bit (RFC 6840 §5.7) or DO (RFC 3225); every query asks.
func TestQueriesAskForAD(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asked []bool
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		asked = append(asked, q.AuthenticatedData || q.IsEdns0() != nil && q.IsEdns0().Do())
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	r, err := NewResolver(pc.LocalAddr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.LookupMX(ctx, "a.test")
	r.LookupTLSA(ctx, "mx.a.test", 25)
	mu.Lock()
	defer mu.Unlock()
	// MX, then A and AAAA of the implicit MX, then TLSA.
	if len(asked) != 4 {
		t.Fatalf("%d queries, want 4", len(asked))
	}
	for i, a := range asked {
		if !a {
			t.Errorf("query %d asks for neither AD nor DO", i)
		}
	}
}
