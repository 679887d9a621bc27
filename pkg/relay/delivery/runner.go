package delivery

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/dsn"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Runner is the queue manager: it decides which spooled message is tried
// when, and runs the attempts within the concurrency limits.
type Runner struct {
	cfg Config

	wake chan struct{}

	mu     sync.Mutex
	due    map[string]time.Time // queued, not active: when to try next
	active map[string]bool      // being worked on
	rerun  map[string]bool      // notified while active: look again after
	// force marks messages found by the start-up scan: a start is a
	// queue run (like sendmail -q at start), so their deferred recipients
	// are tried once at once instead of after the remaining backoff.
	force map[string]bool

	// cache holds the outbound connections within the global and
	// per-MX-address limits, and reuses them (reuse.go).
	cache    *connCache
	destMu   sync.Mutex
	destSems map[string]chan struct{} // groups in flight per domain

	stats counters
	// held: Config.Hold said no at the last dispatch (logged once).
	held bool
	// store: failing spool writes and their back-off (storefail.go).
	store storeTrouble
}

// HoldPoll is how often a held runner asks Config.Hold again.
const HoldPoll = 500 * time.Millisecond

type counters struct {
	delivered, deferred, bounced, wouldBounce, dsns atomic.Uint64
}

// Stats are the runner's counters since start, for metrics.
type Stats struct {
	Delivered, Deferred, Bounced, WouldBounce, DSNs uint64
	Queued, Active                                  int
}

// New checks cfg and returns a runner; Run starts it.
func New(cfg Config) (*Runner, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.Audit != nil {
		cfg.Audit = newAuditBatch(cfg.Audit) // auditbatch.go
	}
	return &Runner{
		cfg:      cfg,
		wake:     make(chan struct{}, 1),
		due:      map[string]time.Time{},
		active:   map[string]bool{},
		rerun:    map[string]bool{},
		force:    map[string]bool{},
		cache:    newConnCache(cfg.MaxConnections, cfg.MaxPerDestination, cfg.ConnIdleTime, cfg.ConnMaxAge, cfg.Now),
		destSems: map[string]chan struct{}{},
	}, nil
}

// Stats returns a snapshot of the counters.
func (r *Runner) Stats() Stats {
	r.mu.Lock()
	q, a := len(r.due), len(r.active)
	r.mu.Unlock()
	return Stats{
		Delivered: r.stats.delivered.Load(), Deferred: r.stats.deferred.Load(),
		Bounced: r.stats.bounced.Load(), WouldBounce: r.stats.wouldBounce.Load(),
		DSNs: r.stats.dsns.Load(), Queued: q, Active: a,
	}
}

// Notify tells the runner a message was queued (or changed) and is due now.
func (r *Runner) Notify(id string) {
	r.mu.Lock()
	if r.active[id] {
		r.rerun[id] = true
	} else {
		r.due[id] = time.Time{}
	}
	r.mu.Unlock()
	r.poke()
}

func (r *Runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run works the queue until ctx ends: everything already in the spool is
// picked up first (a restart, even after kill -9, loses nothing that was
// acknowledged). When ctx ends it starts nothing new, lets in-flight
// attempts finish for up to DrainTimeout, then interrupts them; an
// interrupted recipient stays queued for the next start.
func (r *Runner) Run(ctx context.Context) error {
	work, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var wg sync.WaitGroup
	r.scan()
	r.mu.Lock()
	for id := range r.due {
		r.due[id] = time.Time{}
		r.force[id] = true
	}
	r.mu.Unlock()
	scan := time.NewTicker(r.cfg.ScanInterval)
	defer scan.Stop()
	reap := time.NewTicker(max(r.cfg.ConnIdleTime/2, 10*time.Millisecond))
	defer reap.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := r.dispatch(work, &wg)
		wait := r.cfg.ScanInterval
		if !next.IsZero() {
			wait = min(wait, max(next.Sub(r.cfg.Now()), time.Millisecond))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			r.drain(&wg, stop)
			r.cache.shutdown(work)
			return nil
		case <-reap.C:
			r.cache.reap(work)
		case <-r.wake:
		case <-timer.C:
		case <-scan.C:
			r.scan()
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (r *Runner) drain(wg *sync.WaitGroup, stop context.CancelFunc) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.cfg.DrainTimeout):
		r.cfg.Log.Warn("interrupting in-flight deliveries; they stay queued", "after", r.cfg.DrainTimeout)
		stop()
		<-done
	}
}

// scan reads the spool and schedules every message not being worked on,
// from its envelope's own next-attempt times.
func (r *Runner) scan() {
	// Only what was scheduled before this scan may be dropped as gone: a
	// message queued (Notify) while the spool was being listed is not in
	// the listing, yet due now — dropping it left it waiting for the next
	// periodic scan.
	r.mu.Lock()
	before := make(map[string]bool, len(r.due))
	for id := range r.due {
		before[id] = true
	}
	r.mu.Unlock()
	ids, err := r.cfg.Spool.List()
	if err != nil {
		r.cfg.Log.Error("reading the spool", "err", err)
		return
	}
	present := make(map[string]bool, len(ids))
	for _, id := range ids {
		present[id] = true
		r.mu.Lock()
		busy := r.active[id]
		r.mu.Unlock()
		if busy {
			continue
		}
		env, err := r.cfg.Spool.Envelope(id)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				r.cfg.Log.Error("reading an envelope", "id", id, "err", err)
			}
			continue
		}
		r.mu.Lock()
		switch {
		case env.Held:
			delete(r.due, id) // on hold: not scheduled until released
		case !r.active[id]:
			r.due[id] = nextDue(env)
		}
		r.mu.Unlock()
	}
	r.mu.Lock()
	for id := range r.due {
		if before[id] && !present[id] {
			delete(r.due, id) // removed by `smgctl queue delete`
		}
	}
	r.mu.Unlock()
}

// nextDue is the earliest next attempt of a pending recipient; zero (now)
// for a message with no pending recipient, so it is cleaned up.
func nextDue(env *spool.Envelope) time.Time {
	var t time.Time
	first := true
	for _, rc := range env.Recipients {
		if rc.State != spool.Pending {
			continue
		}
		if first || rc.NextAttempt.Before(t) {
			t, first = rc.NextAttempt, false
		}
	}
	return t
}

// dispatch starts the oldest due messages while slots are free and returns
// the earliest future due time (zero when every slot is taken: the next
// finish wakes the loop).
func (r *Runner) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Time {
	now := r.cfg.Now()
	if r.cfg.Hold != nil {
		if err := r.cfg.Hold(); err != nil {
			if !r.held {
				r.cfg.Log.Error("delivery paused", "reason", err)
			}
			r.held = true
			return now.Add(HoldPoll)
		}
		if r.held {
			r.cfg.Log.Info("delivery resumes")
			r.held = false
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	free := r.cfg.MaxMessages - len(r.active)
	if free <= 0 {
		// With a backlog the loop wakes at every accepted message; going
		// through the whole due set each time made dispatch quadratic.
		return time.Time{}
	}
	ready, next := oldestDue(r.due, now, free)
	for _, it := range ready {
		delete(r.due, it.id)
		r.active[it.id] = true
		force := r.force[it.id]
		delete(r.force, it.id)
		wg.Go(func() {
			r.process(ctx, it.id, force)
			r.finish(it.id)
		})
	}
	return next
}

// oldestDue returns up to k messages due by now, oldest first, and the
// earliest due time after now. It keeps a heap of k, so a backlog costs
// O(n log k) per call, not a sort of the whole due set.
func oldestDue(due map[string]time.Time, now time.Time, k int) ([]dueItem, time.Time) {
	ready := make(dueHeap, 0, min(k, len(due)))
	var next time.Time
	for id, t := range due {
		if t.After(now) {
			if next.IsZero() || t.Before(next) {
				next = t
			}
			continue
		}
		it := dueItem{id, t}
		if len(ready) < k {
			heap.Push(&ready, it)
		} else if k > 0 && it.before(ready[0]) {
			ready[0] = it
			heap.Fix(&ready, 0)
		}
	}
	slices.SortFunc(ready, func(a, b dueItem) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	return ready, next
}

type dueItem struct {
	id  string
	due time.Time
}

// before orders by due time, then by ID (IDs sort by arrival).
func (a dueItem) before(b dueItem) bool {
	if c := a.due.Compare(b.due); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// dueHeap is a max-heap: its root is the latest of the items kept.
type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[j].before(h[i]) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// finish reschedules a message after an attempt from its stored envelope.
func (r *Runner) finish(id string) {
	env, err := r.cfg.Spool.Envelope(id)
	r.mu.Lock()
	delete(r.active, id)
	switch {
	case r.rerun[id]:
		delete(r.rerun, id)
		r.due[id] = time.Time{}
	case err == nil:
		r.due[id] = nextDue(env)
		if hold, ok := r.storeHold(id); ok && hold.After(r.due[id]) {
			// Its outcome was not stored: the envelope still says
			// "due now".
			r.due[id] = hold
		}
	case !errors.Is(err, fs.ErrNotExist):
		// Unreadable right now: look again at the next scan.
	}
	r.mu.Unlock()
	r.poke()
}

// process makes one attempt for every due recipient of a message (every
// pending one when force is set).
func (r *Runner) process(ctx context.Context, id string, force bool) {
	log := r.cfg.Log.With("id", id)
	unlock, ok := r.lockForAttempt(id) // hooks.go: `smgctl queue` waits for us
	if !ok {
		return
	}
	defer unlock()
	env, err := r.cfg.Spool.Envelope(id)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Error("reading the envelope", "err", err)
		}
		return
	}
	if env.Held {
		return // put on hold since it was scheduled; release reschedules it
	}
	if !env.Pending() {
		r.remove(env)
		return
	}
	now := r.cfg.Now()
	pol := r.cfg.Policy()
	groups := groupRecipients(env, pol, now, force)

	m := &message{env: env, r: r}
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			release, ok := r.acquire(ctx, g.domain)
			if !ok {
				return // shutting down: the recipients stay due
			}
			res := r.deliverGroup(ctx, env, g)
			release()
			m.record(ctx, g, res)
		})
	}
	wg.Wait()
	m.finish()
	// unstored implies no recipient was returned (those stay pending
	// until finish queues their DSN), so the message is final here.
	// A message whose records were not kept stays queued: its removal
	// must never be the only trace of an attempt.
	if !env.Pending() && !m.unaudited {
		r.remove(env)
	}
}

// groupRecipients splits the recipients due by now (all pending ones when
// force is set) by (domain, requirement). The domain is the canonical one
// the policy lookup used, so the MX lookup cannot find another (issue 10:
// "plain.test.." matched no entry but reached plain.test's MX).
func groupRecipients(env *spool.Envelope, pol *policy.Policy, now time.Time, force bool) []group {
	type key struct {
		domain  string
		req     policy.Requirement
		refused string // the reply's text: a map key must be comparable
	}
	idx := map[key]int{}
	var gs []group
	for _, rc := range env.Recipients {
		if rc.State != spool.Pending || (!force && rc.NextAttempt.After(now)) {
			continue
		}
		m, err := storedMailbox(rc.Address)
		var k key
		var refused smtpreply.Reply
		switch {
		case err != nil:
			refused = smtpreply.BadRecipientSyntax(err)
		case m.IsLiteral():
			k.domain, refused = m.Domain, smtpreply.AddressLiteral
		default:
			k.domain, k.req = m.Domain, pol.LookupMailbox(m).Requirement()
		}
		k.refused = refused.String()
		i, ok := idx[k]
		if !ok {
			i = len(gs)
			idx[k] = i
			gs = append(gs, group{domain: k.domain, req: k.req, refused: refused})
		}
		gs[i].rcpts = append(gs[i].rcpts, rc.Address)
		gs[i].wire = append(gs[i].wire, m.String())
		gs[i].notify = append(gs[i].notify, rc.Notify)
		gs[i].orcpt = append(gs[i].orcpt, rc.ORcpt)
	}
	return gs
}

// storedMailbox reads an address from an envelope. The relay stores
// address.Mailbox.String() since it parses addresses at MAIL and RCPT;
// envelopes spooled before that hold go-smtp's text, quoted local parts
// unquoted ("a b@x" for "a b"@x), which address.ParseValue reads. Either
// way the address goes out written by Mailbox.String, never as stored.
func storedMailbox(s string) (address.Mailbox, error) {
	m, err := address.Parse(s)
	if err != nil {
		if v, verr := address.ParseValue(s); verr == nil {
			return v, nil
		}
	}
	return m, err
}

// acquire takes one of the domain's slots for a group in flight; the
// connections themselves are limited globally and per MX address by the
// cache (a domain whose MX hosts serve many domains, and a domain with
// many MX hosts, are both bounded where the load lands).
func (r *Runner) acquire(ctx context.Context, dest string) (func(), bool) {
	r.destMu.Lock()
	sem, ok := r.destSems[dest]
	if !ok {
		sem = make(chan struct{}, r.cfg.MaxPerDestination)
		r.destSems[dest] = sem
	}
	r.destMu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false
	}
	return func() { <-sem }, true
}

func (r *Runner) remove(env *spool.Envelope) {
	if err := r.cfg.Spool.Remove(env.ID); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Keep the outcome durable at least, so a restart does not
		// deliver the message again. Either way the removal is tried
		// again after the back-off, not at once.
		err = fmt.Errorf("removing a finished message: %w", err)
		if uerr := r.cfg.Spool.Update(env); uerr != nil {
			err = fmt.Errorf("%w; storing the outcome: %w", err, uerr)
		}
		r.storeFailed(env.ID, err)
		return
	}
	r.removed(env.ID)
	r.cfg.Log.Info("message done", "id", env.ID)
}

// message collects the outcomes of one message's attempt. Deliveries are
// written to the envelope as soon as their group finishes, so a crash
// cannot make them go out twice; returned recipients stay pending until
// their DSN is safely queued, so a crash cannot lose the DSN.
type message struct {
	r   *Runner
	mu  sync.Mutex
	env *spool.Envelope
	// returned are the recipients returned in this attempt, to mark
	// final and, where their NOTIFY wants it, to report in its DSN.
	returned []returned
	// unstored: the final state is only in memory; the message must be
	// removed (or, failing that, its envelope written).
	unstored bool
	// unaudited: the audit records of an attempt were not kept.
	unaudited bool
}

func (m *message) rcpt(addr string) *spool.Recipient {
	for i := range m.env.Recipients {
		if m.env.Recipients[i].Address == addr && m.env.Recipients[i].State == spool.Pending {
			return &m.env.Recipients[i]
		}
	}
	return nil
}

// returned is a recipient returned to the sender in this attempt.
type returned struct {
	dsn.Recipient
	report bool // its NOTIFY asks for a failure report (RFC 3461 §4.1)
}

// record applies a group's results to the envelope, stores it and writes
// the audit lines.
func (m *message) record(ctx context.Context, g group, res []Result) {
	r := m.r
	now := r.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	env := m.env
	expires := env.Arrival.Add(r.cfg.QueueLifetime)
	recs := make([]audit.Record, 0, len(res))
	var relayed []dsn.Recipient
	for _, x := range res {
		rc := m.rcpt(x.Rcpt)
		if rc == nil {
			continue
		}
		if ctx.Err() != nil && x.Kind == KindDeferred {
			continue // interrupted by shutdown, not a real attempt: stays due
		}
		rc.Attempts++
		rc.LastReply = x.Reply.String() // the envelope keeps the text
		event := audit.Deferred
		switch x.Kind {
		case KindDelivered:
			rc.State = spool.Delivered
			event = audit.Delivered
			r.stats.delivered.Add(1)
			if x.WouldBounce {
				event = audit.WouldBounce
				r.stats.wouldBounce.Add(1)
			}
			// RFC 3461 §5.2.2: past a hop without DSN, NOTIFY=SUCCESS
			// is answered with "relayed", as nothing further will come.
			if !x.DSNOffered && dsn.Wants(rc.Notify, dsn.Relayed) {
				relayed = append(relayed, dsn.Recipient{
					Address: rc.Address, ORcpt: rc.ORcpt, Action: dsn.Relayed,
					RemoteMTA: x.Hop.MX, Diagnostic: x.Reply, LastAttempt: now,
				})
			}
		case KindBounced:
			event = audit.Bounced
			m.returnRcpt(rc, x, g, "", now)
		case KindDeferred:
			if !now.Before(expires) {
				// RFC 3463 4.4.7: the queue lifetime ran out. A 5xx
				// text here is the relay's own policy verdict (a
				// remote 5xx bounces at once), which the sender is
				// told as it is; anything else is 4.4.7.
				status := smtpreply.StatusExpired
				if x.Reply.Permanent() {
					status = ""
				}
				event = audit.Bounced
				m.returnRcpt(rc, x, g, status, now)
				break
			}
			rc.NextAttempt = now.Add(r.cfg.backoff(rc.Attempts))
			r.stats.deferred.Add(1)
		}
		recs = append(recs, auditRecord(env, g.req, x, event, rc.Attempts, now))
	}
	// The records go first: once the envelope says delivered, nothing
	// would try again, so a crash in between must cost at most a second
	// delivery (recorded), never a delivery without its record.
	if r.cfg.Audit != nil {
		if err := r.cfg.Audit.Write(recs...); err != nil {
			r.cfg.Log.Error("writing the audit log; the message stays queued", "id", env.ID, "err", err)
			m.unaudited = true
		}
	}
	// The "relayed" report is spooled before the envelope says
	// delivered: a crash in between costs a second delivery and report,
	// never the report. A failure to spool it loses only the report.
	if len(relayed) > 0 && env.From != "" {
		if err := r.queueDSN(env, relayed, now); err != nil {
			r.cfg.Log.Error("queueing a relayed DSN; the sender is not told", "id", env.ID, "err", err)
		}
	}
	if !env.Pending() {
		// Every recipient is final and process removes the message next:
		// the removal, durable once its directory fsync returns, is the
		// record that nothing is left to send. Rewriting the envelope
		// first would cost a file and a directory fsync per message and
		// protect nothing; if the removal fails, the envelope is written
		// then (remove).
		m.unstored = true
	} else if err := r.cfg.Spool.Update(env); err != nil {
		r.storeFailed(env.ID, err)
	} else {
		r.storeWorked(env.ID)
	}
	for _, x := range res {
		r.cfg.Log.Info("recipient", "id", env.ID, "rcpt", x.Rcpt, "outcome", x.Kind.String(), "mx", x.Hop.MX,
			"ip", x.Hop.IP, "tls", policy.VersionName(x.Hop.Outcome.Version), "bits", x.Hop.Outcome.Bits(),
			"reply", x.Reply.String(), "diagnostic", x.Diagnostic.String(), "entry", g.req.Target, "line", g.req.Line)
	}
}

// returnRcpt notes a recipient returned in this attempt. It stays pending
// until its DSN is queued (finish).
func (m *message) returnRcpt(rc *spool.Recipient, x Result, g group, status string, now time.Time) {
	m.r.stats.bounced.Add(1)
	d := dsn.Recipient{
		Address:     rc.Address,
		ORcpt:       rc.ORcpt,
		Action:      dsn.Failed,
		Status:      status,
		Diagnostic:  x.Reply,
		LastAttempt: now,
	}
	if x.RemoteReply {
		d.RemoteMTA = x.Hop.MX
	}
	if x.Refused {
		d.Policy = &dsn.PolicyRefusal{File: m.r.cfg.PolicyFile, Entry: g.req.Target, Line: g.req.Line, Host: x.Hop.MX}
	}
	m.returned = append(m.returned, returned{Recipient: d, report: dsn.Wants(rc.Notify, dsn.Failed)})
	rc.NextAttempt = time.Time{}
}

// finish queues the DSNs of this attempt and then marks the returned
// recipients final.
func (m *message) finish() {
	r := m.r
	env := m.env
	now := r.cfg.Now()
	changed := false
	if len(m.returned) > 0 {
		var report []dsn.Recipient
		for _, f := range m.returned {
			if f.report {
				report = append(report, f.Recipient)
			}
		}
		switch {
		case env.From == "":
			// RFC 5321 §4.5.5 / RFC 3464: a DSN is never answered by
			// another; its failure is in the log and the audit log.
			r.cfg.Log.Warn("undeliverable message with the null sender dropped", "id", env.ID, "dsn_of", env.DSNOf)
		case len(report) == 0:
			// RFC 3461 §4.1: NOTIFY=NEVER, or a list without FAILURE.
			r.cfg.Log.Info("no DSN: the sender's NOTIFY excludes failures", "id", env.ID, "recipients", len(m.returned))
		default:
			if err := r.queueDSN(env, report, now); err != nil {
				r.cfg.Log.Error("queueing a DSN; the recipients stay queued", "id", env.ID, "err", err)
				for _, f := range m.returned {
					if rc := m.rcpt(f.Address); rc != nil {
						rc.NextAttempt = now.Add(r.cfg.backoff(1))
					}
				}
				m.returned = nil
			}
		}
		for _, f := range m.returned {
			if rc := m.rcpt(f.Address); rc != nil {
				rc.State = spool.Bounced
				if f.Status == smtpreply.StatusExpired {
					rc.State = spool.Expired
				}
			}
		}
		changed = true
	}
	if r.warnDelayed(env, now) {
		changed = true
	}
	if changed {
		if err := r.cfg.Spool.Update(env); err != nil {
			r.storeFailed(env.ID, err)
		} else {
			r.storeWorked(env.ID)
		}
	}
}

// maxHeaders bounds the original header block quoted in a DSN.
const maxHeaders = 64 << 10

// queueDSN builds a report on env for rcpts and spools it with the null
// sender, to the original sender.
func (r *Runner) queueDSN(env *spool.Envelope, rcpts []dsn.Recipient, now time.Time) error {
	d, err := returnToSender(r.cfg.Spool, r.cfg.Hostname, r.cfg.MaxReturn, env, rcpts, now)
	if err != nil {
		return err
	}
	r.stats.dsns.Add(1)
	r.cfg.Log.Info("DSN queued", "id", d.ID, "dsn_of", env.ID, "to", env.From, "recipients", len(rcpts), "action", string(rcpts[0].Action))
	r.Notify(d.ID)
	return nil
}

func auditRecord(env *spool.Envelope, req policy.Requirement, x Result, event audit.Event, attempt int, now time.Time) audit.Record {
	rec := audit.Record{
		Time: now, Event: event, QueueID: env.ID, MessageID: env.MessageID,
		Sender: env.From, Recipient: x.Rcpt,
		PolicyTarget: req.Target, PolicyLine: req.Line,
		MX: x.Hop.MX, IP: x.Hop.IP,
		Reply: x.Reply.String(), Diagnostic: x.Diagnostic.String(), Attempt: attempt,
	}
	if req.Target != "" {
		rec.Requirement = &audit.Requirement{
			Bits: req.Bits, MinTLS: req.Options.Get("min-tls"), Verify: req.Verify.String(),
			Mode: req.Mode.String(), OnFail: req.Get("on-fail"), // route:HOST[:PORT] with its host
		}
	}
	if o := x.Hop.Outcome; o.TLS {
		rec.TLS = true
		rec.TLSVersion = policy.VersionName(o.Version)
		rec.Cipher = policy.SuiteName(o.CipherSuite)
		rec.Bits = o.Bits()
		rec.CertVerified = o.Verified
	}
	if event == audit.Bounced && x.Diagnostic.IsZero() {
		rec.Diagnostic = x.Reply.String()
	}
	return rec
}
