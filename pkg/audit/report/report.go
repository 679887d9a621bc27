// Package report summarises an audit log for an auditor: per recipient
// domain and per policy entry, how mail left — over TLS or not, which
// versions, how strong, what bounced and why, what mode=testing entries
// would have bounced — and which domains deserve an entry.
//
// It streams: each line is decoded, folded into per-domain and per-entry
// aggregates and dropped, so memory depends on the number of domains and
// entries, never on the length of the log.
package report

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	"github.com/smgctl/smgctl/pkg/policy"
)

// Options select the records a report covers.
type Options struct {
	// From and To bound the records' time, [From, To); zero is open.
	From, To time.Time
	// Domain keeps only recipients in this domain and its subdomains
	// (SPEC B1's matching); "" keeps all.
	Domain string
	// Workers decode in parallel; 0 means GOMAXPROCS.
	Workers int
}

// Group aggregates the records of one recipient domain or policy entry.
//
// Messages counts final outcomes — one per message and recipient:
// delivered, would-bounce, handed off, bounced, dropped, removed by an
// administrator
// — like pflogsumm counts deliveries. Deferrals count attempts, as one message may be deferred
// many times before its final outcome.
type Group struct {
	Name string `json:"name"`
	// Entry groups: the entry's line and options as last seen.
	Line        int                `json:"line,omitempty"`
	Requirement *audit.Requirement `json:"requirement,omitempty"`
	// Domain groups: the entry that decided the latest record ("" none)
	// and whether that is a listing of the domain (below).
	Entry  string `json:"entry,omitempty"`
	Listed bool   `json:"listed"`

	Messages     int `json:"messages"`
	Delivered    int `json:"delivered"`     // delivered + would-bounce
	DeliveredTLS int `json:"delivered_tls"` // of those, over TLS
	// TLSShare is DeliveredTLS / Delivered, 0 when nothing was delivered.
	TLSShare float64 `json:"tls_share"`
	// Versions counts deliveries by TLS version, "none" without TLS.
	Versions map[string]int `json:"tls_versions"`
	// WeakestBits and StrongestBits range over deliveries (0 = clear
	// text); nil when nothing was delivered.
	WeakestBits   *int           `json:"weakest_bits"`
	StrongestBits *int           `json:"strongest_bits"`
	Bounced       int            `json:"bounced"`
	Bounces       map[string]int `json:"bounces"` // by diagnostic
	Deferrals     int            `json:"deferrals"`
	WouldBounce   int            `json:"would_bounce"`
	WouldBounces  map[string]int `json:"would_bounces"` // by diagnostic
	Dropped       int            `json:"dropped"`
	// HandedOff counts recipients no MX could take with the required TLS
	// that went to their entry's hand-off route instead (a final outcome,
	// not a delivery to the domain); HandOffs counts them by route.
	HandedOff int            `json:"handed_off"`
	HandOffs  map[string]int `json:"hand_offs"`
	// RemovedByAdmin counts recipients an administrator took out of the
	// queue (events deleted and returned): neither delivered nor bounced
	// by the relay. No policy decided them, so entry groups never count
	// them; domain groups and the total do.
	RemovedByAdmin int `json:"removed_by_admin"`
	// DeliveredCleartext counts deliveries without encryption (no TLS,
	// or a NULL suite: 0 bits).
	DeliveredCleartext int `json:"delivered_cleartext"`
	// HopsFailed counts hop-failed records: an MX host (per address
	// and recipient) an attempt passed over before another carried the
	// mail or the attempt failed. Not an outcome, like Deferrals.
	HopsFailed int `json:"hops_failed"`

	// metDefault counts deliveries that met the default requirement.
	metDefault int
	// exempt: a domain group whose latest record was decided by an
	// entry naming the domain with mode=off — exempted on purpose, so
	// never a candidate to list.
	exempt    bool
	latest    time.Time
	weakest   int
	strongest int
}

// Report is the result. Its JSON form is a stable interface
// (docs/audit-report.md).
type Report struct {
	Files  []string  `json:"files"`
	From   time.Time `json:"from,omitzero"`
	To     time.Time `json:"to,omitzero"`
	Domain string    `json:"domain,omitempty"`
	// First and Last are the times of the first and last record covered.
	First   time.Time `json:"first,omitzero"`
	Last    time.Time `json:"last,omitzero"`
	Records int       `json:"records"`
	// Unreadable lines are skipped (a torn last line after a crash);
	// UnreadableAt names the first few as file:line.
	Unreadable   int      `json:"unreadable"`
	UnreadableAt []string `json:"unreadable_at,omitempty"`

	Total   Group   `json:"total"`
	Domains []Group `json:"domains"`
	Entries []Group `json:"entries"`

	// ListedWithFailures: listed domains with a bounce, deferral or
	// would-bounce.
	ListedWithFailures []string `json:"listed_with_failures"`
	// Candidates: unlisted domains whose every delivery met the default
	// requirement (policy.DefaultRequirement: 112 bits) — listing them
	// costs nothing today and protects them tomorrow.
	Candidates []string `json:"candidates"`
	// Cleartext: unlisted domains that received mail without encryption.
	Cleartext []string `json:"cleartext"`
}

// NoEntry names the group of records no policy entry applied to.
const NoEntry = "(no entry)"

// maxDiagnostics bounds the distinct diagnostics kept per group: remote
// 5xx replies often quote the address, so their variety grows with the
// log. Beyond the bound they are counted under OtherDiagnostics.
const maxDiagnostics = 32

// OtherDiagnostics collects diagnostics beyond maxDiagnostics.
const OtherDiagnostics = "(other diagnostics)"

// maxUnreadable is how many unreadable lines are named.
const maxUnreadable = 10

// Build reads the audit log set and computes the report.
func Build(ctx context.Context, files []logset.File, opt Options) (*Report, error) {
	if opt.Domain != "" {
		d, err := policy.NormalizeDomain(opt.Domain)
		if err != nil {
			return nil, fmt.Errorf("domain %q: %w", opt.Domain, err)
		}
		opt.Domain = d
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// One reader cuts the files into batches of lines; workers decode and
	// fold them into their own partial report; the partials merge at the
	// end. Aggregates are sums, minima, maxima and latest-by-time, so the
	// order batches are folded in does not matter.
	batches := make(chan *batch, 2*workers)
	free := make(chan *batch, 4*workers)
	parts := make([]*partial, workers)
	var wg sync.WaitGroup
	for w := range parts {
		p := newPartial(opt)
		parts[w] = p
		wg.Go(func() {
			for b := range batches {
				p.fold(b)
				b.reset()
				select {
				case free <- b:
				default:
				}
			}
		})
	}
	err := func() error {
		defer close(batches)
		var cur *batch
		get := func() *batch {
			select {
			case b := <-free:
				return b
			default:
				return &batch{}
			}
		}
		err := logset.Lines(ctx, files, func(file string, n int, line []byte) error {
			if cur == nil {
				cur = get()
			}
			cur.add(file, n, line)
			if len(cur.data) >= batchBytes {
				select {
				case batches <- cur:
				case <-ctx.Done():
					return ctx.Err()
				}
				cur = nil
			}
			return nil
		})
		if err == nil && cur != nil {
			batches <- cur
		}
		return err
	}()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	r := &Report{Domain: opt.Domain, From: opt.From, To: opt.To}
	for _, f := range files {
		r.Files = append(r.Files, f.Path)
	}
	total := parts[0]
	for _, p := range parts[1:] {
		total.merge(p)
	}
	total.finish(r)
	return r, nil
}

const batchBytes = 256 << 10

// batch is a run of lines copied out of the reader's buffer.
type batch struct {
	data  []byte
	ends  []int
	lines []int
	files []string
}

func (b *batch) add(file string, n int, line []byte) {
	b.data = append(b.data, line...)
	b.ends = append(b.ends, len(b.data))
	b.lines = append(b.lines, n)
	b.files = append(b.files, file)
}

func (b *batch) reset() {
	b.data, b.ends, b.lines, b.files = b.data[:0], b.ends[:0], b.lines[:0], b.files[:0]
}

// partial is one worker's share of the report.
type partial struct {
	opt          Options
	suites       map[string]uint16
	dec          logset.Decoder
	domains      map[string]*Group
	entries      map[string]*Group
	total        Group
	records      int
	first, last  time.Time
	unreadable   int
	unreadableAt []string
}

func newPartial(opt Options) *partial {
	suites := map[string]uint16{}
	for _, s := range policy.Suites() {
		suites[s.Name] = s.ID
	}
	return &partial{opt: opt, suites: suites, domains: map[string]*Group{}, entries: map[string]*Group{}}
}

func (p *partial) fold(b *batch) {
	var rec audit.Record
	start := 0
	for i, end := range b.ends {
		line := b.data[start:end]
		start = end
		if err := p.dec.Decode(line, &rec); err != nil {
			p.unreadable++
			if len(p.unreadableAt) < maxUnreadable {
				p.unreadableAt = append(p.unreadableAt, fmt.Sprintf("%s:%d", b.files[i], b.lines[i]))
			}
			continue
		}
		if audit.IsMark(rec.Event) {
			continue // the log's own checkpoints and repairs: no outcome
		}
		p.add(&rec)
	}
}

// RecipientDomain is the domain a record is grouped under: the
// recipient's domain in the relay's canonical form (address.
// CanonicalDomain), which records written since the relay parses
// addresses at RCPT already hold; older records may spell one domain
// several ways (case, trailing dot, U-labels, fullwidth forms). A domain
// that is not a host name is grouped as written, lower case, without a
// trailing dot.
func RecipientDomain(rcpt string) string {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return "(no domain)"
	}
	if d, err := address.CanonicalDomain(rcpt[at+1:]); err == nil {
		return d
	}
	return strings.TrimSuffix(strings.ToLower(rcpt[at+1:]), ".")
}

// listing says whether a record's entry lists the recipient's domain
// itself: a domain entry (not an address, not the catch-all) in force
// (enforce or testing). Domains reached only through "*" or mode=off
// count as unlisted; of those, only the ones reached through "*" or no
// entry can be candidates (exempted below).
func listing(rec *audit.Record) bool {
	return domainEntry(rec) && rec.Requirement.Mode != "off"
}

// exempted: the record was decided by a domain entry with mode=off —
// the operator exempted the domain on purpose.
func exempted(rec *audit.Record) bool {
	return domainEntry(rec) && rec.Requirement.Mode == "off"
}

func domainEntry(rec *audit.Record) bool {
	t := rec.PolicyTarget
	return t != "" && t != "*" && !strings.Contains(t, "@") && rec.Requirement != nil
}

func inDomain(domain, want string) bool {
	return domain == want || strings.HasSuffix(domain, "."+want)
}

func (p *partial) add(rec *audit.Record) {
	if audit.RelayEvent(rec.Event) {
		return // the relay's own event, no recipient's outcome
	}
	if !p.opt.From.IsZero() && rec.Time.Before(p.opt.From) {
		return
	}
	if !p.opt.To.IsZero() && !rec.Time.Before(p.opt.To) {
		return
	}
	domain := RecipientDomain(rec.Recipient)
	if p.opt.Domain != "" && !inDomain(domain, p.opt.Domain) {
		return
	}
	p.records++
	if p.first.IsZero() || rec.Time.Before(p.first) {
		p.first = rec.Time
	}
	if rec.Time.After(p.last) {
		p.last = rec.Time
	}
	d := p.domains[domain]
	if d == nil {
		d = &Group{Name: domain}
		p.domains[domain] = d
	}
	if rec.Event == audit.HopFailed {
		// One MX host an attempt passed over: no outcome, counted
		// apart; the outcome record of its attempt follows it and
		// decides the domain's entry.
		e := p.entry(rec)
		for _, g := range []*Group{d, e, &p.total} {
			g.HopsFailed++
		}
		return
	}
	if adminEvent(rec.Event) {
		// Not a policy decision: it neither names the domain's entry
		// nor belongs to one.
		d.count(rec, false)
		p.total.count(rec, false)
		return
	}
	e := p.entry(rec)
	if !rec.Time.Before(d.latest) {
		d.Entry, d.Listed, d.exempt = rec.PolicyTarget, listing(rec), exempted(rec)
	}
	if !rec.Time.Before(e.latest) {
		e.Line = rec.PolicyLine
		if q := rec.Requirement; q != nil && (e.Requirement == nil || *e.Requirement != *q) {
			c := *q
			e.Requirement = &c
		}
	}
	met := false
	if rec.Event == audit.Delivered || rec.Event == audit.WouldBounce {
		met = p.metDefault(rec)
	}
	for _, g := range []*Group{d, e, &p.total} {
		g.count(rec, met)
	}
}

// entry is the group of rec's policy entry.
func (p *partial) entry(rec *audit.Record) *Group {
	name := rec.PolicyTarget
	if name == "" {
		name = NoEntry
	}
	e := p.entries[name]
	if e == nil {
		e = &Group{Name: name}
		p.entries[name] = e
	}
	return e
}

// metDefault judges a delivery against the default requirement with the
// one evaluation (SPEC §2): would it have passed had the domain been
// listed with no options?
func (p *partial) metDefault(rec *audit.Record) bool {
	out := policy.Outcome{TLS: rec.TLS, Verified: rec.CertVerified}
	if rec.TLS {
		out.Version, _ = policy.ParseVersion(rec.TLSVersion)
		out.CipherSuite = p.suites[rec.Cipher] // unknown name: 0 bits, fails closed
	}
	return policy.Evaluate(policy.DefaultRequirement(), out).Met
}

// adminEvent: an administrator's action (`smgctl queue delete/bounce`).
func adminEvent(e audit.Event) bool { return e == audit.Deleted || e == audit.Returned }

func (g *Group) count(rec *audit.Record, met bool) {
	// latest decides which entry a group shows; an administrator's
	// action carries none.
	if rec.Time.After(g.latest) && !adminEvent(rec.Event) {
		g.latest = rec.Time
	}
	switch rec.Event {
	case audit.Delivered, audit.WouldBounce:
		g.Messages++
		g.Delivered++
		if rec.TLS {
			g.DeliveredTLS++
		}
		if !rec.TLS || rec.Bits == 0 {
			g.DeliveredCleartext++
		}
		v := rec.TLSVersion
		if !rec.TLS || v == "" {
			v = "none"
		}
		g.Versions = bump(g.Versions, v, 1)
		bits := rec.Bits
		if !rec.TLS {
			bits = 0
		}
		if g.Delivered == 1 || bits < g.weakest {
			g.weakest = bits
		}
		if g.Delivered == 1 || bits > g.strongest {
			g.strongest = bits
		}
		if met {
			g.metDefault++
		}
		if rec.Event == audit.WouldBounce {
			g.WouldBounce++
			g.WouldBounces = bump(g.WouldBounces, diagnostic(rec), 1)
		}
	case audit.Bounced:
		g.Messages++
		g.Bounced++
		g.Bounces = bump(g.Bounces, diagnostic(rec), 1)
	case audit.HandedOff:
		g.Messages++
		g.HandedOff++
		g.HandOffs = bump(g.HandOffs, rec.Route, 1)
	case audit.Dropped:
		g.Messages++
		g.Dropped++
	case audit.Deleted, audit.Returned:
		g.Messages++
		g.RemovedByAdmin++
	case audit.Deferred:
		g.Deferrals++
	}
}

// diagnostic is what the sender was (or would have been) told.
func diagnostic(rec *audit.Record) string {
	if rec.Diagnostic != "" {
		return rec.Diagnostic
	}
	if rec.Reply != "" {
		return rec.Reply
	}
	return "(no diagnostic)"
}

// bump adds n to m[k], folding new keys beyond maxDiagnostics into
// OtherDiagnostics.
func bump(m map[string]int, k string, n int) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	if _, ok := m[k]; !ok && len(m) >= maxDiagnostics {
		k = OtherDiagnostics
	}
	m[k] += n
	return m
}

func (g *Group) merge(o *Group) {
	if o.latest.After(g.latest) || g.latest.IsZero() {
		g.Entry, g.Listed, g.Line, g.exempt = o.Entry, o.Listed, o.Line, o.exempt
		if o.Requirement != nil {
			g.Requirement = o.Requirement
		}
		g.latest = o.latest
	}
	if o.Delivered > 0 {
		if g.Delivered == 0 || o.weakest < g.weakest {
			g.weakest = o.weakest
		}
		if g.Delivered == 0 || o.strongest > g.strongest {
			g.strongest = o.strongest
		}
	}
	g.Messages += o.Messages
	g.Delivered += o.Delivered
	g.DeliveredTLS += o.DeliveredTLS
	g.DeliveredCleartext += o.DeliveredCleartext
	g.Bounced += o.Bounced
	g.Deferrals += o.Deferrals
	g.WouldBounce += o.WouldBounce
	g.Dropped += o.Dropped
	g.HandedOff += o.HandedOff
	for k, n := range o.HandOffs {
		g.HandOffs = bump(g.HandOffs, k, n)
	}
	g.RemovedByAdmin += o.RemovedByAdmin
	g.HopsFailed += o.HopsFailed
	g.metDefault += o.metDefault
	for k, n := range o.Versions {
		g.Versions = bump(g.Versions, k, n)
	}
	for k, n := range o.Bounces {
		g.Bounces = bump(g.Bounces, k, n)
	}
	for k, n := range o.WouldBounces {
		g.WouldBounces = bump(g.WouldBounces, k, n)
	}
}

func (p *partial) merge(o *partial) {
	p.records += o.records
	if !o.first.IsZero() && (p.first.IsZero() || o.first.Before(p.first)) {
		p.first = o.first
	}
	if o.last.After(p.last) {
		p.last = o.last
	}
	p.unreadable += o.unreadable
	p.unreadableAt = append(p.unreadableAt, o.unreadableAt...)
	p.total.merge(&o.total)
	for k, g := range o.domains {
		if mine := p.domains[k]; mine != nil {
			mine.merge(g)
		} else {
			p.domains[k] = g
		}
	}
	for k, g := range o.entries {
		if mine := p.entries[k]; mine != nil {
			mine.merge(g)
		} else {
			p.entries[k] = g
		}
	}
}

func (g *Group) finish() {
	if g.Delivered > 0 {
		g.TLSShare = float64(g.DeliveredTLS) / float64(g.Delivered)
		w, s := g.weakest, g.strongest
		g.WeakestBits, g.StrongestBits = &w, &s
	}
	for _, m := range []*map[string]int{&g.Versions, &g.Bounces, &g.WouldBounces, &g.HandOffs} {
		if *m == nil {
			*m = map[string]int{}
		}
	}
}

func (p *partial) finish(r *Report) {
	r.Records, r.First, r.Last = p.records, p.first, p.last
	r.Unreadable = p.unreadable
	slices.Sort(p.unreadableAt)
	r.UnreadableAt = p.unreadableAt[:min(len(p.unreadableAt), maxUnreadable)]
	p.total.Name = "total"
	p.total.finish()
	r.Total = p.total
	r.Domains, r.Entries = []Group{}, []Group{}
	r.ListedWithFailures, r.Candidates, r.Cleartext = []string{}, []string{}, []string{}
	for _, g := range p.domains {
		g.finish()
		r.Domains = append(r.Domains, *g)
		switch {
		case g.Listed:
			if g.Bounced+g.Deferrals+g.WouldBounce+g.HandedOff > 0 {
				r.ListedWithFailures = append(r.ListedWithFailures, g.Name)
			}
		case g.DeliveredCleartext > 0:
			r.Cleartext = append(r.Cleartext, g.Name)
		case g.Delivered > 0 && g.metDefault == g.Delivered && !g.exempt:
			r.Candidates = append(r.Candidates, g.Name)
		}
	}
	for _, g := range p.entries {
		g.finish()
		r.Entries = append(r.Entries, *g)
	}
	// Busiest first, then by name, so the same log gives the same report.
	byVolume := func(a, b Group) int {
		if a.Messages+a.Deferrals != b.Messages+b.Deferrals {
			return (b.Messages + b.Deferrals) - (a.Messages + a.Deferrals)
		}
		return strings.Compare(a.Name, b.Name)
	}
	slices.SortFunc(r.Domains, byVolume)
	slices.SortFunc(r.Entries, byVolume)
	slices.Sort(r.ListedWithFailures)
	slices.Sort(r.Candidates)
	slices.Sort(r.Cleartext)
}
