package mx

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/internal/testpeer"
)

func newTest(t testing.TB) (*testpeer.DNS, *Resolver) {
	t.Helper()
	d := testpeer.StartDNS(t)
	r, err := NewResolver(d.Addr(), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return d, r
}

func hostNames(hs []Host) []string {
	var s []string
	for _, h := range hs {
		s = append(s, h.Name)
	}
	return s
}

func TestLookupMXOrderAndAddresses(t *testing.T) {
	d, r := newTest(t)
	d.AddMX("a.test", 20, "backup.a.test")
	d.AddMX("a.test", 10, "mx1.a.test")
	d.AddMX("a.test", 10, "mx2.a.test")
	d.AddMX("a.test", 5, "first.a.test")
	d.AddA("first.a.test", "127.64.0.1")
	d.AddAAAA("first.a.test", "::1")
	d.AddA("mx1.a.test", "127.64.0.2")
	d.AddA("mx2.a.test", "127.64.0.3")
	d.AddA("backup.a.test", "127.64.0.4")

	orders := map[string]bool{}
	for range 40 {
		res, err := r.LookupMX(context.Background(), "A.test.")
		if err != nil {
			t.Fatal(err)
		}
		if res.Implicit || res.NullMX || res.Domain != "a.test" {
			t.Fatalf("unexpected result %+v", res)
		}
		names := hostNames(res.Hosts)
		if names[0] != "first.a.test" || names[3] != "backup.a.test" {
			t.Fatalf("hosts not in preference order: %v", names)
		}
		orders[names[1]] = true
		first := res.Hosts[0]
		want := []netip.Addr{netip.MustParseAddr("127.64.0.1"), netip.MustParseAddr("::1")}
		if len(first.Addrs) != 2 || first.Addrs[0] != want[0] || first.Addrs[1] != want[1] || first.Err != nil {
			t.Fatalf("first host = %+v, want addrs %v", first, want)
		}
	}
	// RFC 5321 §5.1: equal preferences are randomised; in 40 runs both
	// orders appear unless the shuffle is missing (chance 2^-39).
	if !orders["mx1.a.test"] || !orders["mx2.a.test"] {
		t.Fatalf("equal-preference hosts never shuffled: %v", orders)
	}
}

func TestLookupMXCases(t *testing.T) {
	d, r := newTest(t)
	// Implicit MX (RFC 5321 §5.1).
	d.AddA("implicit.test", "127.64.1.1")
	// Implicit MX through a CNAME: the canonical name is the host.
	d.AddCNAME("alias.test", "real.test")
	d.AddA("real.test", "127.64.1.2")
	// Null MX (RFC 7505).
	d.NullMX("null.test")
	// MX host without any address.
	d.AddMX("noaddr.test", 10, "ghost.noaddr.test")
	d.AddTXT("ghost.noaddr.test", "exists but has no address")
	// MX host that does not exist at all.
	d.AddMX("nxhost.test", 10, "missing.nxhost.test")
	// MX host whose A lookup fails temporarily.
	d.AddMX("sfhost.test", 10, "sf.sfhost.test")
	d.ServFail("sf.sfhost.test")
	// SERVFAIL on the MX step itself.
	d.AddMX("servfail.test", 10, "mx.servfail.test")
	d.ServFail("servfail.test")
	// The domain's MX answer comes via a CNAME; the MX host is a CNAME.
	d.AddCNAME("cn.test", "target.test")
	d.AddMX("target.test", 10, "mxalias.target.test")
	d.AddCNAME("mxalias.target.test", "mxreal.target.test")
	d.AddA("mxreal.target.test", "127.64.1.3")
	// A CNAME loop.
	d.AddCNAME("loop1.test", "loop2.test")
	d.AddCNAME("loop2.test", "loop1.test")
	// Null MX next to a real MX: the real one is used.
	d.NullMX("mixed.test")
	d.AddMX("mixed.test", 10, "mx.mixed.test")
	d.AddA("mx.mixed.test", "127.64.1.4")
	// Truncated over UDP: only TCP answers.
	d.AddMX("big.test", 10, "mx.big.test")
	d.AddA("mx.big.test", "127.64.1.5")
	d.Truncate("big.test")
	// No answer at all: a timeout.
	d.Drop("slow.test")

	tests := []struct {
		domain    string
		wantErr   error // errors.Is target, or nil
		step      string
		temporary bool
		notFound  bool
		implicit  bool
		null      bool
		hosts     []string
		hostErr   error // errors.Is target for Hosts[0].Err
		hostTemp  bool
	}{
		{domain: "implicit.test", implicit: true, hosts: []string{"implicit.test"}},
		{domain: "alias.test", implicit: true, hosts: []string{"real.test"}},
		{domain: "null.test", wantErr: ErrNullMX, step: "MX", null: true},
		{domain: "noaddr.test", hosts: []string{"ghost.noaddr.test"}, hostErr: ErrNoAddress},
		{domain: "nxhost.test", hosts: []string{"missing.nxhost.test"}, hostErr: rcodeError(3)},
		{domain: "sfhost.test", hosts: []string{"sf.sfhost.test"}, hostErr: rcodeError(2), hostTemp: true},
		{domain: "servfail.test", wantErr: rcodeError(2), step: "MX", temporary: true},
		{domain: "nosuch.test", wantErr: rcodeError(3), step: "MX", notFound: true},
		{domain: "cn.test", hosts: []string{"mxalias.target.test"}},
		{domain: "loop1.test", wantErr: ErrCNAMELoop, step: "MX"},
		{domain: "mixed.test", hosts: []string{"mx.mixed.test"}},
		{domain: "big.test", hosts: []string{"mx.big.test"}},
		{domain: "slow.test", step: "MX", temporary: true, wantErr: errAny},
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			res, err := r.LookupMX(context.Background(), tc.domain)
			if tc.wantErr != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("err = %v, want an *Error", err)
				}
				if tc.wantErr != errAny && !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if e.Step != tc.step || e.Temporary != tc.temporary || IsTemporary(err) != tc.temporary || IsNotFound(err) != tc.notFound {
					t.Fatalf("err = %#v (%v): want step %s temporary %v notFound %v", e, err, tc.step, tc.temporary, tc.notFound)
				}
				if res.NullMX != tc.null {
					t.Fatalf("NullMX = %v, want %v", res.NullMX, tc.null)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if res.Implicit != tc.implicit || strings.Join(hostNames(res.Hosts), ",") != strings.Join(tc.hosts, ",") {
				t.Fatalf("got implicit=%v hosts=%v, want %v %v", res.Implicit, hostNames(res.Hosts), tc.implicit, tc.hosts)
			}
			h := res.Hosts[0]
			if tc.hostErr == nil {
				if h.Err != nil || len(h.Addrs) == 0 {
					t.Fatalf("host %s: addrs %v err %v", h.Name, h.Addrs, h.Err)
				}
				return
			}
			if !errors.Is(h.Err, tc.hostErr) || IsTemporary(h.Err) != tc.hostTemp || len(h.Addrs) != 0 {
				t.Fatalf("host err = %v (temporary %v), want %v (temporary %v)", h.Err, IsTemporary(h.Err), tc.hostErr, tc.hostTemp)
			}
			if !strings.Contains(h.Err.Error(), h.Name) {
				t.Fatalf("host error %q does not name the host", h.Err)
			}
		})
	}
}

// errAny marks a case where any *Error will do.
var errAny = errors.New("any")

func TestTruncatedAnswerUsesTCP(t *testing.T) {
	d, r := newTest(t)
	d.AddMX("big.test", 10, "mx.big.test")
	d.AddA("mx.big.test", "127.64.1.5")
	d.Truncate("big.test")
	if _, err := r.LookupMX(context.Background(), "big.test"); err != nil {
		t.Fatal(err)
	}
	// The truncated UDP answer must be followed by a TCP one: two
	// questions for big.test.
	n := 0
	for _, q := range d.Queries() {
		if q.Name == "big.test." {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d queries for big.test, want 2 (UDP then TCP)", n)
	}
}

func TestLookupTXT(t *testing.T) {
	d, r := newTest(t)
	long := "v=STSv1; id=" + strings.Repeat("x", 300)
	d.AddTXT("_mta-sts.a.test", long)
	d.AddTXT("_smtp._tls.a.test", "v=TLSRPTv1; rua=mailto:tls@a.test")
	d.AddMX("a.test", 10, "mx.a.test")

	got, err := r.LookupTXT(context.Background(), "_mta-sts.a.test")
	if err != nil || len(got) != 1 || got[0] != long {
		t.Fatalf("TXT = %q, %v; want the split record joined", got, err)
	}
	// NODATA: no records, no error.
	if got, err := r.LookupTXT(context.Background(), "a.test"); err != nil || len(got) != 0 {
		t.Fatalf("NODATA TXT = %q, %v", got, err)
	}
	// NXDOMAIN: IsNotFound.
	if _, err := r.LookupTXT(context.Background(), "_mta-sts.b.test"); !IsNotFound(err) || IsTemporary(err) {
		t.Fatalf("NXDOMAIN TXT err = %v", err)
	}
}

func TestLookupTLSA(t *testing.T) {
	d, r := newTest(t)
	d.AddTLSA("_25._tcp.mx.a.test", 3, 1, 1, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	for _, ad := range []bool{false, true} {
		d.SetAD(ad)
		res, err := r.LookupTLSA(context.Background(), "MX.a.test.", 25)
		if err != nil {
			t.Fatal(err)
		}
		if res.Name != "_25._tcp.mx.a.test" || len(res.Records) != 1 || res.AD != ad || res.Secure != ad {
			t.Fatalf("ad=%v: %+v", ad, res)
		}
		if rec := res.Records[0]; rec.Usage != 3 || rec.Selector != 1 || rec.MatchingType != 1 || len(rec.Data) != 32 {
			t.Fatalf("record %v", rec)
		}
	}
	res, err := r.LookupTLSA(context.Background(), "other.a.test", 25)
	if err != nil || len(res.Records) != 0 {
		t.Fatalf("absent TLSA: %+v %v", res, err)
	}
}

func TestADTrustedOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		server string
		trust  bool
	}{
		{"127.0.0.1:53", true},
		{"[::1]:5353", true},
		{"127.0.0.53", true},
		{"192.0.2.1:53", false},
		{"[2001:db8::1]:53", false},
	} {
		r, err := NewResolver(tc.server, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		if r.TrustsAD() != tc.trust {
			t.Errorf("%s: TrustsAD = %v, want %v", tc.server, r.TrustsAD(), tc.trust)
		}
	}
	for _, bad := range []string{"dns.example:53", "127.0.0.1:99999", "127.0.0.1:x"} {
		if _, err := NewResolver(bad, 0); err == nil {
			t.Errorf("NewResolver(%q) accepted", bad)
		}
	}
}

func TestContextCancelled(t *testing.T) {
	d, r := newTest(t)
	d.AddMX("a.test", 10, "mx.a.test")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.LookupMX(ctx, "a.test")
	if err == nil || !IsTemporary(err) {
		t.Fatalf("cancelled lookup: err = %v, want a temporary error", err)
	}
}

func BenchmarkLookupMX(b *testing.B) {
	d, r := newTest(b)
	d.AddMX("a.test", 10, "mx1.a.test")
	d.AddMX("a.test", 20, "mx2.a.test")
	d.AddA("mx1.a.test", "127.64.0.1")
	d.AddA("mx2.a.test", "127.64.0.2")
	ctx := context.Background()
	for b.Loop() {
		if _, err := r.LookupMX(ctx, "a.test"); err != nil {
			b.Fatal(err)
		}
	}
}

// Issue 10 point 3: the MX lookup takes the relay's one canonical form of
// a domain, the form policy lookups use. A name that is not a host name
// ("plain.test..", which used to resolve as plain.test) is refused
// permanently without a query; U-labels and fullwidth forms are looked up
// by their A-labels.
func TestLookupMXCanonicalDomain(t *testing.T) {
	d, r := newTest(t)
	d.AddMX("plain.test", 10, "mx.plain.test")
	d.AddA("mx.plain.test", "127.64.9.1")
	d.AddMX("xn--bcher-kva.test", 10, "mx.plain.test")
	for _, bad := range []string{"plain.test..", ".plain.test", "plain..test", "-plain.test", "plain_x.test", "[127.0.0.1]"} {
		_, err := r.LookupMX(context.Background(), bad)
		if err == nil || IsTemporary(err) {
			t.Errorf("LookupMX(%q) = %v, want a permanent error", bad, err)
		}
	}
	if q := d.Queries(); len(q) != 0 {
		t.Errorf("bad names were looked up: %v", q)
	}
	for in, want := range map[string]string{
		"PLAIN.Test.":        "plain.test",
		"ｐｌａｉｎ.test":         "plain.test",
		"ＰＬＡＩＮ．ｔｅｓｔ":         "plain.test",
		"bücher.test":        "xn--bcher-kva.test",
		"XN--BCHER-KVA.test": "xn--bcher-kva.test",
	} {
		res, err := r.LookupMX(context.Background(), in)
		if err != nil || res.Domain != want || len(res.Hosts) != 1 || res.Hosts[0].Name != "mx.plain.test" {
			t.Errorf("LookupMX(%q) = %+v, %v; want %s's MX", in, res, err, want)
		}
	}
}

// The relay bounces and the probe grades no-mail exactly when every MX
// host's address lookup failed permanently.
func TestNoAddress(t *testing.T) {
	nx := &Error{Step: "A", Name: "ghost.test", Rcode: dns.RcodeNameError, Err: errors.New("NXDOMAIN")}
	nodata := &Error{Step: "A/AAAA", Name: "txt.test", Rcode: dns.RcodeSuccess, Err: ErrNoAddress}
	servfail := &Error{Step: "A", Name: "sf.test", Rcode: dns.RcodeServerFailure, Temporary: true, Err: errors.New("SERVFAIL")}
	addr := netip.MustParseAddr("127.0.0.1")
	for _, tc := range []struct {
		name      string
		hosts     []Host
		permanent bool
		err       error
	}{
		{"all NXDOMAIN or no address", []Host{{Err: nx}, {Err: nodata}}, true, nodata},
		{"one NXDOMAIN", []Host{{Err: nx}}, true, nx},
		{"one temporary", []Host{{Err: nx}, {Err: servfail}}, false, servfail},
		{"one has an address", []Host{{Err: nx}, {Addrs: []netip.Addr{addr}}}, false, nil},
		{"no error, no address", []Host{{Err: nx}, {}}, false, nil},
		{"no hosts", nil, false, nil},
	} {
		permanent, err := Result{Hosts: tc.hosts}.NoAddress()
		if permanent != tc.permanent || err != tc.err {
			t.Errorf("%s: %v %v, want %v %v", tc.name, permanent, err, tc.permanent, tc.err)
		}
	}
}
