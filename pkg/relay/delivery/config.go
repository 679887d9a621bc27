// Package delivery is the relay's queue manager (Postfix's qmgr): it
// takes spooled messages, decides which is tried when (concurrency,
// holds, backoff, the delay and expiry timers), groups each message's
// recipients by destination and policy requirement, hands every group to
// a Courier for one attempt, and records the per-recipient outcomes —
// delivered, deferred with backoff, bounced with an RFC 3464 DSN — in one
// place, (*message).record: the audit log first, then the spool.
//
// The SMTP attempt itself (hops, TLS, policy verdicts, the connection
// cache) is pkg/relay/courier's.
package delivery

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Resolver finds a domain's MX hosts; *mx.Resolver is one. The queue
// manager passes it on to the courier, so it is the courier's type.
type Resolver = courier.Resolver

// Courier makes one delivery attempt for one group of a message (one
// domain, one requirement) and returns one Result per recipient of g, in
// g.Rcpts order; a recipient with no Result stays due. The runner only
// schedules and records: *courier.SMTP is the relay's courier, tests may
// put another in Config.Courier.
type Courier interface {
	Deliver(ctx context.Context, m *courier.Message, g courier.Group) []courier.Result
	// Reap closes idle connections past their time; Run calls it about
	// twice per ConnIdleTime.
	Reap(ctx context.Context)
	// Shutdown closes idle connections once Run stops; connections still
	// in use close when their attempt ends.
	Shutdown(ctx context.Context)
}

// Recorder takes audit records; *audit.Log is one.
type Recorder interface {
	Write(recs ...audit.Record) error
}

// Config is what the runner needs. Zero durations and limits take the
// defaults below.
type Config struct {
	Spool *spool.Spool
	// Policy returns the policy in force; it is called once per message
	// attempt, so a reload applies to the next attempt.
	Policy   func() *policy.Policy
	Resolver Resolver
	Audit    Recorder
	// Hold, when set and returning an error, keeps new attempts from
	// starting (the audit log cannot be written: no delivery without its
	// record); the runner looks again every HoldPoll.
	Hold func() error
	Log  *slog.Logger
	// Health is where the runner reports spool writes failing ("spool");
	// nil is fine.
	Health *health.Board

	// Hostname is the EHLO name and the DSNs' Reporting-MTA.
	Hostname string
	// PolicyFile names the policy file in DSNs ("policy.conf line 3"),
	// so the sender's administrator finds the entry; "" says "policy".
	PolicyFile string
	// MaxReturn caps the message a DSN returns for RET=FULL; a larger
	// one gets its headers only. Default DefaultMaxReturn.
	MaxReturn int64
	// RootCAs verify peers for verify=cert; nil means the system roots.
	RootCAs *x509.CertPool
	// Routes send a domain (and its subdomains) to a fixed host:port
	// without an MX lookup, like Postfix's transport map. Keys are lower
	// case domains.
	Routes map[string]string
	// MXPort replaces port 25 for MX hosts, for labs.
	MXPort   int
	Timeouts smtpclient.Timeouts

	// MTASTS returns a domain's MTA-STS policy for delivery now (the
	// relay's mtasts.Cache.Policy); nil: MTA-STS is not looked up.
	MTASTS func(ctx context.Context, domain string) (mtasts.Result, error)
	// DANE looks up an MX host's TLSA records (dane.Lookup); nil: DANE
	// is not looked up.
	DANE courier.DANELookup
	// IgnorePublished: the relay's published-policies setting is off;
	// MTA-STS and DANE are not applied and the audit says so.
	IgnorePublished bool

	// QueueLifetime: after this long a message's undelivered recipients
	// are returned (RFC 3463 4.4.7). Default 5 days, as Postfix.
	QueueLifetime time.Duration
	// DelayWarning: a "delayed" DSN goes to the sender once a message has
	// waited this long. Default 4 hours; negative disables it.
	DelayWarning time.Duration
	// Backoff is the wait after the 1st, 2nd, ... failed attempt; the
	// last value repeats. Default DefaultBackoff.
	Backoff []time.Duration
	// Jitter spreads each retry over ±Jitter of its backoff (0.1: a 1h
	// wait becomes 54–66 min), so messages deferred together by one
	// failing destination do not all come back in the same second.
	// Default 0.1; negative disables it.
	Jitter float64
	// ScanInterval is how often the spool is read again for messages the
	// runner was not told about (queue commands, other writers).
	ScanInterval time.Duration
	// MaxMessages bounds messages worked on at once; MaxConnections the
	// outbound SMTP connections, busy or idle; MaxPerDestination both the
	// transactions in flight to one domain (or route) and the connections
	// to one MX address (IP:port), so a provider hosting many domains is
	// not flooded either.
	MaxMessages       int
	MaxConnections    int
	MaxPerDestination int
	// ConnIdleTime is how long an idle connection waits for the next
	// transaction to its MX; ConnMaxAge how long one connection may be
	// reused at all. Defaults courier.DefaultConnIdleTime,
	// courier.DefaultConnMaxAge.
	ConnIdleTime time.Duration
	ConnMaxAge   time.Duration
	// Courier replaces the SMTP courier built from the fields above
	// (Resolver, Routes, MXPort, RootCAs, Timeouts, the connection
	// limits); nil builds it.
	Courier Courier
	// DrainTimeout bounds how long Run waits for in-flight deliveries
	// after its context ends before it interrupts them.
	DrainTimeout time.Duration

	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultBackoff retries soon after the first failure and then less often
// (RFC 5321 §4.5.4.1: at least 30 minutes between retries of a failing
// destination is the usual advice; the first retries are quicker so a
// greylisting peer costs minutes, not hours).
var DefaultBackoff = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour,
}

// Defaults.
const (
	DefaultQueueLifetime     = 5 * 24 * time.Hour
	DefaultDelayWarning      = 4 * time.Hour
	DefaultScanInterval      = 30 * time.Second
	DefaultMaxMessages       = 128
	DefaultMaxConnections    = 100 // Postfix default_process_limit
	DefaultMaxPerDestination = 20  // Postfix default_destination_concurrency_limit
	DefaultDrainTimeout      = 30 * time.Second
	// DefaultMaxReturn: a DSN with more than 10 MiB of returned message
	// would itself be refused by many servers; the headers say enough.
	DefaultMaxReturn = 10 << 20
)

func (c *Config) withDefaults() error {
	if c.Spool == nil || c.Policy == nil {
		return fmt.Errorf("delivery: Spool and Policy are required")
	}
	if c.Resolver == nil && len(c.Routes) == 0 && c.Courier == nil {
		return fmt.Errorf("delivery: a Resolver (or static routes) is required")
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.MXPort == 0 {
		c.MXPort = 25
	}
	if c.MaxReturn <= 0 {
		c.MaxReturn = DefaultMaxReturn
	}
	if c.QueueLifetime <= 0 {
		c.QueueLifetime = DefaultQueueLifetime
	}
	if c.DelayWarning == 0 {
		c.DelayWarning = DefaultDelayWarning
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.ScanInterval <= 0 {
		c.ScanInterval = DefaultScanInterval
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxPerDestination <= 0 {
		c.MaxPerDestination = DefaultMaxPerDestination
	}
	if c.ConnIdleTime <= 0 {
		c.ConnIdleTime = courier.DefaultConnIdleTime
	}
	if c.ConnMaxAge <= 0 {
		c.ConnMaxAge = courier.DefaultConnMaxAge
	}
	if c.Jitter == 0 {
		c.Jitter = 0.1
	}
	c.Jitter = min(c.Jitter, 0.5)
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	routes := make(map[string]string, len(c.Routes))
	for d, hp := range c.Routes {
		if err := checkRoute(hp); err != nil {
			return fmt.Errorf("delivery: route %s: %w", d, err)
		}
		routes[strings.ToLower(strings.TrimSuffix(d, "."))] = hp
	}
	c.Routes = routes
	return nil
}

func checkRoute(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return err
	}
	if host == "" {
		return fmt.Errorf("%q: no host", hp)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: bad port", hp)
	}
	return nil
}

// ParseRoute reads "domain=host:port" as given to --route.
func ParseRoute(s string) (domain, hostport string, err error) {
	d, hp, ok := strings.Cut(s, "=")
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	hp = strings.TrimSpace(hp)
	if !ok || d == "" {
		return "", "", fmt.Errorf("route %q: want DOMAIN=HOST:PORT", s)
	}
	d, err = policy.NormalizeDomain(d)
	if err != nil {
		return "", "", fmt.Errorf("route %q: %v", s, err)
	}
	if err := checkRoute(hp); err != nil {
		return "", "", fmt.Errorf("route %q: %v", s, err)
	}
	return d, hp, nil
}

// backoff is the wait after the n-th failed attempt (n ≥ 1).
func (c *Config) backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	if n > len(c.Backoff) {
		n = len(c.Backoff)
	}
	d := c.Backoff[n-1]
	if c.Jitter > 0 {
		d += time.Duration((rand.Float64()*2 - 1) * c.Jitter * float64(d))
	}
	return d
}
