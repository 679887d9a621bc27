package delivery

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/relay/courier"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpclient"
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

	// courier makes the SMTP attempts (pkg/relay/courier unless
	// Config.Courier replaces it); the connection limits are its.
	courier  Courier
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
	c := cfg.Courier
	if c == nil {
		c = smtpCourier(cfg)
	}
	return &Runner{
		cfg:      cfg,
		wake:     make(chan struct{}, 1),
		due:      map[string]time.Time{},
		active:   map[string]bool{},
		rerun:    map[string]bool{},
		force:    map[string]bool{},
		courier:  c,
		destSems: map[string]chan struct{}{},
	}, nil
}

// smtpCourier is the relay's courier, configured from cfg.
func smtpCourier(cfg Config) *courier.SMTP {
	return courier.New(courier.Config{
		Hostname: cfg.Hostname, Resolver: cfg.Resolver, DANE: cfg.DANE, Routes: cfg.Routes, MXPort: cfg.MXPort,
		RootCAs: cfg.RootCAs, Timeouts: cfg.Timeouts,
		MaxConnections: cfg.MaxConnections, MaxPerAddress: cfg.MaxPerDestination,
		ConnIdleTime: cfg.ConnIdleTime, ConnMaxAge: cfg.ConnMaxAge,
		Log: cfg.Log, Now: cfg.Now,
	})
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
			r.courier.Shutdown(work)
			return nil
		case <-reap.C:
			r.courier.Reap(work)
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
	msg := courierMessage(r.cfg.Spool, env)
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			release, ok := r.acquire(ctx, g.Domain)
			if !ok {
				return // shutting down: the recipients stay due
			}
			g, sts, ok := r.published(ctx, env, g)
			if !ok {
				release()
				return // shutting down before the MTA-STS policy was known: stays due
			}
			res := r.courier.Deliver(ctx, msg, g)
			release()
			m.record(ctx, g, sts, res)
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
func groupRecipients(env *spool.Envelope, pol *policy.Policy, now time.Time, force bool) []courier.Group {
	type key struct {
		domain  string
		req     policy.Requirement
		refused string // the reply's text: a map key must be comparable
	}
	idx := map[key]int{}
	var gs []courier.Group
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
			// REQUIRETLS and what the domain publishes join the list's
			// requirement later, per group (published.go).
			k.domain, k.req = m.Domain, pol.LookupMailbox(m).Requirement()
		}
		k.refused = refused.String()
		i, ok := idx[k]
		if !ok {
			i = len(gs)
			idx[k] = i
			gs = append(gs, courier.Group{Domain: k.domain, Req: k.req, Refused: refused})
		}
		gs[i].Rcpts = append(gs[i].Rcpts, courier.Recipient{
			Stored: rc.Address,
			RCPT:   smtpclient.Recipient{Addr: m.String(), Notify: rc.Notify, ORcpt: rc.ORcpt},
		})
	}
	return gs
}

// courierMessage is what the courier needs of env. The reverse-path goes
// out written by Mailbox.String, never as stored.
func courierMessage(sp *spool.Spool, env *spool.Envelope) *courier.Message {
	from := env.From
	if m, err := storedMailbox(from); err == nil {
		from = m.String()
	} // else "" (the null sender) or unreadable: the session refuses it
	return &courier.Message{
		ID:   env.ID,
		From: from,
		Options: smtpclient.MailOptions{Size: env.Size, SMTPUTF8: env.SMTPUTF8, Body8BIT: env.Body8Bit,
			Ret: env.DSNRet, EnvID: env.DSNEnvID},
		Body:       func() (io.ReadCloser, error) { return sp.Body(env.ID) },
		RequireTLS: env.RequireTLS,
	}
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
