// Package deep enumerates the TLS versions and cipher suites a server
// accepts, including those crypto/tls cannot negotiate (DHE, CAMELLIA,
// ARIA, SEED, DES, export, anonymous, NULL), by sending hand-built
// ClientHellos and reading only the ServerHello or the alert, as
// testssl.sh does — but concurrently.
//
// Strategy, per protocol version: one hello offers every candidate suite;
// a refusal means the version is not accepted (one connection). Otherwise
// the suite the server picked is recorded and removed, and the rest is
// dealt round-robin into groups that are enumerated in parallel, each by
// the same offer-and-remove loop until the server refuses. That is
// testssl.sh's own socket method (run_allciphers: offer many, drop the
// one chosen) and costs accepted+groups+1 connections per version instead
// of one per suite: ~130 suites × 5 versions one at a time would be ~650
// SMTP sessions per host, which is slow and trips connection-rate limits
// (Postfix anvil, postscreen). Binary search over groups costs more round
// trips than this whenever a server accepts more than a few suites.
//
// The judgment of what is enough stays in pkg/policy; this package only
// reports what was accepted, with policy.CipherBits for the strength.
package deep

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Dial opens a connection on which the next bytes written are the
// ClientHello: raw TCP to a TLS port, or an SMTP session that has just
// received "220" to STARTTLS (see STARTTLS).
type Dial func(ctx context.Context) (net.Conn, error)

// Options tune an enumeration. The zero value is usable.
type Options struct {
	// ServerName is sent as SNI (omitted when empty or an IP literal).
	ServerName string
	// Timeout bounds each connection: dial, preamble, hello, reply.
	// Default 10s.
	Timeout time.Duration
	// Concurrency bounds simultaneous connections to the host. Default 8.
	Concurrency int
	// Groups is how many suite groups of one version run in parallel.
	// Default 4.
	Groups int
	// Versions to enumerate; default SSLv3, TLS 1.0, 1.1, 1.2, 1.3.
	Versions []uint16
	// RelayConfig is the relay's client TLS config; default
	// smtpclient.RelayOffer(), the offer the relay itself sends.
	RelayConfig *tls.Config
	// Rand supplies hello randoms and key shares; default crypto/rand.
	Rand io.Reader
}

// Suite is one accepted (version, cipher suite) pair.
type Suite struct {
	ID      uint16
	Name    string
	Bits    int
	Version uint16
}

func newSuite(id, version uint16) Suite {
	return Suite{ID: id, Name: policy.SuiteName(id), Bits: policy.CipherBits(id), Version: version}
}

func (s Suite) String() string {
	return fmt.Sprintf("%s %s (%d bits)", policy.VersionName(s.Version), s.Name, s.Bits)
}

// MarshalJSON writes the documented schema (docs/probe-deep-hops.md).
func (s Suite) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Bits    int    `json:"bits"`
		Version string `json:"version"`
	}{fmt.Sprintf("0x%04x", s.ID), s.Name, s.Bits, policy.VersionNumber(policy.VersionName(s.Version))})
}

// VersionResult is what one protocol version turned out to allow.
type VersionResult struct {
	Version  uint16
	Accepted bool
	// Suites in the order they were found. With server preference and
	// Groups=1 that is the server's order.
	Suites []Suite
	// Refusal says how the server declined the version: an alert name,
	// "connection closed", or the lower version it answered with.
	Refusal string
}

// MarshalJSON writes the documented schema.
func (v VersionResult) MarshalJSON() ([]byte, error) {
	suites := v.Suites
	if suites == nil {
		suites = []Suite{}
	}
	return json.Marshal(struct {
		Version  string  `json:"version"`
		Accepted bool    `json:"accepted"`
		Suites   []Suite `json:"suites"`
		Refusal  string  `json:"refusal,omitempty"`
	}{policy.VersionNumber(policy.VersionName(v.Version)), v.Accepted, suites, v.Refusal})
}

// Negotiation is what the server chose from one particular client offer.
type Negotiation struct {
	Accepted   bool   `json:"accepted"`
	Suite      *Suite `json:"suite,omitempty"`
	HelloRetry bool   `json:"hello_retry,omitempty"`
	Refusal    string `json:"refusal,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Preference says whose cipher order decides.
type Preference string

const (
	PreferServer  Preference = "server"
	PreferClient  Preference = "client"
	PreferUnknown Preference = "unknown"
)

// Report is the result of one enumeration of one host.
type Report struct {
	Versions []VersionResult `json:"versions"`
	// Weakest and Strongest accepted suites over all versions (fewest
	// bits, then oldest version; most bits, then newest version; then the
	// lowest suite ID).
	Weakest   *Suite `json:"weakest,omitempty"`
	Strongest *Suite `json:"strongest,omitempty"`
	// Preference is detected by offering the same accepted suites in two
	// opposite orders at PreferenceVersion.
	Preference        Preference `json:"server_preference"`
	PreferenceVersion uint16     `json:"-"`
	// OpenSSLDefault: the server's choice for a default OpenSSL 3.0
	// client (OpenSSLDefaultSuites). Relay: for smgctl's relay offer.
	OpenSSLDefault Negotiation `json:"openssl_default"`
	Relay          Negotiation `json:"relay"`
	// Connections made, and how long it all took.
	Connections int           `json:"connections"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	// Errors are probes that neither got an answer nor a refusal
	// (timeouts, dial failures, protocol violations). When not empty the
	// lists above may be incomplete.
	Errors []string `json:"errors,omitempty"`
}

// Complete reports whether every probe got an answer.
func (r *Report) Complete() bool { return len(r.Errors) == 0 }

// Accepted returns every accepted suite, oldest version first.
func (r *Report) Accepted() []Suite {
	var all []Suite
	for _, v := range r.Versions {
		all = append(all, v.Suites...)
	}
	return all
}

// WeakAccepted names the accepted suites no sender should use, each once
// with its bits, weakest first: NULL (no encryption), export grade, DES,
// RC4 (RFC 7465 forbids it), or fewer than policy.DefaultBits bits
// (RFC 9325 §4.1). smgctl probe lists them as a risk.
func (r *Report) WeakAccepted() []string {
	seen := map[uint16]bool{}
	var weak []Suite
	for _, s := range r.Accepted() {
		if seen[s.ID] || !weakSuite(s) {
			continue
		}
		seen[s.ID] = true
		weak = append(weak, s)
	}
	slices.SortStableFunc(weak, func(a, b Suite) int { return a.Bits - b.Bits })
	names := make([]string, len(weak))
	for i, s := range weak {
		names[i] = fmt.Sprintf("%s (%d bits)", s.Name, s.Bits)
	}
	return names
}

func weakSuite(s Suite) bool {
	if s.Bits < policy.DefaultBits {
		return true
	}
	for _, bad := range []string{"_NULL_", "_EXPORT", "_DES_", "_DES40_", "_RC4_"} {
		if strings.Contains(s.Name+"_", bad) {
			return true
		}
	}
	return false
}

// Version returns the result for version v.
func (r *Report) Version(v uint16) (VersionResult, bool) {
	for _, vr := range r.Versions {
		if vr.Version == v {
			return vr, true
		}
	}
	return VersionResult{}, false
}

// candidates returns the suites worth offering at version v, in the
// table's order: TLS 1.3 suites only in TLS 1.3 (RFC 8446 §B.4) and
// never in older versions; TLS_NULL_WITH_NULL_NULL never (no server may
// select it, RFC 5246 §A.5).
func candidates(v uint16) []uint16 {
	var ids []uint16
	for _, s := range policy.Suites() {
		if s.ID == 0x0000 || s.TLS13 != (v == VersionTLS13) {
			continue
		}
		ids = append(ids, s.ID)
	}
	return ids
}

// spec builds the hello for offering suites at exactly version v.
func spec(v uint16, suites []uint16, serverName string) helloSpec {
	if v == VersionTLS13 {
		return helloSpec{legacyVersion: VersionTLS12, versions: []uint16{VersionTLS13}, suites: suites, serverName: serverName}
	}
	return helloSpec{legacyVersion: v, suites: suites, serverName: serverName}
}

// enumerator holds one run's shared state.
type enumerator struct {
	dial Dial
	opts Options
	log  *slog.Logger

	mu          sync.Mutex
	connections int
	errors      []string
}

func (e *enumerator) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.log.Debug("deep probe error", "error", msg)
	e.mu.Lock()
	e.errors = append(e.errors, msg)
	e.mu.Unlock()
}

// offer sends one hello and returns the server's answer.
func (e *enumerator) offer(ctx context.Context, hs helloSpec) (reply, error) {
	hello, err := buildClientHello(hs, e.opts.Rand)
	if err != nil {
		return reply{}, err
	}
	return e.send(ctx, hello)
}

func (e *enumerator) send(ctx context.Context, hello []byte) (reply, error) {
	e.mu.Lock()
	e.connections++
	e.mu.Unlock()
	r, err := exchange(ctx, e.dial, e.opts.Timeout, hello)
	if err == nil && r.hello != nil {
		e.log.Debug("deep probe accepted", "version", policy.VersionName(r.hello.Version), "suite", policy.SuiteName(r.hello.CipherSuite))
	}
	return r, err
}

// pick interprets a reply to an offer of suites at version v. ok is
// false for a refusal; refusal then says how.
func pick(r reply, v uint16, offered []uint16) (s Suite, hrr bool, refusal string, err error) {
	switch {
	case r.alert != nil:
		return Suite{}, false, r.alert.String(), nil
	case r.hello == nil:
		return Suite{}, false, "connection closed", nil
	}
	sh := r.hello
	if sh.Version < v {
		// RFC 5246 §E.1: the server answers with the highest version
		// it supports below ours — ours is not accepted.
		return Suite{}, false, "server answered with " + policy.VersionName(sh.Version), nil
	}
	if sh.Version > v {
		return Suite{}, false, "", fmt.Errorf("server answered %s to a %s hello", policy.VersionName(sh.Version), policy.VersionName(v))
	}
	if !slices.Contains(offered, sh.CipherSuite) {
		return Suite{}, false, "", fmt.Errorf("server chose %s (0x%04x), which was not offered", policy.SuiteName(sh.CipherSuite), sh.CipherSuite)
	}
	if sh.Compression != 0 {
		// We offered only null compression (RFC 5246 §7.4.1.3).
		return Suite{}, false, "", fmt.Errorf("server chose compression method %d, which was not offered", sh.Compression)
	}
	return newSuite(sh.CipherSuite, v), sh.HelloRetry, "", nil
}

// drain runs the offer-and-remove loop over offered at version v and
// returns what it found, in order.
func (e *enumerator) drain(ctx context.Context, v uint16, offered []uint16) []Suite {
	var found []Suite
	rest := slices.Clone(offered)
	for len(rest) > 0 && ctx.Err() == nil {
		r, err := e.offer(ctx, spec(v, rest, e.opts.ServerName))
		if err != nil {
			e.fail("%s, %d suites offered: %v", policy.VersionName(v), len(rest), err)
			return found
		}
		s, _, refusal, err := pick(r, v, rest)
		if err != nil {
			e.fail("%s: %v", policy.VersionName(v), err)
			return found
		}
		if refusal != "" {
			return found
		}
		found = append(found, s)
		rest = slices.DeleteFunc(rest, func(id uint16) bool { return id == s.ID })
	}
	return found
}

// negotiate sends hello and reports the server's choice.
func (e *enumerator) negotiate(ctx context.Context, hello []byte, versions []uint16, offered []uint16) Negotiation {
	r, err := e.send(ctx, hello)
	if err != nil {
		return Negotiation{Error: err.Error()}
	}
	if r.alert != nil {
		return Negotiation{Refusal: r.alert.String()}
	}
	if r.hello == nil {
		return Negotiation{Refusal: "connection closed"}
	}
	sh := r.hello
	if !slices.Contains(versions, sh.Version) {
		return Negotiation{Error: fmt.Sprintf("server chose %s, which was not offered", policy.VersionName(sh.Version))}
	}
	if offered != nil && !slices.Contains(offered, sh.CipherSuite) {
		return Negotiation{Error: fmt.Sprintf("server chose %s (0x%04x), which was not offered", policy.SuiteName(sh.CipherSuite), sh.CipherSuite)}
	}
	s := newSuite(sh.CipherSuite, sh.Version)
	return Negotiation{Accepted: true, Suite: &s, HelloRetry: sh.HelloRetry}
}

// Enumerate probes one host through dial. It returns an error only when
// ctx ends or the options are unusable; per-probe failures are in
// Report.Errors.
func Enumerate(ctx context.Context, dial Dial, opts Options, log *slog.Logger) (*Report, error) {
	start := time.Now()
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Groups <= 0 {
		opts.Groups = 4
	}
	if len(opts.Versions) == 0 {
		opts.Versions = allVersions
	}
	if opts.RelayConfig == nil {
		opts.RelayConfig = smtpclient.RelayOffer()
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, v := range opts.Versions {
		if v < VersionSSL30 || v > VersionTLS13 {
			return nil, fmt.Errorf("deep: unknown protocol version 0x%04x", v)
		}
	}
	e := &enumerator{dial: dial, opts: opts, log: log}
	rep := &Report{Preference: PreferUnknown}

	relayHello, err := goClientHello(opts.RelayConfig, opts.ServerName)
	if err != nil {
		return nil, err
	}
	sslHello, err := buildClientHello(helloSpec{
		legacyVersion: VersionTLS12, versions: openSSLDefaultVersions,
		suites: OpenSSLDefaultSuites, serverName: opts.ServerName,
	}, opts.Rand)
	if err != nil {
		return nil, err
	}

	// Phase 1: is each version accepted at all? One hello each, plus the
	// two "what would this client get" offers, all at once.
	results := make([]VersionResult, len(opts.Versions))
	var g errgroup.Group
	g.SetLimit(opts.Concurrency)
	for i, v := range opts.Versions {
		results[i].Version = v
		g.Go(func() error {
			offered := candidates(v)
			r, err := e.offer(ctx, spec(v, offered, opts.ServerName))
			if err != nil {
				e.fail("%s, %d suites offered: %v", policy.VersionName(v), len(offered), err)
				return nil
			}
			s, _, refusal, err := pick(r, v, offered)
			switch {
			case err != nil:
				e.fail("%s: %v", policy.VersionName(v), err)
			case refusal != "":
				results[i].Refusal = refusal
			default:
				results[i].Accepted = true
				results[i].Suites = []Suite{s}
			}
			return nil
		})
	}
	g.Go(func() error {
		rep.OpenSSLDefault = e.negotiate(ctx, sslHello, openSSLDefaultVersions, OpenSSLDefaultSuites)
		return nil
	})
	g.Go(func() error {
		rep.Relay = e.negotiate(ctx, relayHello, []uint16{VersionTLS10, VersionTLS11, VersionTLS12, VersionTLS13}, nil)
		return nil
	})
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// Phase 2: for each accepted version, drain the remaining suites in
	// parallel groups.
	type lane struct {
		i     int
		found []Suite
	}
	var lanes []*lane
	for i := range results {
		if !results[i].Accepted {
			continue
		}
		rest := slices.DeleteFunc(candidates(results[i].Version), func(id uint16) bool { return id == results[i].Suites[0].ID })
		groups := make([][]uint16, min(opts.Groups, len(rest)))
		for j, id := range rest {
			groups[j%len(groups)] = append(groups[j%len(groups)], id)
		}
		for _, grp := range groups {
			l := &lane{i: i}
			lanes = append(lanes, l)
			v := results[i].Version
			g.Go(func() error {
				l.found = e.drain(ctx, v, grp)
				return nil
			})
		}
	}
	g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, l := range lanes {
		results[l.i].Suites = append(results[l.i].Suites, l.found...)
	}
	rep.Versions = results

	// Phase 3: whose order wins? Offer the accepted suites of the newest
	// version with at least two, in two opposite orders: the same choice
	// both times means the server decides; the first of each list means
	// the client does (RFC 5246 §7.4.1.2 leaves it to the server).
	for i := len(results) - 1; i >= 0; i-- {
		if len(results[i].Suites) < 2 {
			continue
		}
		v := results[i].Version
		fwd := make([]uint16, 0, len(results[i].Suites))
		for _, s := range results[i].Suites {
			fwd = append(fwd, s.ID)
		}
		rev := slices.Clone(fwd)
		slices.Reverse(rev)
		var a, b Suite
		var errA, errB error
		var pg errgroup.Group
		pg.SetLimit(opts.Concurrency)
		try := func(offered []uint16, out *Suite, outErr *error) func() error {
			return func() error {
				r, err := e.offer(ctx, spec(v, offered, opts.ServerName))
				if err == nil {
					var refusal string
					*out, _, refusal, err = pick(r, v, offered)
					if err == nil && refusal != "" {
						err = fmt.Errorf("refused an offer of suites it accepted before: %s", refusal)
					}
				}
				*outErr = err
				return nil
			}
		}
		pg.Go(try(fwd, &a, &errA))
		pg.Go(try(rev, &b, &errB))
		pg.Wait()
		rep.PreferenceVersion = v
		switch {
		case errA != nil || errB != nil:
			e.fail("%s preference: %v", policy.VersionName(v), firstErr(errA, errB))
		case a.ID == b.ID:
			rep.Preference = PreferServer
		case a.ID == fwd[0] && b.ID == rev[0]:
			rep.Preference = PreferClient
		}
		break
	}

	// Ties are broken by version, then by suite ID, so a report does not
	// depend on which lane finished first.
	for _, s := range rep.Accepted() {
		if w := rep.Weakest; w == nil || s.Bits < w.Bits || s.Bits == w.Bits && (s.Version < w.Version || s.Version == w.Version && s.ID < w.ID) {
			c := s
			rep.Weakest = &c
		}
		if st := rep.Strongest; st == nil || s.Bits > st.Bits || s.Bits == st.Bits && (s.Version > st.Version || s.Version == st.Version && s.ID < st.ID) {
			c := s
			rep.Strongest = &c
		}
	}
	rep.Connections = e.connections
	rep.Errors = e.errors
	rep.Elapsed = time.Since(start)
	return rep, ctx.Err()
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
