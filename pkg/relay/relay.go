// Package relay wires the enforcing relay together along the mail path:
// the inbound SMTP server accepts a message into the spool, the queue
// runner delivers it under the policy in force (kept current by the
// watcher), and every recipient's outcome ends in the audit log and, when
// it fails, in a DSN to the sender.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/mtasts"
	"github.com/smgctl/smgctl/pkg/mx"
	"github.com/smgctl/smgctl/pkg/relay/auditgate"
	"github.com/smgctl/smgctl/pkg/relay/authfile"
	"github.com/smgctl/smgctl/pkg/relay/delivery"
	"github.com/smgctl/smgctl/pkg/relay/health"
	"github.com/smgctl/smgctl/pkg/relay/inbound"
	"github.com/smgctl/smgctl/pkg/relay/policywatch"
	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/relay/tlsrpt"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

// Relay is a running relay's parts. Create it with New, run it with Run.
type Relay struct {
	cfg Config
	log *slog.Logger

	spool *spool.Spool
	audit *audit.Log
	// gate keeps delivery and intake waiting while the audit log cannot
	// be written; every record goes through it.
	gate    *auditgate.Gate
	watcher *policywatch.Watcher
	auth    *authfile.Checker // nil: no AUTH
	runner  *delivery.Runner
	server  *inbound.Server
	ln      net.Listener
	adminLn net.Listener
	started time.Time
	metrics *metrics // metrics.go
	// health is where every part reports what is wrong (/healthz).
	health *health.Board
	// journalDamage: journal segments kept in corrupt/ (journaldamage.go).
	journalDamage journalDamage
	// reports sends the daily TLS-RPT reports; nil when off.
	reports *tlsrpt.Sender
	// sts is the MTA-STS policy cache in <spool>/mta-sts; nil without a
	// resolver.
	sts *mtasts.Cache
}

// New opens the spool, the audit log and the policy and binds the
// listeners, so that every configuration mistake shows before Run.
func New(cfg Config, log *slog.Logger) (r *Relay, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	if cfg.Hostname == "" {
		if cfg.Hostname, err = os.Hostname(); err != nil || cfg.Hostname == "" {
			cfg.Hostname = "localhost"
		}
	}
	r = &Relay{cfg: cfg, log: log, started: time.Now(), health: &health.Board{}}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	r.metrics = newMetrics(r)
	// The audit log, the spool and the audit backlog in it first: loading
	// the policy may audit a change made outside `smgctl policy`
	// (policyaudit.go), and that record goes through the gate like any.
	// Both create their directories; the operator is told which.
	auditCreated, spoolCreated := missingDirs(auditDir(cfg.AuditLog)), missingDirs(cfg.Spool)
	if r.audit, err = audit.OpenWith(cfg.AuditLog, audit.Options{MaxSize: cfg.AuditMaxSize, MaxAge: cfg.AuditMaxAge}, log.With("part", "audit")); err != nil {
		return nil, err
	}
	closers = append(closers, r.audit.Close)
	r.logCreated("audit log", auditCreated)
	if r.spool, err = spool.OpenRelay(cfg.Spool, log.With("part", "spool")); err != nil {
		return nil, err
	}
	closers = append(closers, r.spool.Close)
	r.logCreated("spool", spoolCreated)
	r.checkJournalDamage(true)
	// The backlog lives in the spool: another filesystem than the log's,
	// usually, and the relay's own durable state.
	if r.gate, err = auditgate.Open(auditgate.Config{Log: r.audit, Dir: filepath.Join(cfg.Spool, "audit-backlog"),
		Health: r.health, Logger: log.With("part", "audit")}); err != nil {
		return nil, err
	}
	if r.watcher, err = policywatch.New(policywatch.Config{
		Path:      cfg.Policy,
		MissingOK: cfg.Policy == cfg.defaultPolicy(),
		Log:       log.With("part", "policy"),
		Health:    r.health,
		Loaded:    r.policyLoaded,
	}); err != nil {
		return nil, err
	}

	roots, err := smtpclient.RootPool(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("ca-file: %w", err)
	}
	delay := cfg.DelayWarning
	if delay <= 0 {
		delay = -1 // off; delivery's zero means its default
	}
	var resolver delivery.Resolver
	res, rerr := mx.NewResolver(cfg.Resolver, 0)
	switch {
	case rerr == nil:
		res = res.WithLogger(log.With("part", "dns")).WithTrustedAD(cfg.DNSTrusted)
		resolver = res
	case len(cfg.Routes) > 0:
		// A lab with static routes only needs no DNS.
		log.Warn("no DNS resolver; only routed domains can be delivered", "err", rerr)
	default:
		return nil, fmt.Errorf("resolver: %w", rerr)
	}
	dcfg := delivery.Config{
		Spool:         r.spool,
		Policy:        r.watcher.Policy,
		Resolver:      resolver,
		Audit:         r.metrics.observe(r.gate),
		Hold:          r.gate.Held,
		Log:           log.With("part", "delivery"),
		Health:        r.health,
		Hostname:      cfg.Hostname,
		PolicyFile:    filepath.Base(cfg.Policy),
		RootCAs:       roots,
		Routes:        cfg.Routes,
		MXPort:        cfg.MXPort,
		QueueLifetime: cfg.QueueLifetime,
		DelayWarning:  delay,
	}
	if res != nil {
		if err := r.publishedPolicies(&dcfg, res, roots); err != nil { // published.go
			return nil, err
		}
	}
	if r.runner, err = delivery.New(dcfg); err != nil {
		return nil, err
	}

	if cfg.TLSRPT && res != nil {
		if r.reports, err = r.newReportSender(res, roots); err != nil {
			return nil, err
		}
	}

	var tlsConf *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("tls-cert/tls-key: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	var authCheck func(ctx context.Context, user, pass string) bool
	if cfg.AuthFile != "" {
		// Config.Check made sure there is a certificate: inbound offers
		// AUTH only after STARTTLS (RFC 4954 §4).
		if r.auth, err = authfile.Open(cfg.AuthFile, log.With("part", "auth")); err != nil {
			return nil, err
		}
		authCheck = r.auth.Check
	}
	if r.server, err = inbound.New(inbound.Config{
		Hostname:              cfg.Hostname,
		Addr:                  cfg.Listen,
		TLS:                   tlsConf,
		Allow:                 cfg.Allow,
		Auth:                  authCheck,
		MaxMessageBytes:       cfg.MaxSize,
		MaxConnections:        cfg.MaxConnections,
		MaxRecipients:         cfg.MaxRecipients,
		MaxConnectionsPerIP:   cfg.MaxConnectionsPerIP,
		MaxOutsideConnections: cfg.MaxOutsideConnections,
		IdleTimeout:           cfg.IdleTimeout,
		CommandTimeout:        cfg.CommandTimeout,
		DataTimeout:           cfg.DataTimeout,
		Queue:                 reportingQueue{r.spool, r.health},
		Notify:                r.runner.Notify,
		Refuse:                r.gate.Held,
		Logger:                log.With("part", "inbound"),
	}); err != nil {
		return nil, err
	}
	if r.ln, err = inbound.Listen(context.Background(), cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	r.ln = r.metrics.countSessions(r.ln)
	closers = append(closers, r.ln.Close)
	if cfg.Admin != "" {
		if r.adminLn, err = inbound.Listen(context.Background(), cfg.Admin); err != nil {
			return nil, fmt.Errorf("admin: %w", err)
		}
		if lo, _ := inbound.IsLoopbackAddr(cfg.Admin); !lo {
			log.Warn("admin endpoints published beyond loopback (admin-public = true); /healthz and /metrics have no authentication", "admin", r.adminLn.Addr().String())
		}
		closers = append(closers, r.adminLn.Close)
	}
	return r, nil
}

// Addr is the address the SMTP server listens on.
func (r *Relay) Addr() net.Addr { return r.ln.Addr() }

// AdminAddr is the admin listener's address; nil when off.
func (r *Relay) AdminAddr() net.Addr {
	if r.adminLn == nil {
		return nil
	}
	return r.adminLn.Addr()
}

// Hostname is the name the relay uses.
func (r *Relay) Hostname() string { return r.cfg.Hostname }

// Reload re-reads the policy and the auth file now (SIGHUP). A broken
// file is refused and what was in force stays.
func (r *Relay) Reload() error {
	err := r.watcher.Reload()
	// The operator may have dealt with damaged journal segments.
	r.checkJournalDamage(false)
	if r.auth != nil {
		err = errors.Join(err, r.auth.Reload())
	}
	return err
}

// Run serves until ctx ends, then stops in order: no new connections,
// transactions in progress finish, in-flight deliveries finish (bounded),
// the audit log and spool are closed. Anything not delivered stays in the
// spool for the next start.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	background := context.WithoutCancel(ctx)

	serveCtx, stopServe := context.WithCancel(background)
	defer stopServe()
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- r.server.Serve(serveCtx, r.ln) })

	watchCtx, stopWatch := context.WithCancel(background)
	defer stopWatch()
	wg.Go(func() { r.watcher.Run(watchCtx) })
	wg.Go(func() { r.gate.Run(watchCtx) })

	runCtx, stopRunner := context.WithCancel(background)
	defer stopRunner()
	runnerDone := make(chan struct{})
	wg.Go(func() { r.runner.Run(runCtx); close(runnerDone) })
	wg.Go(func() { r.operate(watchCtx) }) // queuerun.go: queue wake-ups, delay/expiry timer
	if r.reports != nil {
		wg.Go(func() { r.reports.Run(watchCtx) })
	}
	if r.sts != nil && r.cfg.PublishedPolicies {
		// Refreshes cached MTA-STS policies ahead of expiry, off the
		// delivery path (not while published policies are off).
		wg.Go(func() { r.sts.Run(watchCtx) })
	}

	var admin *http.Server
	if r.adminLn != nil {
		admin = &http.Server{Handler: r.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { admin.Serve(r.adminLn) })
	}
	r.log.Info("relay running", "listen", r.ln.Addr().String(), "hostname", r.cfg.Hostname,
		"spool", r.cfg.Spool, "policy", r.cfg.Policy, "audit_log", r.cfg.AuditLog)
	r.logStartNotes()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
		r.log.Error("smtp server stopped", "err", err)
	}
	r.log.Info("shutting down")
	deadline, cancel := context.WithTimeout(background, r.cfg.ShutdownTimeout)
	defer cancel()
	if serr := r.server.Shutdown(deadline); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
		r.log.Warn("smtp shutdown", "err", serr)
	}
	stopServe()
	stopRunner()
	<-runnerDone
	stopWatch()
	if admin != nil {
		admin.Shutdown(deadline)
	}
	wg.Wait()
	if cerr := r.audit.Close(); cerr != nil {
		r.log.Error("closing the audit log", "err", cerr)
	}
	r.spool.Close()
	r.log.Info("stopped")
	return err
}
