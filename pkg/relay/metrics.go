package relay

import (
	"errors"
	"io/fs"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/relay/delivery"
	"github.com/smgctl/smgctl/pkg/relay/inbound"
)

// metrics is the relay's Prometheus registry. It uses client_golang
// rather than hand-written text because the exposition format (escaping,
// HELP/TYPE, histogram buckets, OpenMetrics negotiation) is its job, and a
// private registry keeps the relay's metrics per instance (tests run
// several relays in one process) instead of in the global default.
//
// What is counted where:
//   - recipient outcomes, TLS versions and cipher bits come from the audit
//     records on their way to the audit log (observer), so the metrics
//     and the audit log cannot disagree;
//   - queue size and the oldest message's age are read from the spool at
//     scrape time, so they include changes made by `smgctl queue`;
//   - the runner's and the policy watcher's own counters are read at
//     scrape time too (the names from before client_golang are kept).
type metrics struct {
	reg *prometheus.Registry

	outcomes *prometheus.CounterVec
	versions *prometheus.CounterVec
	bits     prometheus.Histogram
	sessions prometheus.Counter
	// hopsFailed counts hop-failed audit records: MX hosts (per
	// address and recipient) an attempt tried or ruled out before
	// another carried the mail or the attempt failed.
	hopsFailed prometheus.Counter
}

// bitsBuckets are the strengths that matter for the policy: 0 (no TLS or
// NULL), 56 (DES/export), 111 (below the 112 floor of B4), 112 (3DES),
// 128 and 256. A histogram, so "how much went out below 128" is one query.
var bitsBuckets = []float64{0, 56, 111, 112, 128, 256}

func newMetrics(r *Relay) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smgctl_relay_recipient_outcomes_total",
			Help: "Recipient outcomes written to the audit log, by event (delivered, deferred, bounced, would-bounce, handed-off, dropped).",
		}, []string{"outcome"}),
		versions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smgctl_relay_delivered_tls_total",
			Help: "Recipients delivered, by the TLS version of the connection (\"none\" for clear text).",
		}, []string{"version"}),
		bits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smgctl_relay_delivered_cipher_bits",
			Help:    "Cipher strength (SSL_CIPHER_get_bits) of the connections recipients were delivered over; 0 for clear text.",
			Buckets: bitsBuckets,
		}),
		sessions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smgctl_relay_inbound_sessions_total",
			Help: "Inbound SMTP connections accepted.",
		}),
		hopsFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smgctl_relay_hops_failed_total",
			Help: "MX hosts an attempt passed over (hop-failed audit records, one per recipient): refused by policy, ruled out before connecting, or unreachable.",
		}),
	}
	for _, o := range []audit.Event{audit.Delivered, audit.Deferred, audit.Bounced, audit.WouldBounce, audit.HandedOff, audit.Dropped} {
		m.outcomes.WithLabelValues(string(o)) // present at 0 before the first
	}
	m.reg.MustRegister(m.outcomes, m.versions, m.bits, m.sessions, m.hopsFailed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	stats := func(f func(delivery.Stats) float64) func() float64 {
		return func() float64 { return f(r.runner.Stats()) }
	}
	counter := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter("smgctl_relay_delivered_total", "Recipients delivered.", stats(func(s delivery.Stats) float64 { return float64(s.Delivered) }))
	counter("smgctl_relay_deferred_total", "Recipient attempts deferred.", stats(func(s delivery.Stats) float64 { return float64(s.Deferred) }))
	counter("smgctl_relay_bounced_total", "Recipients returned to the sender.", stats(func(s delivery.Stats) float64 { return float64(s.Bounced) }))
	counter("smgctl_relay_would_bounce_total", "mode=testing recipients delivered that enforce mode would have returned.", stats(func(s delivery.Stats) float64 { return float64(s.WouldBounce) }))
	counter("smgctl_relay_dsn_total", "DSNs queued (failed and delayed).", stats(func(s delivery.Stats) float64 { return float64(s.DSNs) }))
	gauge("smgctl_relay_queue_messages", "Messages the queue runner holds (waiting or being delivered).", stats(func(s delivery.Stats) float64 { return float64(s.Queued + s.Active) }))
	gauge("smgctl_relay_active_messages", "Messages being delivered now.", stats(func(s delivery.Stats) float64 { return float64(s.Active) }))
	gauge("smgctl_relay_inbound_connections", "Open inbound SMTP connections.", func() float64 { return float64(r.server.Active()) })
	inboundStats := func(f func(inbound.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(r.server.Stats())) }
	}
	counter("smgctl_relay_auth_failures_total", "Inbound AUTH attempts that failed (wrong credentials or a malformed response).",
		inboundStats(func(s inbound.Stats) uint64 { return s.AuthFailures }))
	for reason, f := range map[string]func(inbound.Stats) uint64{
		"max_connections":         func(s inbound.Stats) uint64 { return s.RefusedFull },
		"max_connections_per_ip":  func(s inbound.Stats) uint64 { return s.RefusedPerIP },
		"max_connections_outside": func(s inbound.Stats) uint64 { return s.RefusedOutside },
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "smgctl_relay_inbound_refused_total",
			Help:        "Inbound SMTP connections turned away with 421 4.7.0, by the limit that was reached.",
			ConstLabels: prometheus.Labels{"limit": reason},
		}, inboundStats(f)))
	}
	gauge("smgctl_policy_entries", "Entries of the policy in force.", func() float64 { return float64(r.watcher.Stats().Entries) })
	counter("smgctl_policy_reloads_total", "Policies put in force.", func() float64 { return float64(r.watcher.Stats().Loads) })
	counter("smgctl_policy_reload_failures_total", "Policy files refused; the previous policy stayed in force.", func() float64 { return float64(r.watcher.Stats().Failures) })
	gauge("smgctl_policy_last_reload_ok", "1 when the file on disk is the policy in force, 0 when it was refused (the previous policy stays in force).", func() float64 {
		if r.watcher.Stats().LastError != "" {
			return 0
		}
		return 1
	})
	gauge("smgctl_policy_write_in_progress", "1 while the policy file is being written in place: it is read when the writer has closed it.", func() float64 {
		if r.watcher.Stats().Writing {
			return 1
		}
		return 0
	})
	gauge("smgctl_relay_health", "The relay's health: 0 ok, 1 degraded, 2 failing (reasons on /healthz).", func() float64 {
		level, _ := r.health.Snapshot()
		return float64(level)
	})
	journal := func(f func(found, kept int, bytes int64) float64) func() float64 {
		return func() float64 { return f(r.journalDamage.stats()) }
	}
	counter("smgctl_spool_journal_damaged_total", "Journal segments that held less than was acknowledged, found at start and kept in corrupt/.",
		journal(func(found, _ int, _ int64) float64 { return float64(found) }))
	gauge("smgctl_spool_journal_corrupt_segments", "Damaged journal segments in corrupt/ (at start or SIGHUP): acknowledged mail may be lost.",
		journal(func(_, kept int, _ int64) float64 { return float64(kept) }))
	gauge("smgctl_spool_journal_unaccounted_bytes", "Acknowledged bytes of the segments in corrupt/ that are not intact records.",
		journal(func(_, _ int, bytes int64) float64 { return float64(bytes) }))
	m.reg.MustRegister(&spoolCollector{r: r})
	return m
}

// observe returns a Recorder that counts each record and passes it on to
// the audit log.
func (m *metrics) observe(next delivery.Recorder) delivery.Recorder {
	return recorderFunc(func(recs ...audit.Record) error {
		m.count(recs)
		return next.Write(recs...)
	})
}

// count adds audit records to the outcome counters and, for deliveries,
// the TLS version and bits.
func (m *metrics) count(recs []audit.Record) {
	for _, rec := range recs {
		if rec.Event == audit.HopFailed {
			m.hopsFailed.Inc() // one MX passed over, not an outcome
			continue
		}
		m.outcomes.WithLabelValues(string(rec.Event)).Inc()
		if rec.Event != audit.Delivered && rec.Event != audit.WouldBounce {
			continue
		}
		v := rec.TLSVersion
		if !rec.TLS || v == "" {
			v = "none"
		}
		m.versions.WithLabelValues(v).Inc()
		m.bits.Observe(float64(rec.Bits))
	}
}

type recorderFunc func(recs ...audit.Record) error

func (f recorderFunc) Write(recs ...audit.Record) error { return f(recs...) }

// countSessions counts the connections accepted on l.
func (m *metrics) countSessions(l net.Listener) net.Listener {
	return &countingListener{Listener: l, n: m.sessions}
}

type countingListener struct {
	net.Listener
	n prometheus.Counter
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Inc()
	}
	return c, err
}

// spoolCollector reports what is on disk at scrape time.
type spoolCollector struct{ r *Relay }

var (
	spoolMessagesDesc = prometheus.NewDesc("smgctl_spool_messages",
		"Messages in the spool, including those `smgctl queue` changed since the last queue scan.", nil, nil)
	spoolOldestDesc = prometheus.NewDesc("smgctl_spool_oldest_message_age_seconds",
		"Age of the oldest message in the spool; 0 when it is empty.", nil, nil)
	spoolErrorDesc = prometheus.NewDesc("smgctl_spool_scrape_error",
		"1 when the spool could not be read at this scrape.", nil, nil)
)

func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- spoolMessagesDesc
	ch <- spoolOldestDesc
	ch <- spoolErrorDesc
}

// Collect lists the spool (one directory read) and reads the envelope of
// the oldest message only: IDs sort by arrival.
func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	ids, err := c.r.spool.List()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(spoolErrorDesc, prometheus.GaugeValue, 1)
		return
	}
	ch <- prometheus.MustNewConstMetric(spoolErrorDesc, prometheus.GaugeValue, 0)
	ch <- prometheus.MustNewConstMetric(spoolMessagesDesc, prometheus.GaugeValue, float64(len(ids)))
	age := 0.0
	for _, id := range ids {
		env, err := c.r.spool.Envelope(id)
		if errors.Is(err, fs.ErrNotExist) {
			continue // delivered since List
		}
		if err == nil {
			age = max(time.Since(env.Arrival).Seconds(), 0)
		}
		break
	}
	ch <- prometheus.MustNewConstMetric(spoolOldestDesc, prometheus.GaugeValue, age)
}
