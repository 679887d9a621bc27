package mtasts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// DefaultCheckEvery is how often a cached domain's _mta-sts record is
// asked again to see whether its id changed. RFC 8461 §3.3 suggests
// limiting fetch attempts to one per five minutes per id.
const DefaultCheckEvery = 5 * time.Minute

// refetchAge: a cached policy older than this is fetched again even when
// its id has not changed, so a long max_age never runs out unnoticed
// and the expiry moves forward while the policy server is up.
const refetchAge = 24 * time.Hour

// maxRefreshes bounds background refreshes running at once.
const maxRefreshes = 8

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Dir holds one file per policy domain (the relay puts it beside the
	// spool); created 0700 when missing. Required.
	Dir string
	// Resolver asks _mta-sts TXT records; required.
	Resolver *mx.Resolver
	// Fetcher fetches policy files; required.
	Fetcher *Fetcher
	// Timeout bounds a record lookup and fetch together, on the delivery
	// path (a cold cache) and in the background; 0 means
	// DefaultFetchTimeout.
	Timeout time.Duration
	// CheckEvery is how often a cached domain's record is checked for a
	// new id, and how long "no policy" answers are remembered in memory;
	// 0 means DefaultCheckEvery.
	CheckEvery time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Result is what a domain's MTA-STS says for delivery now.
type Result struct {
	Domain string
	// Policy is the policy to apply; nil means the domain has no usable
	// MTA-STS policy: deliver as if it had not implemented MTA-STS
	// (RFC 8461 §5: also when the record exists but no policy could be
	// fetched and none is cached).
	Policy *Policy
	// ID is the policy's id (from the _mta-sts record it was fetched
	// under), or the record's id when the fetch failed.
	ID string
	// FromCache: Policy came from the cache, not a fetch just now.
	FromCache bool
	// Fetched and Expires (Fetched + max_age) are the policy's.
	Fetched, Expires time.Time
	// Failure is the TLS-RPT result type (FailureFetch, FailureInvalid,
	// FailureWebPKI) when the domain publishes a record but its policy
	// could not be fetched and none is cached; "" otherwise.
	Failure string
	// Err says what went wrong, for logs and the audit: the fetch
	// behind Failure, a DNS failure or an invalid record (Policy nil), or
	// the last failed refresh of a cached policy still in use.
	Err error
}

// Enforce reports whether r demands verified TLS to matching MX hosts.
func (r Result) Enforce() bool { return r.Policy != nil && r.Policy.Mode == ModeEnforce }

// Testing reports whether r asks for failures to be reported only.
func (r Result) Testing() bool { return r.Policy != nil && r.Policy.Mode == ModeTesting }

// cacheFile is the JSON of one file in the cache directory, named
// <domain>.json.
type cacheFile struct {
	Domain  string    `json:"domain"`
	ID      string    `json:"id"`
	Policy  string    `json:"policy"` // the policy in canonical form (Policy.String)
	Mode    Mode      `json:"mode"`   // for people reading the file; Policy is what is read back
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

type entry struct {
	file    cacheFile
	policy  Policy
	checked time.Time // last _mta-sts check; memory only
	lastErr error     // last refresh failure, cleared by a success
}

// noPolicy is a remembered "no policy now" answer, so that delivery to
// the many domains without MTA-STS does not wait for DNS each time.
type noPolicy struct {
	res   Result
	until time.Time
}

// Cache is the relay's store of MTA-STS policies: on disk, so that they
// survive restarts (RFC 8461 §5.1, a sender caches policies for
// max_age), and kept fresh in the background. Policy answers from
// memory once a domain is warm; only a domain never seen (or whose
// policy expired) waits for DNS and HTTPS, bounded by Timeout. It is
// safe for concurrent use.
type Cache struct {
	cfg      CacheConfig
	log      *slog.Logger
	cold     singleflight.Group
	slots    chan struct{}
	inflight sync.WaitGroup

	mu         sync.Mutex
	entries    map[string]*entry
	none       map[string]noPolicy
	refreshing map[string]bool
}

// NewCache loads the policies in cfg.Dir. A file that cannot be read as
// a policy is logged and ignored (and replaced by the next fetch); an
// expired one is removed.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if cfg.Dir == "" || cfg.Resolver == nil || cfg.Fetcher == nil {
		return nil, errors.New("mtasts: cache needs a directory, a resolver and a fetcher")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultFetchTimeout
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = DefaultCheckEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mtasts: cache directory: %w", err)
	}
	c := &Cache{
		cfg: cfg, log: log, slots: make(chan struct{}, maxRefreshes),
		entries: map[string]*entry{}, none: map[string]noPolicy{}, refreshing: map[string]bool{},
	}
	names, err := filepath.Glob(filepath.Join(cfg.Dir, "*.json"))
	if err != nil {
		return nil, err
	}
	now := cfg.Now()
	for _, name := range names {
		e, err := readCacheFile(name)
		if err != nil {
			log.Warn("MTA-STS: cache file ignored", "file", name, "err", err)
			continue
		}
		if !now.Before(e.file.Expires) {
			c.remove(e.file.Domain, "expired")
			continue
		}
		c.entries[e.file.Domain] = e
	}
	return c, nil
}

func readCacheFile(name string) (*entry, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var f cacheFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	if !validDomain(f.Domain) || filepath.Base(name) != f.Domain+".json" {
		return nil, fmt.Errorf("domain %q does not match the file name", f.Domain)
	}
	if _, err := ParseRecord([]string{"v=STSv1; id=" + f.ID}); err != nil {
		return nil, fmt.Errorf("id %q: %v", f.ID, err)
	}
	p, err := ParsePolicy([]byte(f.Policy))
	if err != nil {
		return nil, fmt.Errorf("policy: %v", err)
	}
	if f.Fetched.IsZero() || !f.Expires.Equal(f.Fetched.Add(time.Duration(p.MaxAge)*time.Second)) {
		return nil, errors.New("fetched and expires do not agree with max_age")
	}
	return &entry{file: f, policy: p}, nil
}

// Policy returns the MTA-STS policy to apply to mail for domain now. A
// fresh cached policy is returned at once; when its record is due a
// check (CheckEvery) a background refresh starts, and the next call
// sees its result. Otherwise the record is looked up and the policy
// fetched, bounded by Timeout. Every MTA-STS failure is in the Result
// (Policy nil means deliver as without MTA-STS, RFC 8461 §5); the error
// is only for a name that is not a domain or ctx ending first.
func (c *Cache) Policy(ctx context.Context, domain string) (Result, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !validDomain(domain) {
		return Result{}, fmt.Errorf("mtasts: %q is not a domain name", domain)
	}
	now := c.cfg.Now()
	c.mu.Lock()
	if e := c.entries[domain]; e != nil {
		if now.Before(e.file.Expires) {
			res := e.result(true)
			if now.Sub(e.checked) >= c.cfg.CheckEvery {
				c.startRefreshLocked(domain)
			}
			c.mu.Unlock()
			return res, nil
		}
		// RFC 8461 §5.1: past max_age a policy no longer applies.
		delete(c.entries, domain)
		c.remove(domain, "expired")
	}
	if n, ok := c.none[domain]; ok && now.Before(n.until) {
		c.mu.Unlock()
		return n.res, nil
	}
	c.mu.Unlock()

	// Concurrent deliveries to a cold domain share one lookup; it runs
	// on its own deadline so that one caller giving up does not fail
	// the others.
	ch := c.cold.DoChan(domain, func() (any, error) {
		return c.fetchCold(domain), nil
	})
	select {
	case r := <-ch:
		return r.Val.(Result), nil
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Cached returns domain's policy only when one is held and fresh: no
// lookup, no fetch, no refresh. It is for a relay whose published
// policies are off, which must not reach out for them yet may still name
// a policy it already holds and ignores.
func (c *Cache) Cached(domain string) (Result, bool) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[domain]; e != nil && c.cfg.Now().Before(e.file.Expires) {
		return e.result(true), true
	}
	return Result{Domain: domain}, false
}

func (e *entry) result(fromCache bool) Result {
	p := e.policy
	return Result{
		Domain: e.file.Domain, Policy: &p, ID: e.file.ID, FromCache: fromCache,
		Fetched: e.file.Fetched, Expires: e.file.Expires, Err: e.lastErr,
	}
}

// fetchCold looks the record up and fetches the policy for a domain
// with nothing cached.
func (c *Cache) fetchCold(domain string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	res := Result{Domain: domain}
	id, err := LookupRecord(ctx, c.cfg.Resolver, domain)
	if err == nil {
		res.ID = id
		var p Policy
		p, err = c.cfg.Fetcher.Fetch(ctx, domain)
		if err == nil {
			return c.store(domain, id, p).result(false)
		}
		// RFC 8461 §5: a record but no policy and none cached: deliver
		// as without MTA-STS, and say so in TLS-RPT (RFC 8460 §4.3.2.2).
		res.Failure = FailureFetch
		var fe *FetchError
		if errors.As(err, &fe) {
			res.Failure = fe.ResultType
		}
		c.log.Info("MTA-STS: no policy could be fetched, delivering as without MTA-STS", "domain", domain, "id", id, "err", err)
	}
	if err != nil && !errors.Is(err, ErrNoRecord) {
		res.Err = err
	}
	c.mu.Lock()
	c.none[domain] = noPolicy{res: res, until: c.cfg.Now().Add(c.cfg.CheckEvery)}
	c.mu.Unlock()
	return res
}

// store makes a fetched policy the domain's, in memory and on disk. A
// failed write is logged: the policy still applies until restart.
func (c *Cache) store(domain, id string, p Policy) *entry {
	now := c.cfg.Now()
	e := &entry{
		file: cacheFile{
			Domain: domain, ID: id, Policy: p.String(), Mode: p.Mode,
			Fetched: now.UTC(), Expires: now.UTC().Add(time.Duration(p.MaxAge) * time.Second),
		},
		policy: p, checked: now,
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.none, domain)
	c.entries[domain] = e
	data, err := json.MarshalIndent(e.file, "", "  ")
	if err == nil {
		err = safeio.WriteFile(c.path(domain), append(data, '\n'), 0o600)
	}
	if err != nil {
		c.log.Warn("MTA-STS: policy not saved; it applies until restart", "domain", domain, "err", err)
	}
	return e
}

func (c *Cache) path(domain string) string { return filepath.Join(c.cfg.Dir, domain+".json") }

func (c *Cache) remove(domain, why string) {
	if err := os.Remove(c.path(domain)); err != nil && !errors.Is(err, os.ErrNotExist) {
		c.log.Warn("MTA-STS: cache file not removed", "domain", domain, "err", err)
		return
	}
	c.log.Info("MTA-STS: cached policy dropped", "domain", domain, "why", why)
}

// startRefreshLocked starts a background refresh of domain unless one
// is running. c.mu is held.
func (c *Cache) startRefreshLocked(domain string) {
	if c.refreshing[domain] {
		return
	}
	c.refreshing[domain] = true
	c.inflight.Add(1)
	go func() {
		defer c.inflight.Done()
		c.slots <- struct{}{}
		c.refresh(domain)
		<-c.slots
		c.mu.Lock()
		delete(c.refreshing, domain)
		c.mu.Unlock()
	}()
}

// refresh checks a cached domain's record and fetches its policy again
// when the id changed (RFC 8461 §3.1), when the policy is a day old, or
// when less than a quarter of its max_age remains. Failures keep the
// cached policy, which applies until it expires (RFC 8461 §5.1); so does
// a record that disappeared (RFC 8461 §8.3: a domain withdraws a policy
// by publishing mode none).
func (c *Cache) refresh(domain string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	id, err := LookupRecord(ctx, c.cfg.Resolver, domain)
	now := c.cfg.Now()
	c.mu.Lock()
	e := c.entries[domain]
	if e == nil {
		c.mu.Unlock()
		return
	}
	e.checked = now
	cached := *e
	c.mu.Unlock()
	if err != nil {
		if !IsNoPolicy(err) {
			c.failed(domain, cached, err)
		}
		return
	}
	left := cached.file.Expires.Sub(now)
	due := id != cached.file.ID || now.Sub(cached.file.Fetched) >= refetchAge ||
		left < time.Duration(cached.policy.MaxAge)*time.Second/4
	if !due {
		return
	}
	p, err := c.cfg.Fetcher.Fetch(ctx, domain)
	if err != nil {
		c.failed(domain, cached, err)
		return
	}
	if id != cached.file.ID {
		c.log.Info("MTA-STS: policy id changed", "domain", domain, "old", cached.file.ID, "new", id)
	}
	c.store(domain, id, p)
}

func (c *Cache) failed(domain string, cached entry, err error) {
	c.log.Warn("MTA-STS: refresh failed; the cached policy applies until it expires",
		"domain", domain, "id", cached.file.ID, "expires", cached.file.Expires, "err", err)
	c.mu.Lock()
	if e := c.entries[domain]; e != nil {
		e.lastErr = err
	}
	c.mu.Unlock()
}

// Run keeps cached policies fresh until ctx ends: every CheckEvery/5 it
// starts a refresh of each domain whose record is due a check, so that
// policies of domains that get no mail for a while are still current
// when mail comes. It returns once running refreshes are done.
func (c *Cache) Run(ctx context.Context) {
	t := time.NewTicker(max(c.cfg.CheckEvery/5, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.inflight.Wait()
			return
		case <-t.C:
		}
		now := c.cfg.Now()
		c.mu.Lock()
		for d, e := range c.entries {
			if now.Sub(e.checked) >= c.cfg.CheckEvery {
				c.startRefreshLocked(d)
			}
		}
		for d, n := range c.none {
			if !now.Before(n.until) {
				delete(c.none, d)
			}
		}
		c.mu.Unlock()
	}
}

// validDomain: a lower-case DNS name of letters, digits and hyphens;
// also what makes <domain>.json a safe file name.
func validDomain(d string) bool {
	return !strings.HasPrefix(d, "*.") && validMXPattern(d)
}
