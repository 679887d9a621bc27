package courier_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// publishedBench is a real Postfix MX for pub.test (mx.pub.test) in a
// DNSSEC-signed zone with DANE-EE records for both its keys and an
// MTA-STS enforce policy served over real HTTPS, the validating unbound
// as resolver: the domain the relay's delivery is measured against with
// and without published policies.
type publishedBench struct {
	res   *mx.Resolver
	ca    *testpeer.CA
	mxp   *testpeer.Postfix
	cache *mtasts.Cache
	fetch *mtasts.Fetcher
}

func startPublishedBench(b *testing.B) *publishedBench {
	b.Helper()
	testpeer.RequirePostfix(b)
	testpeer.RequireSignedDNS(b)
	p := &publishedBench{ca: testpeer.NewCA(b)}
	p.mxp = testpeer.StartPostfix(b, testpeer.PostfixOptions{TLS: testpeer.TLSModern, CA: p.ca, Hostname: "mx.pub.test", Domains: []string{"pub.test"}})
	host := testpeer.StartMTASTSHost(b, p.ca, "pub.test", testpeer.MTASTSPolicy("enforce", 86400, "mx.pub.test"))
	recs := append([]string{"@ IN MX 10 mx", "mx IN A " + p.mxp.IP.String(),
		testpeer.TLSARecord("mx.pub.test", 25, p.mxp.Certs[0].TLSA()), testpeer.TLSARecord("mx.pub.test", 25, p.mxp.Certs[1].TLSA())},
		host.MTASTSRecords("pub.test", "b1")...)
	dns := testpeer.StartSignedDNS(b, testpeer.Zone{Name: "pub.test", Records: recs})
	var err error
	if p.res, err = mx.NewResolver(dns.Addr(), 0); err != nil {
		b.Fatal(err)
	}
	if p.fetch, err = mtasts.NewFetcher(mtasts.FetcherConfig{Resolver: p.res, Roots: p.ca.Pool()}); err != nil {
		b.Fatal(err)
	}
	p.cache = p.newCache(b)
	return p
}

func (p *publishedBench) newCache(b *testing.B) *mtasts.Cache {
	c, err := mtasts.NewCache(mtasts.CacheConfig{Dir: b.TempDir(), Resolver: p.res, Fetcher: p.fetch})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// courier is the relay's courier with published policies on or off; with
// them on, uncached asks the resolver for TLSA at every attempt (dane.Lookup,
// as the relay did before dane.Cache).
func (p *publishedBench) courier(published, uncached bool) *courier.SMTP {
	cfg := courier.Config{
		Hostname: "relay.corp.test", Resolver: p.res, MXPort: 25, RootCAs: p.ca.Pool(),
		Timeouts: smtpclient.DefaultTimeouts(), MaxConnections: 10, MaxPerAddress: 10,
		ConnIdleTime: time.Minute, ConnMaxAge: time.Hour,
		Log: slog.New(slog.DiscardHandler), Now: time.Now,
	}
	switch {
	case published && uncached:
		cfg.DANE = func(ctx context.Context, ad bool, h mx.Host, port int) dane.Host {
			return dane.Lookup(ctx, p.res, ad, h, port)
		}
	case published:
		// As the relay does (pkg/relay/published.go): TLSA answers
		// kept for their TTL, one cache per courier (cold: a new one).
		tlsa := dane.NewCache(p.res, dane.CacheConfig{})
		cfg.DANE = func(ctx context.Context, ad bool, h mx.Host, port int) dane.Host {
			return tlsa.Lookup(ctx, ad, h, port)
		}
	}
	return courier.New(cfg)
}

// group is what the queue manager hands the courier for one recipient of
// pub.test: the list requirement (none) joined with the MTA-STS policy
// from cache, as delivery's published does, or without it.
func (p *publishedBench) group(b *testing.B, cache *mtasts.Cache, published bool) courier.Group {
	pub := policy.Published{Ignored: !published}
	if published {
		res, err := cache.Policy(context.Background(), "pub.test")
		if err != nil || res.Policy == nil {
			b.Fatalf("MTA-STS: %+v %v", res, err)
		}
		pub.STS = &policy.STS{ID: res.ID, Mode: policy.STSMode(res.Policy.Mode), MX: res.Policy.MX}
	}
	return courier.Group{Domain: "pub.test", Req: policy.Combine(policy.Requirement{}, pub),
		Rcpts: []courier.Recipient{{Stored: "u@pub.test", RCPT: smtpclient.Recipient{Addr: "u@pub.test"}}}}
}

var benchMessage = &courier.Message{ID: "bench", From: "bench@corp.test", Body: func() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader("Subject: bench\r\n\r\n" + strings.Repeat("x", 1000) + "\r\n")), nil
}}

func deliverOnce(b *testing.B, c *courier.SMTP, g courier.Group, wantAuth policy.Auth) {
	res := c.Deliver(context.Background(), benchMessage, g)
	if len(res) != 1 || res[0].Kind != courier.Delivered || res[0].Hop.Outcome.Auth != wantAuth {
		b.Fatalf("%+v", res)
	}
}

// BenchmarkDeliverPublished: messages to a domain with DANE and MTA-STS
// enforce, over the courier's cached connection to a real Postfix, with
// published policies (the MTA-STS cache read and the TLSA state from the
// relay's dane.Cache, the session DANE-authenticated), the same with a
// TLSA query at every attempt (uncached: the relay before dane.Cache), and
// without (published policies off, PKIX).
//
// warm: the three couriers have their connection, the MTA-STS cache and
// unbound hold everything; each iteration sends one message with each,
// in an order that rotates, so the shared machine's drift and Postfix's
// warm-up fall on all alike. Reported: ms/msg of each; on/off-% and
// uncached/off-%, the msgs/s with published policies as a share of those
// without (the goal is >= 90), from the total times; and the same from
// the median times (-med), which a scheduling stall of the busy machine
// moves less.
// cold: a fresh MTA-STS cache, a fresh TLSA cache and a new connection
// per message: the first delivery's latency, the policy fetched over
// HTTPS and TLSA asked first.
//
//	sudo go test ./pkg/relay/courier/ -run '^$' -bench DeliverPublished -benchtime 1000x
func BenchmarkDeliverPublished(b *testing.B) {
	p := startPublishedBench(b)
	b.Run("warm", func(b *testing.B) {
		type arm struct {
			c         *courier.SMTP
			published bool
			auth      policy.Auth
			took      []time.Duration
		}
		arms := []*arm{
			{c: p.courier(true, false), published: true, auth: policy.AuthDANE},
			{c: p.courier(true, true), published: true, auth: policy.AuthDANE},
			{c: p.courier(false, false), auth: policy.AuthPKIX},
		}
		for _, a := range arms {
			defer a.c.Shutdown(context.Background())
			deliverOnce(b, a.c, p.group(b, p.cache, a.published), a.auth) // connections, caches
		}
		i := 0
		for b.Loop() {
			for k := range arms {
				a := arms[(i+k)%len(arms)]
				t0 := time.Now()
				deliverOnce(b, a.c, p.group(b, p.cache, a.published), a.auth)
				a.took = append(a.took, time.Since(t0))
			}
			i++
		}
		total := func(a *arm) (t time.Duration) {
			for _, d := range a.took {
				t += d
			}
			return t
		}
		median := func(a *arm) time.Duration {
			s := slices.Clone(a.took)
			slices.Sort(s)
			return s[len(s)/2]
		}
		on, uncached, off := arms[0], arms[1], arms[2]
		n := float64(b.N)
		b.ReportMetric(float64(total(on).Microseconds())/n/1000, "ms/msg-on")
		b.ReportMetric(float64(total(uncached).Microseconds())/n/1000, "ms/msg-uncached")
		b.ReportMetric(float64(total(off).Microseconds())/n/1000, "ms/msg-off")
		b.ReportMetric(100*float64(total(off))/float64(total(on)), "on/off-%")
		b.ReportMetric(100*float64(total(off))/float64(total(uncached)), "uncached/off-%")
		b.ReportMetric(100*float64(median(off))/float64(median(on)), "on/off-%-med")
		b.ReportMetric(100*float64(median(off))/float64(median(uncached)), "uncached/off-%-med")
	})
	for _, published := range []bool{true, false} {
		name, auth := "on", policy.AuthDANE
		if !published {
			name, auth = "off", policy.AuthPKIX
		}
		b.Run("cold/"+name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				cache := p.newCache(b)
				c := p.courier(published, false)
				b.StartTimer()
				deliverOnce(b, c, p.group(b, cache, published), auth)
				b.StopTimer()
				c.Shutdown(context.Background())
				b.StartTimer()
			}
		})
	}
}
