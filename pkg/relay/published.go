package relay

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/relay/delivery"
)

// STSCacheDir is the MTA-STS policy cache's directory in the spool
// (docs/relay-published-policies.md).
const STSCacheDir = "mta-sts"

// publishedPolicies gives the queue manager what partner domains publish
// (docs/relay-published-policies.md): the MTA-STS policy cache beside the
// spool, its fetcher over the relay's resolver with the system roots plus
// ca-file, and DANE lookups over the same resolver, their TLSA answers
// kept for their DNS TTL (at most an hour: dane.Cache). With
// published-policies off nothing is looked up or fetched (the setting is
// for labs and emergencies: a hanging policy host or a broken DNSSEC
// chain among them); what the cache already holds is still read, so the
// audit can name a policy it ignores.
func (r *Relay) publishedPolicies(dcfg *delivery.Config, res *mx.Resolver, roots *x509.CertPool) error {
	f, err := mtasts.NewFetcher(mtasts.FetcherConfig{Resolver: res, Roots: roots})
	if err != nil {
		return fmt.Errorf("mta-sts: %w", err)
	}
	r.sts, err = mtasts.NewCache(mtasts.CacheConfig{
		Dir:      filepath.Join(r.cfg.Spool, STSCacheDir),
		Resolver: res,
		Fetcher:  f,
		Logger:   r.log.With("part", "mta-sts"),
	})
	if err != nil {
		return fmt.Errorf("mta-sts cache: %w", err)
	}
	dcfg.MTASTS = r.sts.Policy
	if dcfg.IgnorePublished = !r.cfg.PublishedPolicies; dcfg.IgnorePublished {
		dcfg.MTASTS = func(_ context.Context, domain string) (mtasts.Result, error) {
			res, _ := r.sts.Cached(domain)
			return res, nil
		}
	}
	tlsa := dane.NewCache(res, dane.CacheConfig{})
	dcfg.DANE = func(ctx context.Context, mxAuthentic bool, h mx.Host, port int) dane.Host {
		return tlsa.Lookup(ctx, mxAuthentic, h, port)
	}
	return nil
}
