// Package probe finds out what TLS a domain's MX hosts give and what the
// relay would do with mail for it: the DNS walk (pkg/mx), MTA-STS, TLS-RPT,
// each MX host's DANE state (pkg/dane.Lookup), one SMTP session per MX
// address (pkg/smtpclient, given the host's usable TLSA records), each
// graded by pkg/policy in the relay's own words, and a verdict with risks.
package probe

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// ExpiryWarning: a certificate expiring sooner than this is a risk.
const ExpiryWarning = 30 * 24 * time.Hour

// Config configures a Prober.
type Config struct {
	Resolver *mx.Resolver // required
	// Policy gives each target's requirement; nil means no entries.
	Policy *policy.Policy
	// RequireBits, MinTLS and Verify ask "what if": when any is set
	// (> 0, non-nil), the policy is not consulted and every target is
	// graded by the default requirement with these changes.
	RequireBits int
	MinTLS      uint16 // a crypto/tls version constant
	Verify      *policy.Verify
	// IgnorePublished mirrors the relay's setting that turns published
	// policies (MTA-STS, DANE) off: the verdict ignores them, and the
	// sources say so.
	IgnorePublished bool
	Port            int           // SMTP port dialled on every address; default 25
	Timeout         time.Duration // per step of a session and per HTTPS fetch; default 10s
	// Concurrency bounds targets probed at once and, separately, SMTP
	// sessions open at once; default 32.
	Concurrency int
	HeloName    string
	// RootCAs verify MX certificates and the MTA-STS HTTPS server; nil
	// means the system roots.
	RootCAs *x509.CertPool
	// STSFetcher fetches MTA-STS policies; nil builds one that resolves
	// through Resolver, trusts RootCAs and times out after Timeout.
	STSFetcher *mtasts.Fetcher
	// Deep, when set, runs after each session on the same address and
	// its result is stored in Attempt.Deep (smgctl probe --deep).
	Deep   func(ctx context.Context, host string, addr string) (any, error)
	Logger *slog.Logger
	Now    func() time.Time
	// Progress is called after each target; may be nil. Calls are
	// serialised.
	Progress func(done, total int, r *Report)
}

// Prober probes targets. It is safe for concurrent use.
type Prober struct {
	cfg      Config
	sessions chan struct{} // semaphore bounding open SMTP sessions
	log      *slog.Logger
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Prober, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("probe: no resolver")
	}
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("probe: port %d out of range", cfg.Port)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.RequireBits < 0 || cfg.RequireBits > 256 {
		return nil, fmt.Errorf("probe: require-bits %d: want 1 to 256", cfg.RequireBits)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.STSFetcher == nil {
		f, err := mtasts.NewFetcher(mtasts.FetcherConfig{Resolver: cfg.Resolver, Roots: cfg.RootCAs, Timeout: cfg.Timeout})
		if err != nil {
			return nil, err
		}
		cfg.STSFetcher = f
	}
	return &Prober{cfg: cfg, sessions: make(chan struct{}, cfg.Concurrency), log: log}, nil
}

// ParseTarget validates one probe target: a domain or local@domain. The
// catch-all is not a target.
func ParseTarget(s string) (policy.Target, error) {
	t, err := policy.ParseTarget(s)
	if err != nil {
		return t, err
	}
	if t.Kind == policy.KindCatchAll {
		return t, errors.New("the catch-all is not a probe target; name a domain or address")
	}
	return t, nil
}

// Probe probes every target (see ParseTarget) concurrently and returns
// the reports in the order given. Invalid targets get a report with
// Error set; callers should validate first.
func (p *Prober) Probe(ctx context.Context, targets []string) []*Report {
	reports := make([]*Report, len(targets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.cfg.Concurrency)
	progress := make(chan *Report)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for r := range progress {
			n++
			if p.cfg.Progress != nil {
				p.cfg.Progress(n, len(targets), r)
			}
		}
	}()
	for i, t := range targets {
		g.Go(func() error {
			reports[i] = p.ProbeTarget(gctx, t)
			progress <- reports[i]
			return nil
		})
	}
	g.Wait()
	close(progress)
	<-done
	return reports
}

// ProbeTarget probes one target.
func (p *Prober) ProbeTarget(ctx context.Context, target string) *Report {
	start := time.Now()
	rep := &Report{Target: target, Risks: []string{}, Hosts: []HostReport{}}
	defer func() { rep.Duration = time.Since(start) }()
	if ht, ok, err := ParseHostTarget(target); ok || err != nil {
		if err != nil {
			rep.Error = err.Error()
			rep.Verdict, rep.Summary = VerdictNoMail, "invalid target: "+err.Error()
			return rep
		}
		return p.probeHost(ctx, rep, ht)
	}
	t, err := ParseTarget(target)
	if err != nil {
		rep.Error = err.Error()
		rep.Verdict, rep.Summary = VerdictNoMail, "invalid target: "+err.Error()
		return rep
	}
	rep.Target, rep.Domain = t.Key(), t.Domain
	req := p.requirement(rep, rep.Target)

	// DNS: MX first; MTA-STS and TLS-RPT alongside.
	var res mx.Result
	var mxErr error
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { res, mxErr = p.cfg.Resolver.LookupMX(gctx, t.Domain); return nil })
	g.Go(func() error { rep.MTASTS = p.mtaSTS(gctx, t.Domain); return nil })
	g.Go(func() error { rep.TLSRPT = p.tlsRPT(gctx, t.Domain); return nil })
	g.Wait()
	rep.MX = MXInfo{Implicit: res.Implicit, NullMX: res.NullMX, Secure: res.AD && p.cfg.Resolver.TrustsAD()}
	if mxErr != nil {
		rep.MX.Error = mxErr.Error()
		rep.Error = mxErr.Error()
		switch {
		case errors.Is(mxErr, mx.ErrNullMX):
			rep.Verdict = VerdictNoMail
			rep.Summary = "accepts no mail: null MX (RFC 7505); the relay returns such mail with 556 5.1.10"
		case mx.IsTemporary(mxErr):
			rep.Verdict = VerdictDefer
			rep.Summary = "defer: temporary DNS failure: " + mxErr.Error()
		default:
			rep.Verdict = VerdictNoMail
			rep.Summary = "bounce: " + mxErr.Error()
		}
		return rep
	}

	// What the domain publishes joins the list's requirement (SPEC §6),
	// as at the relay: the strictest wins.
	req = policy.Combine(req, policy.Published{STS: rep.MTASTS.requirement(), Ignored: p.cfg.IgnorePublished})
	p.probeHosts(ctx, rep, res.Hosts, res.AD, p.cfg.Port, req)
	if permanent, err := res.NoAddress(); permanent {
		// What the relay does (mx.Result.NoAddress): no MX host can
		// ever be reached, so the message is returned with 550 5.4.4.
		rep.Error = err.Error()
		rep.Verdict = VerdictNoMail
		rep.Summary = "bounce: no MX host has an address (" + err.Error() + "); the relay returns such mail with 550 5.4.4"
		return rep
	}
	p.verdict(rep, req)
	return rep
}

// probeHosts runs a session with every address of every host,
// concurrently, into rep.Hosts.
// mxAuthentic says the MX RRset was DNSSEC-authentic (mx.Result.AD);
// true for a single host, whose own address records then decide.
func (p *Prober) probeHosts(ctx context.Context, rep *Report, hosts []mx.Host, mxAuthentic bool, port int, req policy.Requirement) {
	rep.Hosts = make([]HostReport, len(hosts))
	hg, hctx := errgroup.WithContext(ctx)
	hg.SetLimit(p.cfg.Concurrency)
	for i, h := range hosts {
		hr := &rep.Hosts[i]
		hr.Name, hr.Preference = h.Name, h.Preference
		hr.TLSA = TLSAInfo{Records: []string{}, State: string(dane.StateNone)}
		hr.Attempts = []*Attempt{}
		if rep.MTASTS.Policy != nil && rep.MTASTS.Policy.Mode != mtasts.ModeNone {
			m := rep.MTASTS.Policy.MatchMX(h.Name)
			hr.MTASTSMatch = &m
		}
		if h.Err != nil {
			hr.Error = h.Err.Error()
			continue
		}
		hg.Go(func() error {
			// TLSA as the relay's courier asks it (pkg/dane.Lookup, RFC
			// 7672 §2.2): only when the MX RRset and the host's
			// addresses are authentic, the CNAME-expanded name first.
			dh := dane.Lookup(hctx, p.cfg.Resolver, mxAuthentic, h, port)
			hr.TLSA = tlsaInfo(dh)
			facts := dh.Facts(h.Name)
			hr.dane = facts.DANE
			// Sessions after the TLSA answer: DANE needs both.
			ag, actx := errgroup.WithContext(hctx)
			for _, a := range h.Addrs {
				at := &Attempt{Addr: net.JoinHostPort(a.String(), strconv.Itoa(port)), Timings: map[string]Millis{}}
				hr.Attempts = append(hr.Attempts, at)
				ag.Go(func() error { p.session(actx, facts, dh, a, at, req); return nil })
			}
			return ag.Wait()
		})
	}
	hg.Wait()
}

// requirement picks what the target is graded against (SPEC §3 step 3).
// key is what the policy is looked up by; "" for a single host, which
// has no recipient domain and is graded by --require-bits or the default.
func (p *Prober) requirement(rep *Report, key string) policy.Requirement {
	req := policy.DefaultRequirement()
	source := "default"
	switch {
	case p.cfg.RequireBits > 0 || p.cfg.MinTLS > 0 || p.cfg.Verify != nil:
		if p.cfg.RequireBits > 0 {
			req.Bits = p.cfg.RequireBits
		}
		if p.cfg.MinTLS > 0 {
			req.MinTLS = p.cfg.MinTLS
		}
		if p.cfg.Verify != nil {
			req.Verify = *p.cfg.Verify
		}
		source = "flag"
	case p.cfg.Policy != nil && key != "":
		// The probe asks "what if we list it": no entry, or an entry
		// that exempts the target, is graded as a default entry.
		if m := p.cfg.Policy.Lookup(key); m.Entry != nil && m.Entry.Options.Mode != policy.ModeOff {
			req = m.Requirement()
			source = "policy"
		}
	}
	rep.Requirement = RequirementInfo{
		Source: source, Entry: req.Target, Line: req.Line, Bits: req.Bits,
		MinTLS: policy.VersionLabel(policy.VersionName(req.MinTLS)), Verify: req.Verify.String(),
		Mode: req.Mode.String(), OnFail: req.Get("on-fail"), Sources: append([]policy.Source{}, req.Sources()...),
	}
	return req
}

// session runs banner, EHLO, STARTTLS, handshake, EHLO, QUIT against one
// address and grades the outcome.
func (p *Prober) session(ctx context.Context, facts policy.HopFacts, dh dane.Host, addr netip.Addr, at *Attempt, req policy.Requirement) {
	host := facts.Name
	select {
	case p.sessions <- struct{}{}:
	case <-ctx.Done():
		at.Error = ctx.Err().Error()
		return
	}
	defer func() { <-p.sessions }()

	opts := smtpclient.Options{
		HeloName:   p.cfg.HeloName,
		ServerName: host,
		RootCAs:    p.cfg.RootCAs,
		Timeouts:   smtpclient.UniformTimeouts(p.cfg.Timeout),
		Logger:     p.log,
		Now:        p.cfg.Now,
	}
	if dh.State == dane.StateUsable {
		// The session judges the chain by the records alone, as the
		// relay's does (RFC 7672 §3): Outcome.Auth and TLSA come from it.
		opts.TLSA, opts.TLSAOwner, opts.TLSANames = dh.Records, dh.Owner, dh.Names
	}
	s, err := smtpclient.Dial(ctx, at.Addr, opts)
	defer func() {
		if s == nil {
			return
		}
		s.Close()
		for _, st := range s.Steps() {
			name := strings.ToLower(st.Name)
			if _, dup := at.Timings[name]; dup {
				name += "_tls" // the second EHLO
			}
			at.Timings[name] = millis(st.Took)
		}
	}()
	if s != nil {
		at.Banner = s.Banner().String()
	}
	if err != nil {
		at.Error = err.Error()
		return
	}
	if err := s.Hello(ctx); err != nil {
		at.Error = err.Error()
		return
	}
	at.Connected = true
	at.STARTTLS = s.Supports("STARTTLS")
	out, err := s.StartTLS(ctx)
	if err != nil && out.TLS {
		// Encrypted, then the EHLO after TLS failed: not usable.
		at.Error = err.Error()
	}
	at.TLS, at.Failure = out.TLS, out.Failure
	for k, v := range s.Extensions() {
		at.Extensions = append(at.Extensions, strings.TrimSpace(k+" "+v))
	}
	slices.Sort(at.Extensions)
	if out.TLS {
		at.Version = policy.VersionLabel(policy.VersionName(out.Version))
		at.Suite = policy.SuiteName(out.CipherSuite)
		chain := s.PeerCertificates()
		v := s.Verification()
		if len(chain) > 0 {
			leaf := chain[0]
			sans := append([]string{}, leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				sans = append(sans, ip.String())
			}
			at.Cert = &CertInfo{
				Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), SANs: sans,
				NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, ChainLength: len(chain),
				ChainVerified: v.ChainVerified, NameMatched: v.NameMatched, VerifyError: v.Error,
			}
		}
		at.Verified = v.ChainVerified && v.NameMatched
		switch {
		case dh.State == dane.StateUsable:
			at.DANE = DANEResult(s.DANE().Status)
		case dh.State == dane.StateUnusable:
			at.DANE = DANEUnusable
		}
		// How the peer was authenticated, judged by the session as the
		// relay's (SPEC §6.6): a matching usable TLSA record, else PKIX.
		at.Auth, at.TLSA = string(out.Auth), out.TLSA
	}
	out.RequireTLSOffered = s.Supports("REQUIRETLS")
	at.Bits = out.Bits()
	if at.Error == "" {
		v := policy.EvaluateHop(req, facts, out)
		at.graded, at.verdict, at.Met, at.Diagnostic = true, v, v.Met, v.Diagnostic
		at.FailedBy = string(v.FailedBy)
	}
	if !s.Closed() {
		s.Quit(ctx)
	}
	if p.cfg.Deep != nil && ctx.Err() == nil {
		d, err := p.cfg.Deep(ctx, host, at.Addr)
		if err != nil {
			at.Deep = map[string]string{"error": err.Error()}
		} else {
			at.Deep = d
		}
	}
}

// verdict says what the relay would do, by the relay's own rule
// (policy.Decide): it tries MX hosts in preference order, and each host's
// addresses in order (RFC 5321 §5.1); a connection failure moves on, a
// hop that does not meet the requirement gets no MAIL FROM and the next
// one is tried (SPEC §4). A host without an address is an unreached hop
// here: it might have met the requirement.
func (p *Prober) verdict(rep *Report, req policy.Requirement) {
	type ref struct {
		host string
		at   *Attempt // nil: the host has no address
	}
	var hops []policy.HopResult
	var refs []ref
	for _, h := range rep.Hosts {
		if h.Error != "" {
			hops, refs = append(hops, policy.HopResult{}), append(refs, ref{h.Name, nil})
		}
		for _, at := range h.Attempts {
			hops, refs = append(hops, policy.HopResult{Reached: at.graded, Verdict: at.verdict}), append(refs, ref{h.Name, at})
		}
	}
	d := policy.Decide(req, hops)
	rep.Requirement.Sources = append([]policy.Source{}, req.Sources()...)
	for _, h := range rep.Hosts {
		if h.dane != policy.DANENone {
			rep.Requirement.Sources = append(rep.Requirement.Sources, policy.Source{Kind: policy.SourceDANE, Host: h.Name, DANE: h.dane, Ignored: req.Ignore})
		}
	}
	first := ""
	if len(rep.Hosts) > 0 {
		first = rep.Hosts[0].Name
	}
	rep.Diagnostic = d.Diagnostic
	var hop ref
	if d.Hop >= 0 {
		hop = refs[d.Hop]
	}
	switch {
	case d.Action == policy.Deliver && !d.WouldBounce:
		rep.Pass = true
		rep.Verdict = VerdictDeliver
		rep.Via = &HopRef{Host: hop.host, Addr: hop.at.Addr}
		at := hop.at
		rep.Summary = fmt.Sprintf("deliver over %s %s (%d bits) via %s [%s]", at.Version, at.Suite, at.Bits, rep.Via.Host, rep.Via.Addr)
		if rep.Via.Host != first {
			rep.Summary += fmt.Sprintf(", not the preferred MX %s", first)
		}
		if d.Diagnostic != "" { // MTA-STS testing: delivered, recorded
			rep.Summary += "; would-be failure recorded: " + d.Diagnostic
		}
	case d.Action == policy.HandOff:
		rep.Verdict = VerdictHandOff
		rep.Route = d.Route.String()
		rep.Summary = fmt.Sprintf("hand off to %s: no MX meets the requirement (%s, from %s [%s])", rep.Route, d.Diagnostic, hop.host, hop.at.Addr)
	case d.Action == policy.Deliver: // mode=testing
		rep.Verdict = VerdictTesting
		rep.Summary = fmt.Sprintf("deliver without meeting the requirement (mode=testing records a would-be bounce: %s, from %s [%s])", d.Diagnostic, hop.host, hop.at.Addr)
	case d.Action == policy.Bounce:
		rep.Verdict = VerdictBounce
		rep.Summary = fmt.Sprintf("bounce: %s (from %s [%s])", d.Diagnostic, hop.host, hop.at.Addr)
	case d.Hop < 0:
		rep.Verdict = VerdictDefer
		rep.Summary = "defer: no MX host could be reached"
	case hop.at.FailedBy == string(policy.SourceDANE) || hop.at.FailedBy == string(policy.SourceMTASTS):
		rep.Verdict = VerdictDefer
		rep.Summary = fmt.Sprintf("defer: %s (from %s [%s]); what the domain publishes is retried, never bounced", d.Diagnostic, hop.host, hop.at.Addr)
	case req.OnFail == policy.OnFailDefer:
		rep.Verdict = VerdictDefer
		rep.Summary = fmt.Sprintf("defer until the queue lifetime ends, then bounce: %s (from %s [%s])", d.Diagnostic, hop.host, hop.at.Addr)
	default:
		rep.Verdict = VerdictDefer
		rep.Summary = fmt.Sprintf("defer: %s (from %s [%s]); an MX that could not be reached might meet the requirement", d.Diagnostic, hop.host, hop.at.Addr)
	}
	rep.Risks = append(rep.Risks, p.risks(rep)...)
}

// weakSuites is what --deep's result (pkg/probe/deep.Report) tells about
// suites too weak to carry mail: NULL, export, DES, RC4, or fewer than
// 112 bits, by name.
type weakSuites interface{ WeakAccepted() []string }

// risks lists what could make today's verdict wrong tomorrow or let an
// attacker change it.
func (p *Prober) risks(rep *Report) []string {
	var risks []string
	now := p.cfg.Now()
	for _, h := range rep.Hosts {
		if h.Error != "" {
			risks = append(risks, fmt.Sprintf("MX %s (preference %d) has no usable address: %s", h.Name, h.Preference, h.Error))
		}
		for _, at := range h.Attempts {
			switch {
			case at.Error != "" && !at.graded:
				risks = append(risks, fmt.Sprintf("MX %s [%s] unreachable: %s", h.Name, at.Addr, at.Error))
			case at.graded && !at.Met && rep.Via != nil && rep.Via.Addr != at.Addr:
				// A backup (or a preferred host the relay skips) that
				// fails: an attacker who blocks the good hop makes mail
				// bounce, and a relay without enforcement would use it.
				what := "fails the requirement"
				if !at.TLS {
					what = "offers no TLS"
				}
				risks = append(risks, fmt.Sprintf("MX %s (preference %d) [%s] %s: %s", h.Name, h.Preference, at.Addr, what, at.Diagnostic))
			}
			if at.Cert != nil {
				left := at.Cert.NotAfter.Sub(now)
				switch {
				case left < 0:
					risks = append(risks, fmt.Sprintf("certificate of %s [%s] expired on %s", h.Name, at.Addr, at.Cert.NotAfter.UTC().Format("2006-01-02")))
				case left < ExpiryWarning:
					risks = append(risks, fmt.Sprintf("certificate of %s [%s] expires on %s, in %d days", h.Name, at.Addr, at.Cert.NotAfter.UTC().Format("2006-01-02"), int(left.Hours()/24)))
				}
			}
			if at.TLS {
				// RFC 8996: TLS 1.0 and 1.1 are deprecated; RFC 9325 §4.1:
				// suites without forward secrecy let whoever later gets
				// the server's key read recorded sessions.
				if at.Version == "TLSv1.0" || at.Version == "TLSv1.1" || at.Version == "SSLv3" {
					risks = append(risks, fmt.Sprintf("MX %s [%s] negotiated %s, deprecated (RFC 8996)", h.Name, at.Addr, at.Version))
				}
				if strings.HasPrefix(at.Suite, "TLS_RSA_") {
					risks = append(risks, fmt.Sprintf("MX %s [%s] negotiated %s: RSA key exchange, no forward secrecy (RFC 9325 §4.1)", h.Name, at.Addr, at.Suite))
				}
			}
			if w, ok := at.Deep.(weakSuites); ok {
				// The relay never offers these, so the hop is not
				// judged on them; a sender that does gets little or
				// no protection (RFC 7465: no RC4; RFC 9325 §4.1).
				if names := w.WeakAccepted(); len(names) > 0 {
					risks = append(risks, fmt.Sprintf("MX %s [%s] accepts weak suites: %s; the relay does not offer them, a sender that does gets little or no encryption (RFC 9325 §4.1)", h.Name, at.Addr, strings.Join(names, ", ")))
				}
			}
			if at.DANE == DANEMismatch {
				risks = append(risks, fmt.Sprintf("MX %s [%s]: certificate does not match its DNSSEC-signed TLSA records (a DANE sender would refuse it)", h.Name, at.Addr))
			}
		}
		if h.MTASTSMatch != nil && !*h.MTASTSMatch {
			risks = append(risks, fmt.Sprintf("MX %s is not in the MTA-STS policy's mx list: MTA-STS senders in enforce mode will not deliver to it", h.Name))
		}
	}
	if rep.MTASTS.Present && rep.MTASTS.Policy == nil {
		risks = append(risks, "MTA-STS record present but the policy could not be fetched: "+rep.MTASTS.Error)
	}
	dane := false
	for _, h := range rep.Hosts {
		dane = dane || h.dane == policy.DANEUsable || h.dane == policy.DANEUnusable
	}
	sts := rep.MTASTS.Policy != nil && rep.MTASTS.Policy.Mode == mtasts.ModeEnforce
	if !dane && !sts {
		risks = append(risks, "no MTA-STS (enforce) and no DANE: other senders' STARTTLS to this domain can be stripped by an active attacker")
	}
	return risks
}

// mtaSTS reads the _mta-sts record and, when there is one, the policy.
func (p *Prober) mtaSTS(ctx context.Context, domain string) MTASTSInfo {
	var info MTASTSInfo
	id, err := mtasts.LookupRecord(ctx, p.cfg.Resolver, domain)
	if err != nil {
		// RFC 8461 §3.1: no record, or an invalid one, means no MTA-STS;
		// only an invalid record or a DNS failure is worth a word.
		if !errors.Is(err, mtasts.ErrNoRecord) {
			info.Error = err.Error()
		}
		return info
	}
	info.Present, info.ID = true, id
	pol, err := p.cfg.STSFetcher.Fetch(ctx, domain)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.Policy = &pol
	return info
}

// tlsRPT reads _smtp._tls (RFC 8460 §3): records starting "v=TLSRPTv1".
func (p *Prober) tlsRPT(ctx context.Context, domain string) TLSRPTInfo {
	info := TLSRPTInfo{Records: []string{}}
	txts, err := p.cfg.Resolver.LookupTXT(ctx, "_smtp._tls."+domain)
	if err != nil {
		if !mx.IsNotFound(err) {
			info.Error = err.Error()
		}
		return info
	}
	for _, t := range txts {
		if strings.HasPrefix(t, "v=TLSRPTv1") {
			info.Records = append(info.Records, t)
		}
	}
	if len(info.Records) > 1 {
		// RFC 8460 §3: more than one record means no reporting.
		info.Error = fmt.Sprintf("%d v=TLSRPTv1 records, want one", len(info.Records))
	}
	return info
}
