package dane

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/mx"
)

// cacheTest is a validating-resolver stand-in on loopback and a cache over
// it whose clock the test moves.
type cacheTest struct {
	d   *testpeer.DNS
	c   *Cache
	now time.Time
}

func newCacheTest(t *testing.T, cfg CacheConfig) *cacheTest {
	t.Helper()
	ct := &cacheTest{d: testpeer.StartDNS(t), now: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)}
	ct.d.SetAD(true)
	r, err := mx.NewResolver(ct.d.Addr(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Now = func() time.Time { return ct.now }
	ct.c = NewCache(r, cfg)
	return ct
}

// host is an MX host with authentic addresses, as mx.LookupHost finds it
// under a validating resolver.
func authentic(name string) mx.Host {
	return mx.Host{Name: name, Canonical: name, Addrs: []netip.Addr{netip.MustParseAddr("127.64.0.1")}, AD: true}
}

// tlsaQueries counts the TLSA questions the resolver got.
func (ct *cacheTest) tlsaQueries() int {
	n := 0
	for _, q := range ct.d.Queries() {
		if q.Qtype == dns.TypeTLSA {
			n++
		}
	}
	return n
}

// lookup asks the cache and checks the state and whether DNS was asked.
func (ct *cacheTest) lookup(t *testing.T, mxAD bool, h mx.Host, want State, asked bool) Host {
	t.Helper()
	before := ct.tlsaQueries()
	got := ct.c.Lookup(context.Background(), mxAD, h, 25)
	if got.State != want {
		t.Fatalf("%s at %v: state %q (%s), want %q", h.Name, ct.now.Format(time.TimeOnly), got.State, got.Reason, want)
	}
	if q := ct.tlsaQueries() - before; (q > 0) != asked {
		t.Fatalf("%s at %v: %d TLSA queries, want asked=%v", h.Name, ct.now.Format(time.TimeOnly), q, asked)
	}
	return got
}

// TestCacheTTL: a TLSA answer is used for its TTL, then asked again and
// the new answer used.
func TestCacheTTL(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{})
	ct.d.AddRR("_25._tcp.mx.a.test. 300 IN TLSA 3 1 1 " + hash)
	ct.d.AddRR("_25._tcp.mx.a.test. 60 IN TLSA 3 1 2 " + hash + hash)
	h := authentic("mx.a.test")
	first := ct.lookup(t, true, h, StateUsable, true)
	// The partner rolls over to a PKIX-TA record: not seen until the
	// smallest TTL of the old RRset has passed.
	ct.d.Remove("_25._tcp.mx.a.test")
	ct.d.AddRR("_25._tcp.mx.a.test. 60 IN TLSA 1 1 1 " + hash)
	ct.now = ct.now.Add(59 * time.Second)
	got := ct.lookup(t, true, h, StateUsable, false)
	if len(got.Records) != 2 || got.Owner != first.Owner || got.Base != first.Base || got.Names[0] != "mx.a.test" {
		t.Fatalf("cached %+v, first %+v", got, first)
	}
	ct.now = ct.now.Add(time.Second)
	ct.lookup(t, true, h, StateUnusable, true)
	ct.lookup(t, true, h, StateUnusable, false)
}

// TestCacheMaxTTL: a long TTL is capped.
func TestCacheMaxTTL(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{MaxTTL: 10 * time.Minute})
	ct.d.AddRR("_25._tcp.mx.a.test. 86400 IN TLSA 3 1 1 " + hash)
	h := authentic("mx.a.test")
	ct.lookup(t, true, h, StateUsable, true)
	ct.now = ct.now.Add(10*time.Minute - time.Second)
	ct.lookup(t, true, h, StateUsable, false)
	ct.now = ct.now.Add(time.Second)
	ct.lookup(t, true, h, StateUsable, true)
}

// TestCacheFailuresNotKept: a SERVFAIL (what a validating resolver
// answers for a bogus signature) or a timeout is asked again at the next
// call, never served from the cache (RFC 7672 §2.2: the host is not used
// now; the next attempt must see a repaired zone).
func TestCacheFailuresNotKept(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{})
	ct.d.ServFail("_25._tcp.mx.a.test")
	ct.d.Drop("_25._tcp.slow.a.test")
	h, slow := authentic("mx.a.test"), authentic("slow.a.test")
	ct.lookup(t, true, h, StateFailed, true)
	ct.lookup(t, true, h, StateFailed, true)
	ct.lookup(t, true, slow, StateFailed, true)
	ct.lookup(t, true, slow, StateFailed, true)
	ct.d.Remove("_25._tcp.mx.a.test")
	ct.d.AddTLSA("_25._tcp.mx.a.test", 3, 1, 1, hash)
	ct.lookup(t, true, h, StateUsable, true)
	if n := ct.c.Len(); n != 1 {
		t.Fatalf("%d entries, want 1 (the usable answer only)", n)
	}
}

// TestCacheDenial: an authenticated denial is kept for the SOA's negative
// TTL (RFC 2308 §3); without an SOA it is not kept (§5).
func TestCacheDenial(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{})
	ct.d.AddRR("a.test. 3600 IN SOA ns.a.test. admin.a.test. 1 3600 600 86400 120")
	h, nosoa := authentic("mx.a.test"), authentic("mx.nosoa.test")
	ct.d.AddA("mx.nosoa.test", "127.64.0.2")
	ct.lookup(t, true, h, StateNone, true)
	// Records published now are seen once the denial's 120 s are over.
	ct.d.AddTLSA("_25._tcp.mx.a.test", 3, 1, 1, hash)
	ct.now = ct.now.Add(119 * time.Second)
	ct.lookup(t, true, h, StateNone, false)
	ct.now = ct.now.Add(time.Second)
	ct.lookup(t, true, h, StateUsable, true)

	ct.lookup(t, true, nosoa, StateNone, true)
	ct.lookup(t, true, nosoa, StateNone, true)
}

// TestCacheGate: whether DANE applies is decided per call from the MX
// and address authenticity, never from the cache; a host under another
// CNAME-expanded name is a different entry.
func TestCacheGate(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{})
	ct.d.AddTLSA("_25._tcp.mx.a.test", 3, 1, 1, hash)
	ct.d.AddTLSA("_25._tcp.mx.hosting.test", 2, 0, 1, hash)
	h := authentic("mx.a.test")

	// Not authentic first: nothing asked, nothing kept.
	got := ct.lookup(t, false, h, StateNone, false)
	if got.Reason != "MX records not DNSSEC-authenticated (RFC 7672 §2.2.1)" {
		t.Fatalf("reason %q", got.Reason)
	}
	if ct.c.Len() != 0 {
		t.Fatal("a lookup that did not apply was kept")
	}
	ct.lookup(t, true, h, StateUsable, true)
	// A usable state in the cache does not make DANE apply to a domain
	// whose MX RRset, or a host whose addresses, are not authentic.
	ct.lookup(t, false, h, StateNone, false)
	insecure := h
	insecure.AD = false
	got = ct.lookup(t, true, insecure, StateNone, false)
	if got.Reason != "address records of mx.a.test not DNSSEC-authenticated (RFC 7672 §2.2.2)" {
		t.Fatalf("reason %q", got.Reason)
	}
	ct.lookup(t, true, h, StateUsable, false)

	// The same name now a CNAME to a hosting provider's MX: its records
	// are asked, not the ones cached for the name alone (RFC 7672 §2.2.2).
	alias := h
	alias.Canonical = "mx.hosting.test"
	got = ct.lookup(t, true, alias, StateUsable, true)
	if got.Owner != "_25._tcp.mx.hosting.test" || len(got.Names) != 2 {
		t.Fatalf("owner %q names %q", got.Owner, got.Names)
	}
	ct.lookup(t, true, h, StateUsable, false)
}

// TestCacheBounded: the cache holds at most Size hosts; expired ones go
// first, then the one that expires first.
func TestCacheBounded(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{Size: 2})
	for _, n := range []string{"one", "two", "three"} {
		ct.d.AddTLSA("_25._tcp."+n+".a.test", 3, 1, 1, hash) // TTL 60
	}
	ct.lookup(t, true, authentic("one.a.test"), StateUsable, true)
	ct.now = ct.now.Add(time.Second)
	ct.lookup(t, true, authentic("two.a.test"), StateUsable, true)
	ct.lookup(t, true, authentic("three.a.test"), StateUsable, true)
	if n := ct.c.Len(); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
	ct.lookup(t, true, authentic("two.a.test"), StateUsable, false)
	ct.lookup(t, true, authentic("one.a.test"), StateUsable, true) // the one evicted
}

// TestCacheConcurrent: many goroutines on few hosts (run with -race).
func TestCacheConcurrent(t *testing.T) {
	ct := newCacheTest(t, CacheConfig{Size: 3})
	names := []string{"a", "b", "c", "d"}
	for _, n := range names {
		ct.d.AddTLSA("_25._tcp."+n+".a.test", 3, 1, 1, hash)
	}
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for j := range 20 {
				h := authentic(names[(i+j)%len(names)] + ".a.test")
				if got := ct.c.Lookup(context.Background(), true, h, 25); got.State != StateUsable || len(got.Records) != 1 {
					t.Errorf("%s: %q %d records", h.Name, got.State, len(got.Records))
				}
			}
		})
	}
	wg.Wait()
	if n := ct.c.Len(); n > 3 {
		t.Fatalf("%d entries, want <= 3", n)
	}
}
