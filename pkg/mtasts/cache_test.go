package mtasts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time for the cache; HTTP and DNS use real time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// policyLab serves a changeable policy for a.test and counts fetches.
type policyLab struct {
	*lab
	body    atomic.Value // string
	fetches atomic.Int32
	clock   *clock
	dir     string
	logs    *bytes.Buffer
	logMu   sync.Mutex
}

func newPolicyLab(t *testing.T, policy string) *policyLab {
	t.Helper()
	pl := &policyLab{clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, dir: t.TempDir(), logs: &bytes.Buffer{}}
	pl.body.Store(policy)
	pl.lab = newLab(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pl.fetches.Add(1)
		testPolicyHandler(pl.body.Load().(string))(w, r)
	}), "a.test")
	pl.dns.AddTXT("_mta-sts.a.test", "v=STSv1; id=one;")
	return pl
}

func testPolicyHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}
}

func (pl *policyLab) Write(p []byte) (int, error) {
	pl.logMu.Lock()
	defer pl.logMu.Unlock()
	return pl.logs.Write(p)
}

func (pl *policyLab) cache(t *testing.T) *Cache {
	t.Helper()
	c, err := NewCache(CacheConfig{
		Dir: pl.dir, Resolver: pl.res, Fetcher: pl.fetcher(t, 2*time.Second), Timeout: 3 * time.Second,
		Logger: slog.New(slog.NewTextHandler(pl, nil)), Now: pl.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.inflight.Wait)
	return c
}

func (pl *policyLab) setID(id string) {
	pl.dns.Remove("_mta-sts.a.test")
	pl.dns.AddTXT("_mta-sts.a.test", "v=STSv1; id="+id+";")
}

func policyOf(t *testing.T, c *Cache, domain string) Result {
	t.Helper()
	r, err := c.Policy(context.Background(), domain)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCacheColdThenWarm(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	c := pl.cache(t)
	r := policyOf(t, c, "A.test.")
	if r.Policy == nil || r.FromCache || r.ID != "one" || !r.Enforce() || !r.Policy.MatchMX("mx.a.test") || r.Failure != "" || r.Err != nil {
		t.Fatalf("cold: %+v", r)
	}
	if !r.Expires.Equal(pl.clock.Now().Add(86400 * time.Second)) {
		t.Fatalf("expires %v", r.Expires)
	}
	// Warm: no DNS, no HTTPS on the delivery path.
	q := len(pl.dns.Queries())
	r = policyOf(t, c, "a.test")
	if r.Policy == nil || !r.FromCache || r.ID != "one" || len(pl.dns.Queries()) != q || pl.fetches.Load() != 1 {
		t.Fatalf("warm: %+v, %d queries more, %d fetches", r, len(pl.dns.Queries())-q, pl.fetches.Load())
	}
	// The file on disk is the documented format.
	data, err := os.ReadFile(filepath.Join(pl.dir, "a.test.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(data, &f); err != nil || f["domain"] != "a.test" || f["id"] != "one" || f["policy"] != goodPolicy || f["mode"] != "enforce" || f["fetched"] != "2026-03-01T12:00:00Z" || f["expires"] != "2026-03-02T12:00:00Z" {
		t.Fatalf("cache file %s (%v)", data, err)
	}
}

func TestCacheSurvivesRestartWithServerDown(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	if r := policyOf(t, pl.cache(t), "a.test"); r.Policy == nil {
		t.Fatalf("%+v", r)
	}
	pl.srv.Close()
	pl.dns.Remove("_mta-sts.a.test")
	pl.clock.Add(time.Hour)
	c := pl.cache(t) // a restart
	r := policyOf(t, c, "a.test")
	if r.Policy == nil || !r.FromCache || r.ID != "one" || !r.Enforce() {
		t.Fatalf("after restart: %+v", r)
	}
}

func TestCacheServerDownKeepsPolicy(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	c := pl.cache(t)
	policyOf(t, c, "a.test")
	pl.srv.Close()
	pl.setID("two") // a new id: a refetch is due, and fails
	pl.clock.Add(DefaultCheckEvery)
	if r := policyOf(t, c, "a.test"); r.Policy == nil || !r.FromCache {
		t.Fatalf("%+v", r)
	}
	c.inflight.Wait()
	r := policyOf(t, c, "a.test")
	if r.Policy == nil || !r.FromCache || r.ID != "one" || r.Err == nil || !r.Enforce() {
		t.Fatalf("after a failed refresh: %+v", r)
	}
	if !strings.Contains(pl.logs.String(), "MTA-STS: refresh failed; the cached policy applies until it expires") {
		t.Fatalf("log: %s", pl.logs)
	}
}

func TestCacheIDChangeRefetches(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	c := pl.cache(t)
	policyOf(t, c, "a.test")
	pl.body.Store("version: STSv1\r\nmode: testing\r\nmx: mx2.a.test\r\nmax_age: 86400\r\n")
	pl.setID("two")
	// Within CheckEvery the record is not asked again.
	pl.clock.Add(DefaultCheckEvery - time.Second)
	policyOf(t, c, "a.test")
	c.inflight.Wait()
	if r := policyOf(t, c, "a.test"); r.ID != "one" || pl.fetches.Load() != 1 {
		t.Fatalf("checked too early: %+v", r)
	}
	pl.clock.Add(time.Second)
	if r := policyOf(t, c, "a.test"); r.ID != "one" {
		t.Fatalf("the delivery path waited for the refresh: %+v", r)
	}
	c.inflight.Wait()
	r := policyOf(t, c, "a.test")
	if r.ID != "two" || !r.Testing() || !r.Policy.MatchMX("mx2.a.test") || r.Policy.MatchMX("mx.a.test") || pl.fetches.Load() != 2 {
		t.Fatalf("after the id change: %+v, %d fetches", r, pl.fetches.Load())
	}
	// Same id: no fetch until the policy is a day old.
	pl.clock.Add(DefaultCheckEvery)
	policyOf(t, c, "a.test")
	c.inflight.Wait()
	if pl.fetches.Load() != 2 {
		t.Fatalf("refetched with the same id: %d", pl.fetches.Load())
	}
	pl.clock.Add(refetchAge)
	policyOf(t, c, "a.test")
	c.inflight.Wait()
	if r := policyOf(t, c, "a.test"); pl.fetches.Load() != 3 || !r.Fetched.Equal(pl.clock.Now()) {
		t.Fatalf("not refreshed ahead of expiry: %+v, %d fetches", r, pl.fetches.Load())
	}
}

func TestCacheExpiryDropsPolicy(t *testing.T) {
	pl := newPolicyLab(t, "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 60\r\n")
	c := pl.cache(t)
	policyOf(t, c, "a.test")
	pl.srv.Close()
	pl.clock.Add(61 * time.Second)
	r := policyOf(t, c, "a.test")
	if r.Policy != nil || r.ID != "one" || r.Failure != FailureFetch || r.Err == nil {
		t.Fatalf("expired: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(pl.dir, "a.test.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("expired file still there: %v", err)
	}
	// An expired file is not loaded after a restart either.
	pl2 := newPolicyLab(t, "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 60\r\n")
	policyOf(t, pl2.cache(t), "a.test")
	pl2.srv.Close()
	pl2.clock.Add(time.Minute)
	if r := policyOf(t, pl2.cache(t), "a.test"); r.Policy != nil {
		t.Fatalf("expired policy loaded: %+v", r)
	}
}

func TestCacheNoPolicy(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	pl.dns.AddTXT("_mta-sts.bad.test", "v=STSv1; id=a-b")
	pl.dns.AddTXT("_mta-sts.down.test", "v=STSv1; id=1")
	pl.dns.AddTXT("_mta-sts.html.test", "v=STSv1; id=1")
	pl.dns.AddA("mta-sts.html.test", "127.0.0.1") // certificate for a.test only
	pl.dns.ServFail("_mta-sts.sf.test")
	c := pl.cache(t)
	for _, tc := range []struct {
		domain, failure string
		errIs           error
	}{
		{domain: "none.test"},                         // NXDOMAIN: no MTA-STS, nothing to say
		{domain: "bad.test", errIs: ErrInvalidRecord}, // RFC 8461 §3.1: same as none
		{domain: "down.test", failure: FailureFetch},  // RFC 8461 §5: deliver as without
		{domain: "html.test", failure: FailureWebPKI},
		{domain: "sf.test"}, // DNS failure: Err, no Failure
	} {
		r := policyOf(t, c, tc.domain)
		if r.Policy != nil || r.Failure != tc.failure || tc.errIs != nil && !errors.Is(r.Err, tc.errIs) ||
			tc.domain == "none.test" && r.Err != nil || tc.domain != "none.test" && r.Err == nil {
			t.Errorf("%s: %+v", tc.domain, r)
		}
	}
	// "No policy" is remembered for CheckEvery: no DNS on the next call.
	q := len(pl.dns.Queries())
	if r := policyOf(t, c, "down.test"); r.Failure != FailureFetch || len(pl.dns.Queries()) != q {
		t.Fatalf("%+v, %d queries", r, len(pl.dns.Queries())-q)
	}
	pl.clock.Add(DefaultCheckEvery)
	policyOf(t, c, "none.test")
	if len(pl.dns.Queries()) == q {
		t.Fatal("no policy remembered past CheckEvery")
	}
	if _, err := c.Policy(context.Background(), "../etc"); err == nil {
		t.Fatal("a path accepted as a domain")
	}
}

func TestCacheCorruptFileIgnored(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	policyOf(t, pl.cache(t), "a.test")
	for name, data := range map[string]string{
		"a.test.json": `{"domain":"a.test","id":"one","policy":"garbage"`,
		"b.test.json": `{"domain":"c.test","id":"one","policy":"version: STSv1\r\nmode: none\r\nmax_age: 5\r\n","fetched":"2026-03-01T12:00:00Z","expires":"2026-03-01T12:00:05Z"}`,
		"d.test.json": `{"domain":"d.test","id":"one","policy":"version: STSv1\r\nmode: none\r\nmax_age: 5\r\n","fetched":"2026-03-01T12:00:00Z","expires":"2027-03-01T12:00:05Z"}`,
		"e.test.json": "",
	} {
		if err := os.WriteFile(filepath.Join(pl.dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := pl.cache(t)
	for _, f := range []string{"a.test.json", "b.test.json", "d.test.json", "e.test.json"} {
		if !strings.Contains(pl.logs.String(), "MTA-STS: cache file ignored") || !strings.Contains(pl.logs.String(), f) {
			t.Errorf("no log line for %s: %s", f, pl.logs)
		}
	}
	if len(c.entries) != 0 {
		t.Fatalf("corrupt files loaded: %v", c.entries)
	}
	// The domain is fetched again and the file replaced.
	if r := policyOf(t, c, "a.test"); r.Policy == nil || r.FromCache {
		t.Fatalf("%+v", r)
	}
	if _, err := readCacheFile(filepath.Join(pl.dir, "a.test.json")); err != nil {
		t.Fatal(err)
	}
}

func TestCacheRunRefreshesIdleDomains(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	c, err := NewCache(CacheConfig{
		Dir: pl.dir, Resolver: pl.res, Fetcher: pl.fetcher(t, 2*time.Second), CheckEvery: 5 * time.Second, Now: pl.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	policyOf(t, c, "a.test")
	pl.setID("two")
	pl.clock.Add(5 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for pl.fetches.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	if r := policyOf(t, c, "a.test"); r.ID != "two" {
		t.Fatalf("Run did not refresh: %+v", r)
	}
}

// BenchmarkCacheWarm is the delivery path's cost once a domain is warm.
func BenchmarkCacheWarm(b *testing.B) {
	pl := &policyLab{clock: &clock{now: time.Now()}, dir: b.TempDir(), logs: &bytes.Buffer{}}
	pl.body.Store(goodPolicy)
	pl.lab = newLabTB(b, testPolicyHandler(goodPolicy), "a.test")
	pl.dns.AddTXT("_mta-sts.a.test", "v=STSv1; id=one;")
	f, err := NewFetcher(FetcherConfig{Resolver: pl.res, Roots: pl.ca.Pool(), Port: pl.srv.Port})
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCache(CacheConfig{Dir: pl.dir, Resolver: pl.res, Fetcher: f, Now: pl.clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if r, _ := c.Policy(ctx, "a.test"); r.Policy == nil {
		b.Fatalf("%+v", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r, _ := c.Policy(ctx, "a.test"); !r.FromCache {
			b.Fatal("not from cache")
		}
	}
}

// Cached serves what is held and nothing more: a cold domain gets no
// lookup and no fetch, a held one no refresh even when its check is
// due, an expired one is not served.
func TestCacheCachedOnly(t *testing.T) {
	pl := newPolicyLab(t, goodPolicy)
	c := pl.cache(t)
	if r, ok := c.Cached("a.test"); ok || r.Policy != nil || len(pl.dns.Queries()) != 0 || pl.fetches.Load() != 0 {
		t.Fatalf("cold: %+v %v, %d queries, %d fetches", r, ok, len(pl.dns.Queries()), pl.fetches.Load())
	}
	policyOf(t, c, "a.test")
	q, f := len(pl.dns.Queries()), pl.fetches.Load()
	pl.clock.Add(time.Hour) // past CheckEvery: Policy would check the record
	if r, ok := c.Cached("A.test."); !ok || r.Policy == nil || r.ID != "one" || !r.FromCache {
		t.Fatalf("held: %+v %v", r, ok)
	}
	c.inflight.Wait()
	if len(pl.dns.Queries()) != q || pl.fetches.Load() != f {
		t.Fatalf("Cached reached out: %d queries, %d fetches", len(pl.dns.Queries())-q, pl.fetches.Load()-f)
	}
	pl.clock.Add(2 * 24 * time.Hour) // past max_age
	if _, ok := c.Cached("a.test"); ok {
		t.Fatal("an expired policy was served")
	}
}
