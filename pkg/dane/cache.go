package dane

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/mx"
)

// Cache defaults.
const (
	// DefaultCacheMaxTTL caps how long an answer is kept, whatever its
	// TTL: a partner's key rollover, timed by its TTLs, is seen within
	// the hour even if a resolver or a record states a longer one.
	DefaultCacheMaxTTL = time.Hour
	// DefaultCacheSize bounds the number of MX hosts kept.
	DefaultCacheSize = 10000
)

// Cache is Lookup with the TLSA answers kept for their DNS TTL (capped by
// MaxTTL), so that a relay sending many messages to one domain does not
// ask its resolver for the same TLSA RRset at every attempt. Only the
// TLSA part is cached: whether DANE applies at all (MX RRset and address
// records authentic, mxAuthentic and host.AD) is decided at every call
// from the arguments, as Lookup does, and a cached state is used only for
// the same host name, CNAME-expanded name and port. A failed lookup
// (StateFailed) is never kept: the next attempt asks again. Safe for
// concurrent use.
type Cache struct {
	res    *mx.Resolver
	maxTTL time.Duration
	size   int
	now    func() time.Time

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

// CacheConfig configures NewCache; zero fields take the defaults.
type CacheConfig struct {
	MaxTTL time.Duration    // DefaultCacheMaxTTL
	Size   int              // DefaultCacheSize
	Now    func() time.Time // time.Now
}

type cacheKey struct {
	name, canonical string
	port            int
}

type cacheEntry struct {
	host    Host // Names not set: they come from the call
	expires time.Time
}

// NewCache returns a cache asking r.
func NewCache(r *mx.Resolver, cfg CacheConfig) *Cache {
	c := &Cache{res: r, maxTTL: cfg.MaxTTL, size: cfg.Size, now: cfg.Now, entries: map[cacheKey]cacheEntry{}}
	if c.maxTTL <= 0 {
		c.maxTTL = DefaultCacheMaxTTL
	}
	if c.size <= 0 {
		c.size = DefaultCacheSize
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Lookup is Lookup (the package function) answered from the cache when
// it holds an unexpired state for host and port.
func (c *Cache) Lookup(ctx context.Context, mxAuthentic bool, host mx.Host, port int) Host {
	out, ok := gate(mxAuthentic, host, port)
	if !ok {
		return out
	}
	key := cacheKey{host.Name, host.Canonical, port}
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[key]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		h := e.host
		h.Names = out.Names
		h.Records = slices.Clone(h.Records)
		return h
	}
	h, ttl := lookupTLSA(ctx, c.res, out, port)
	if h.State == StateFailed || ttl <= 0 {
		return h
	}
	e = cacheEntry{host: h, expires: now.Add(min(ttl, c.maxTTL))}
	e.host.Names, e.host.Records = nil, slices.Clone(h.Records)
	c.mu.Lock()
	c.put(key, e, now)
	c.mu.Unlock()
	return h
}

// put stores e; when the cache is full it first drops the expired
// entries, then, if none had expired, the one that expires first.
// c.mu is held.
func (c *Cache) put(key cacheKey, e cacheEntry, now time.Time) {
	if _, ok := c.entries[key]; !ok && len(c.entries) >= c.size {
		var first cacheKey
		var firstExp time.Time
		for k, v := range c.entries {
			if !now.Before(v.expires) {
				delete(c.entries, k)
			} else if firstExp.IsZero() || v.expires.Before(firstExp) {
				first, firstExp = k, v.expires
			}
		}
		if len(c.entries) >= c.size {
			delete(c.entries, first)
		}
	}
	c.entries[key] = e
}

// Len is the number of entries held, expired ones included until they
// are swept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
