// Package mx resolves where mail for a domain goes: MX records sorted by
// preference (RFC 5321 §5.1), the implicit MX, the null MX (RFC 7505), the
// A/AAAA addresses of every host, and the TXT and TLSA records that
// MTA-STS, TLS-RPT and DANE need. Every failure is an *Error that names the
// step and the name and says whether it is temporary.
package mx

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/smgctl/smgctl/pkg/address"
)

// DefaultTimeout bounds one DNS query (one server, one attempt).
const DefaultTimeout = 5 * time.Second

// maxCNAME bounds a CNAME chain; resolvers use similar limits (BIND: 16,
// Unbound: 11). Mail names longer than this are broken, not clever.
const maxCNAME = 8

// attempts per server: one retry covers a lost UDP datagram.
const attempts = 2

// Resolver asks one or more recursive resolvers. It is safe for
// concurrent use and holds no state between lookups.
type Resolver struct {
	servers []string // host:port
	timeout time.Duration
	// trustAD: the AD bit is believed only from a resolver on loopback,
	// where no one can forge it on the path (RFC 7672 §1.3, RFC 6698
	// §4.1, RFC 6840 §5.7 "the stub resolver trusts the path"), or from
	// one the operator vouches for (WithTrustedAD).
	trustAD bool
	udp     *dns.Client
	tcp     *dns.Client
	log     *slog.Logger
}

// NewResolver returns a resolver asking server ("host:port", or a bare
// host for port 53). server "" means the nameservers of /etc/resolv.conf.
// timeout bounds one query; 0 means DefaultTimeout.
func NewResolver(server string, timeout time.Duration) (*Resolver, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var servers []string
	if server == "" {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("reading the system resolver configuration: %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("no nameserver in /etc/resolv.conf")
		}
	} else {
		if _, _, err := net.SplitHostPort(server); err != nil {
			server = net.JoinHostPort(strings.Trim(server, "[]"), "53")
		}
		host, port, err := net.SplitHostPort(server)
		if err != nil {
			return nil, fmt.Errorf("resolver %q: %v", server, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return nil, fmt.Errorf("resolver %q: bad port %q", server, port)
		}
		if _, err := netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("resolver %q: want an IP address and port", server)
		}
		servers = []string{server}
	}
	return &Resolver{
		servers: servers,
		timeout: timeout,
		trustAD: loopbackOnly(servers),
		udp:     &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232},
		tcp:     &dns.Client{Net: "tcp", Timeout: timeout},
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, nil
}

// WithLogger returns a copy of r that logs each query at debug level.
func (r *Resolver) WithLogger(l *slog.Logger) *Resolver {
	c := *r
	c.log = l
	return &c
}

// WithTrustedAD returns a copy of r that believes the AD bit of every
// configured resolver when trusted is true: the operator says the path
// to it is secure (a resolver on the same host behind a non-loopback
// address, an IPsec or private link; RFC 6840 §5.7). false restores the
// default: AD is believed only when every resolver is on loopback.
func (r *Resolver) WithTrustedAD(trusted bool) *Resolver {
	c := *r
	c.trustAD = trusted || loopbackOnly(r.servers)
	return &c
}

// loopbackOnly reports whether every server is a loopback address.
func loopbackOnly(servers []string) bool {
	trust := true
	for _, s := range servers {
		host, _, _ := net.SplitHostPort(s)
		a, err := netip.ParseAddr(host)
		trust = trust && err == nil && a.IsLoopback()
	}
	return trust
}

// Servers returns the resolvers asked, in order.
func (r *Resolver) Servers() []string { return slices.Clone(r.servers) }

// TrustsAD reports whether the AD bit of answers is believed.
func (r *Resolver) TrustsAD() bool { return r.trustAD }

// Host is one MX host and its addresses.
type Host struct {
	Name       string // lower case, no trailing dot
	Preference uint16
	// Addrs: IPv4 first, then IPv6, each in answer order.
	Addrs []netip.Addr
	// Err is set when no address could be found: an *Error wrapping
	// ErrNoAddress (NODATA for both types), or the A/AAAA failure.
	Err error
	// Canonical is Name after CNAMEs: the owner of the address records
	// (RFC 7672 §2.2.2 looks for TLSA records there first).
	Canonical string
	// AD: the address records (and any CNAMEs to them) came with a
	// trusted AD bit, so they are DNSSEC-authentic and the host's TLSA
	// records may be asked for (RFC 7672 §2.2.2). An answer that failed
	// adds no address and does not count.
	AD bool
}

// Result is where mail for a domain goes.
type Result struct {
	Domain string // as asked, lower case, no trailing dot
	// Name is Domain after CNAMEs (RFC 5321 §5.1: the canonical name is
	// processed as if it were the initial name).
	Name string
	// Implicit: no MX records, so the domain itself is the one host with
	// preference 0 (RFC 5321 §5.1).
	Implicit bool
	// NullMX: the domain accepts no mail (RFC 7505); Hosts is empty.
	NullMX bool
	// Hosts in the order to try: ascending preference, equal preferences
	// shuffled (RFC 5321 §5.1 "SHOULD ... randomize").
	Hosts []Host
	// AD: every answer on the way to the MX RRset (or to its absence,
	// for an implicit MX) carried a trusted AD bit: DANE may apply to the
	// hosts (RFC 7672 §2.2.1). False when the resolver is not trusted.
	AD bool
}

// NoAddress says, when no host of r has an address, whether every host's
// lookup failed permanently (NXDOMAIN, or a name without A/AAAA records),
// and the last host's error. Permanent: the domain cannot receive mail
// now or later, and mail for it is returned; any temporary failure among
// them means a later try may find an address. RFC 5321 §5.1 leaves the
// choice to the MTA; the relay (pkg/relay/delivery) and the probe decide
// by this one function so that they agree. err is nil when some host has
// an address, or there are no hosts.
func (r Result) NoAddress() (permanent bool, err error) {
	temporary := false
	for _, h := range r.Hosts {
		if len(h.Addrs) > 0 {
			return false, nil
		}
		// No address and no error cannot be judged: fail safe, retry.
		temporary = temporary || h.Err == nil || IsTemporary(h.Err)
		err = h.Err
	}
	return err != nil && !temporary, err
}

// LookupMX finds the hosts that receive mail for domain, with their
// addresses. The error is an *Error for a failed MX step; it wraps
// ErrNullMX for a null MX (and Result.NullMX is set). A host whose
// addresses could not be found is kept, with Host.Err set, so callers can
// report it and move on to the next one.
func (r *Resolver) LookupMX(ctx context.Context, domain string) (Result, error) {
	// The relay's one form of a domain (issue 10: "plain.test.." once
	// found no policy entry here but plain.test's MX there). A name that
	// is not a host name is never looked up: the answer would be for
	// another name.
	d, err := address.CanonicalDomain(domain)
	if err != nil {
		return Result{Domain: domain, Name: domain}, &Error{Step: "MX", Name: domain, Rcode: -1, Err: err}
	}
	domain = d
	res := Result{Domain: domain, Name: domain}
	ans, err := r.lookup(ctx, "MX", domain, dns.TypeMX)
	if err != nil {
		return res, err
	}
	res.Name, res.AD = ans.name, ans.ad && r.trustAD

	seen := map[string]int{}
	null := 0
	for _, rr := range ans.rrs {
		m := rr.(*dns.MX)
		name := strings.ToLower(strings.TrimSuffix(m.Mx, "."))
		if name == "" {
			// RFC 7505 §3: "0 ." means no mail. Alongside real MX
			// records it is a misconfiguration; the real ones are used.
			null++
			continue
		}
		if i, dup := seen[name]; dup {
			res.Hosts[i].Preference = min(res.Hosts[i].Preference, m.Preference)
			continue
		}
		seen[name] = len(res.Hosts)
		res.Hosts = append(res.Hosts, Host{Name: name, Preference: m.Preference})
	}
	switch {
	case null > 0 && len(res.Hosts) == 0:
		res.NullMX = true
		return res, &Error{Step: "MX", Name: res.Name, Rcode: dns.RcodeSuccess, Err: ErrNullMX}
	case len(ans.rrs) == 0:
		// NODATA: RFC 5321 §5.1 implicit MX, the domain's own address.
		res.Implicit = true
		res.Hosts = []Host{{Name: res.Name}}
	}
	// RFC 5321 §5.1: randomize among equal preferences, so load spreads
	// the way the receiving domain intends.
	rand.Shuffle(len(res.Hosts), func(i, j int) { res.Hosts[i], res.Hosts[j] = res.Hosts[j], res.Hosts[i] })
	slices.SortStableFunc(res.Hosts, func(a, b Host) int { return int(a.Preference) - int(b.Preference) })

	var wg sync.WaitGroup
	for i := range res.Hosts {
		wg.Go(func() {
			res.Hosts[i] = r.lookupHost(ctx, res.Hosts[i])
		})
	}
	wg.Wait()
	return res, nil
}

// LookupHost looks up the addresses of one host, as LookupMX does for
// each of its hosts: Addrs, Err, Canonical and AD are set; Preference
// is 0. For a next hop that is not from an MX lookup.
func (r *Resolver) LookupHost(ctx context.Context, name string) Host {
	return r.lookupHost(ctx, Host{Name: strings.ToLower(strings.TrimSuffix(name, "."))})
}

func (r *Resolver) lookupHost(ctx context.Context, h Host) Host {
	h.Addrs, h.Canonical, h.AD, h.Err = r.lookupAddrs(ctx, h.Name)
	return h
}

// LookupAddrs returns the A and then the AAAA addresses of host. An error
// is returned only when there is no address at all: the A failure (or the
// AAAA one if A merely had no data), or ErrNoAddress.
func (r *Resolver) LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, _, _, err := r.lookupAddrs(ctx, host)
	return addrs, err
}

// lookupAddrs is LookupAddrs that also says the name after CNAMEs and
// whether every answer that gave addresses or NODATA was authentic.
func (r *Resolver) lookupAddrs(ctx context.Context, host string) (addrs []netip.Addr, canonical string, ad bool, err error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	type result struct {
		ans answer
		err error
	}
	var a, aaaa result
	var wg sync.WaitGroup
	wg.Go(func() { a.ans, a.err = r.lookup(ctx, "A", host, dns.TypeA) })
	wg.Go(func() { aaaa.ans, aaaa.err = r.lookup(ctx, "AAAA", host, dns.TypeAAAA) })
	wg.Wait()
	canonical, ad = host, r.trustAD
	answered := false
	for _, x := range []result{a, aaaa} {
		if x.err == nil {
			canonical, ad, answered = x.ans.name, ad && x.ans.ad, true
		}
	}
	ad = ad && answered
	for _, rr := range a.ans.rrs {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.A).A.To4()); ok {
			addrs = append(addrs, ip)
		}
	}
	for _, rr := range aaaa.ans.rrs {
		if ip, ok := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA.To16()); ok {
			addrs = append(addrs, ip.Unmap())
		}
	}
	switch {
	case len(addrs) > 0:
		for _, e := range []error{a.err, aaaa.err} {
			if e != nil {
				r.log.Debug("partial address lookup", "host", host, "err", e)
			}
		}
		return addrs, canonical, ad, nil
	case a.err != nil:
		return nil, canonical, ad, a.err
	case aaaa.err != nil:
		return nil, canonical, ad, aaaa.err
	}
	return nil, canonical, ad, &Error{Step: "A/AAAA", Name: a.ans.name, Rcode: dns.RcodeSuccess, Err: ErrNoAddress}
}

// LookupTXT returns the TXT records of name, each one's character-strings
// concatenated (RFC 8461 §3.1, RFC 8460 §3: a record may be split into
// several strings). NODATA gives no records and no error; NXDOMAIN an
// *Error for which IsNotFound is true.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ans, err := r.lookup(ctx, "TXT", name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	var txts []string
	for _, rr := range ans.rrs {
		txts = append(txts, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return txts, nil
}

// TLSA is one TLSA record (RFC 6698 §2.1).
type TLSA struct {
	Usage        uint8 // 2 DANE-TA, 3 DANE-EE (the two RFC 7672 §3.1 allows for SMTP)
	Selector     uint8 // 0 full certificate, 1 SubjectPublicKeyInfo
	MatchingType uint8 // 0 exact, 1 SHA-256, 2 SHA-512
	Data         []byte
}

func (t TLSA) String() string {
	return fmt.Sprintf("%d %d %d %x", t.Usage, t.Selector, t.MatchingType, t.Data)
}

// TLSAResult holds the TLSA records at _port._tcp.host.
type TLSAResult struct {
	Name    string // the owner name asked
	Records []TLSA
	// AD is the AD bit of the answer(s); Secure is AD from a trusted
	// resolver (loopback, or WithTrustedAD). Only Secure records may be
	// used for DANE (RFC 7672 §2.2: insecure TLSA records are ignored).
	// Without records, Secure says the denial was authenticated.
	AD     bool
	Secure bool
	// TTL is how long the answer may be cached: the smallest TTL of the
	// TLSA RRset and of the CNAMEs followed to it; for NODATA or
	// NXDOMAIN, the negative TTL of the SOA in the authority section,
	// the smaller of its TTL and MINIMUM field (RFC 2308 §3). 0 when
	// there is no such SOA: the denial must not be cached (§5).
	TTL time.Duration
}

// LookupTLSA looks up _port._tcp.host (RFC 7672 §2.2.3). NODATA and
// NXDOMAIN both mean "no TLSA records" and give no error: for DANE the
// two are the same, and a probe only reports them.
func (r *Resolver) LookupTLSA(ctx context.Context, host string, port int) (TLSAResult, error) {
	name := fmt.Sprintf("_%d._tcp.%s", port, strings.ToLower(strings.TrimSuffix(host, ".")))
	res := TLSAResult{Name: name}
	ans, err := r.lookup(ctx, "TLSA", name, dns.TypeTLSA)
	if IsNotFound(err) {
		// NXDOMAIN: AD says whether its denial was authenticated.
		res.AD = ans.ad
		res.Secure = ans.ad && r.trustAD
		res.TTL = ans.ttl
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.AD = ans.ad
	res.Secure = ans.ad && r.trustAD
	res.TTL = ans.ttl
	for _, rr := range ans.rrs {
		t := rr.(*dns.TLSA)
		data, err := hex.DecodeString(t.Certificate)
		if err != nil {
			r.log.Debug("TLSA record with bad data", "name", name, "err", err)
			continue
		}
		res.Records = append(res.Records, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return res, nil
}

// answer is one question's result with CNAMEs followed.
type answer struct {
	name string   // the owner of rrs: the last name of the CNAME chain
	rrs  []dns.RR // records of the asked type
	ad   bool     // every response on the way had AD set
	// ttl: how long the answer may be cached (TLSAResult.TTL); 0 when
	// not known.
	ttl time.Duration
}

// lookup asks for qtype at name, following CNAMEs both inside an answer
// and, when a resolver stops at a CNAME, by asking again for its target.
func (r *Resolver) lookup(ctx context.Context, step, name string, qtype uint16) (answer, error) {
	cur := dns.Fqdn(strings.ToLower(name))
	if _, ok := dns.IsDomainName(cur); !ok {
		return answer{name: name}, &Error{Step: step, Name: name, Rcode: -1, Err: errors.New("not a valid domain name")}
	}
	seen := map[string]bool{cur: true}
	ad := true
	var ttl ttlMin
	for hop := 0; hop <= maxCNAME; hop++ {
		msg, err := r.exchange(ctx, cur, qtype)
		if err != nil {
			return answer{name: trim(cur)}, &Error{Step: step, Name: trim(cur), Rcode: -1, Temporary: true, Err: err}
		}
		ad = ad && msg.AuthenticatedData
		// Walk the CNAMEs this response already contains.
		target := cur
		var rrs []dns.RR
		for {
			var next string
			for _, rr := range msg.Answer {
				h := rr.Header()
				if !strings.EqualFold(h.Name, target) {
					continue
				}
				if h.Rrtype == qtype {
					rrs = append(rrs, rr)
					ttl.add(h.Ttl)
				} else if c, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
					next = strings.ToLower(dns.Fqdn(c.Target))
					ttl.add(h.Ttl)
				}
			}
			if len(rrs) > 0 || next == "" {
				break
			}
			if seen[next] || len(seen) > maxCNAME {
				return answer{name: trim(target)}, &Error{Step: step, Name: trim(name), Rcode: msg.Rcode, Err: ErrCNAMELoop}
			}
			seen[next] = true
			target = next
		}
		switch msg.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return answer{name: trim(target), ad: ad, ttl: ttl.negative(msg)}, &Error{Step: step, Name: trim(target), Rcode: msg.Rcode, Err: rcodeError(msg.Rcode)}
		default:
			// SERVFAIL, REFUSED, ...: the resolver could not answer;
			// the name may well exist (RFC 5321 §5.1 "temporary").
			return answer{name: trim(target)}, &Error{Step: step, Name: trim(target), Rcode: msg.Rcode, Temporary: true, Err: rcodeError(msg.Rcode)}
		}
		if len(rrs) > 0 || target == cur {
			// Records, or NODATA for the last name of the chain.
			a := answer{name: trim(target), rrs: rrs, ad: ad, ttl: ttl.get()}
			if len(rrs) == 0 {
				a.ttl = ttl.negative(msg)
			}
			return a, nil
		}
		cur = target // the chain left this response: ask for its end
	}
	return answer{name: trim(cur)}, &Error{Step: step, Name: trim(name), Rcode: -1, Err: ErrCNAMELoop}
}

// exchange sends one question to the resolvers in turn: UDP first, TCP
// when the answer is truncated (RFC 1035 §4.2.1, RFC 7766 §6.1.3.1). A
// SERVFAIL or REFUSED moves on to the next server, as glibc does; the
// last such answer is returned if no server does better.
func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	// RFC 6840 §5.7: setting AD in the query asks for AD in the answer
	// without needing DNSSEC records (DO) in it.
	q.AuthenticatedData = true
	q.SetEdns0(1232, false)

	var lastErr error
	var lastMsg *dns.Msg
	for _, srv := range r.servers {
		for range attempts {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			in, err := r.once(ctx, q, srv)
			if err != nil {
				lastErr = err
				r.log.Debug("dns query failed", "server", srv, "name", name, "type", dns.TypeToString[qtype], "err", err)
				continue
			}
			if in.Rcode == dns.RcodeServerFailure || in.Rcode == dns.RcodeRefused {
				lastMsg = in
				break
			}
			return in, nil
		}
	}
	if lastMsg != nil {
		return lastMsg, nil
	}
	return nil, lastErr
}

func (r *Resolver) once(ctx context.Context, q *dns.Msg, srv string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	in, _, err := r.udp.ExchangeContext(qctx, q, srv)
	if err == nil && in.Truncated {
		in, _, err = r.tcp.ExchangeContext(qctx, q, srv)
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer from %s within %v", srv, r.timeout)
		}
		return nil, err
	}
	return in, nil
}

// ttlMin is the smallest TTL of the records an answer was made of.
type ttlMin struct {
	ttl uint32
	set bool
}

func (m *ttlMin) add(ttl uint32) {
	if !m.set || ttl < m.ttl {
		m.ttl, m.set = ttl, true
	}
}

func (m ttlMin) get() time.Duration {
	if !m.set {
		return 0
	}
	return time.Duration(m.ttl) * time.Second
}

// negative is the TTL of msg's NODATA or NXDOMAIN: the smaller of the
// authority SOA's TTL and its MINIMUM field (RFC 2308 §3), and of the
// CNAMEs followed to the denied name; 0 without an SOA (RFC 2308 §5:
// such a denial is not cached).
func (m ttlMin) negative(msg *dns.Msg) time.Duration {
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			m.add(min(soa.Hdr.Ttl, soa.Minttl))
			return m.get()
		}
	}
	return 0
}

func trim(name string) string { return strings.TrimSuffix(name, ".") }
