package courier

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// The cache's choice, table-driven: an idle session is handed out only
// when policy.EvaluateHop passes the group's requirement on its Outcome, and
// only for the same MX name and address.
func TestCacheTakeJudgesOutcome(t *testing.T) {
	f, err := policy.Parse("p", []byte("p.test\nstrong.test bits=256\nv.test verify=cert\nnew.test min-tls=1.3\nt.test mode=testing bits=256\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol := f.Compile()
	req := func(rcpt string) policy.Requirement { return pol.Lookup(rcpt).Requirement() }
	clear := policy.Outcome{Failure: "STARTTLS not offered"}
	aes128 := policy.Outcome{TLS: true, Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	aes256v := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_256_GCM_SHA384, Verified: true}
	for _, tc := range []struct {
		name  string
		out   policy.Outcome
		rcpt  string
		mx    string
		reuse bool
	}{
		{"clear for unlisted", clear, "a@other.test", "mx", true},
		{"clear for enforced", clear, "a@p.test", "mx", false},
		{"128 for 112", aes128, "a@p.test", "mx", true},
		{"128 for 256", aes128, "a@strong.test", "mx", false},
		{"unverified for verify=cert", aes128, "a@v.test", "mx", false},
		{"verified for verify=cert", aes256v, "a@v.test", "mx", true},
		{"TLS 1.2 for min-tls=1.3", aes128, "a@new.test", "mx", false},
		{"TLS 1.3 for min-tls=1.3", aes256v, "a@new.test", "mx", true},
		{"testing mode may send", aes128, "a@t.test", "mx", true},
		{"other MX name, same address", aes256v, "a@p.test", "other-mx", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConnCache(10, 10, time.Minute, time.Hour, time.Now)
			x := &conn{s: &smtpclient.Session{}, hop: Hop{MX: "mx", Outcome: tc.out}, addr: "127.0.0.1:25", opened: time.Now(), since: time.Now()}
			c.open, c.perAddr["127.0.0.1:25"] = 1, 1
			c.idle = []*conn{x}
			got, ok := c.take(context.Background(), target{name: tc.mx, addr: "127.0.0.1:25"}, req(tc.rcpt))
			if !ok {
				t.Fatal("take failed")
			}
			if (got == x) != tc.reuse {
				t.Errorf("reused = %v, want %v", got == x, tc.reuse)
			}
			if !tc.reuse && got != nil {
				t.Errorf("got another cached session")
			}
		})
	}
}

// A cached session keeps the DANE state it was opened with: it is handed
// out only for a hop with the same HopFacts, and judged by EvaluateHop
// with them (usable TLSA: only a DANE-authenticated session), and an
// MTA-STS policy applies to reuse as to a new session.
func TestCacheTakeJudgesPublished(t *testing.T) {
	usable := policy.HopFacts{Name: "mx", DANE: policy.DANEUsable}
	none := policy.HopFacts{Name: "mx"}
	pkix := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Verified: true, Auth: policy.AuthPKIX}
	daneOut := pkix
	daneOut.Auth, daneOut.TLSA = policy.AuthDANE, "3 1 1 ab"
	clear := policy.Outcome{Failure: "STARTTLS not offered"}
	enforce := policy.Combine(policy.Requirement{}, policy.Published{STS: &policy.STS{ID: "p", Mode: policy.STSEnforce, MX: []string{"mx"}}})
	for _, tc := range []struct {
		name        string
		opened, now policy.HopFacts
		out         policy.Outcome
		req         policy.Requirement
		reuse       bool
	}{
		{"DANE-authenticated, still usable", usable, usable, daneOut, policy.Requirement{}, true},
		{"opened without TLSA, now usable", none, usable, pkix, policy.Requirement{}, false},
		{"opened with TLSA, now none", usable, none, daneOut, policy.Requirement{}, false},
		{"usable TLSA, PKIX only", usable, usable, pkix, policy.Requirement{}, false},
		{"clear for MTA-STS enforce", none, none, clear, enforce, false},
		{"verified for MTA-STS enforce", none, none, pkix, enforce, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newConnCache(10, 10, time.Minute, time.Hour, time.Now)
			x := &conn{s: &smtpclient.Session{}, hop: Hop{MX: "mx", Outcome: tc.out, Facts: tc.opened}, addr: "127.0.0.1:25", opened: time.Now(), since: time.Now()}
			c.open, c.perAddr["127.0.0.1:25"] = 1, 1
			c.idle = []*conn{x}
			got, ok := c.take(context.Background(), target{name: "mx", addr: "127.0.0.1:25", facts: tc.now}, tc.req)
			if !ok || (got == x) != tc.reuse {
				t.Errorf("reused = %v, want %v", got == x, tc.reuse)
			}
		})
	}
}

// Expired idle sessions are not handed out.
func TestCacheExpiry(t *testing.T) {
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	c := newConnCache(10, 10, 5*time.Second, time.Minute, func() time.Time { return *clock.Load() })
	out := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	mk := func(opened, since time.Time) *conn {
		return &conn{s: &smtpclient.Session{}, hop: Hop{MX: "mx", Outcome: out}, addr: "a:25", opened: opened, since: since}
	}
	c.open, c.perAddr["a:25"] = 2, 2
	stale := mk(now.Add(-time.Minute), now.Add(-time.Second))  // too old to reuse
	idle := mk(now.Add(-time.Second), now.Add(-6*time.Second)) // idle too long
	c.idle = []*conn{stale, idle}
	got, ok := c.take(context.Background(), target{name: "mx", addr: "a:25"}, policy.Requirement{})
	if !ok || got != nil {
		t.Errorf("take = %v, %v; want a new slot", got, ok)
	}
}

func BenchmarkCacheTakePut(b *testing.B) {
	c := newConnCache(100, 20, time.Minute, time.Hour, time.Now)
	out := policy.Outcome{TLS: true, Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256}
	for i := range 20 {
		c.open++
		c.perAddr[fmt.Sprintf("10.0.0.%d:25", i)]++
		c.idle = append(c.idle, &conn{s: &smtpclient.Session{}, hop: Hop{MX: "mx", Outcome: out}, addr: fmt.Sprintf("10.0.0.%d:25", i), opened: time.Now(), since: time.Now()})
	}
	ctx := context.Background()
	req := policy.DefaultRequirement()
	b.ReportAllocs()
	for b.Loop() {
		x, _ := c.take(ctx, target{name: "mx", addr: "10.0.0.7:25"}, req)
		c.put(ctx, x)
	}
}
