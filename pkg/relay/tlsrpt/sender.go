package tlsrpt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
	report "github.com/smgctl/smgctl/pkg/audit/tlsrpt"
	"github.com/smgctl/smgctl/pkg/safeio"
)

// Config is what the sender needs from the relay.
type Config struct {
	// AuditLog is the relay's audit log (its rotated files are read too).
	AuditLog string
	// State is the state file (StateFile: beside the spool).
	State string
	// Submitter, Organization and Contact name the relay in the reports
	// (report.Submitter gives the defaults); Contact is also the sender
	// of the mailed reports.
	Submitter, Organization, Contact string
	// LookupTXT looks up a name's TXT records (mx.Resolver.LookupTXT).
	LookupTXT func(ctx context.Context, name string) ([]string, error)
	// IsNotFound says a LookupTXT error means the name has no records
	// (mx.IsNotFound): the domain asks for no report.
	IsNotFound func(error) bool
	// Enqueue puts a report message into the relay's queue.
	Enqueue func(*Mail) error
	// Audit writes the tlsrpt-sent and tlsrpt-failed records.
	Audit func(...audit.Record) error
	// LookupAddrs finds an HTTPS rua host's addresses
	// (mx.Resolver.LookupAddrs), so that the relay's `resolver` serves
	// these names as it serves the domain's _smtp._tls record; nil = the
	// system's resolver.
	LookupAddrs func(ctx context.Context, host string) ([]netip.Addr, error)
	// RootCAs verify the HTTPS rua servers: the system's and the
	// operator's CAs (smtpclient.RootPool).
	RootCAs *x509.CertPool
	// HTTPTimeout bounds one POST; 0 = DefaultHTTPTimeout.
	HTTPTimeout time.Duration
	// MaxDelay bounds the random delay after midnight (and after start)
	// before the day's pass; 0 = DefaultMaxDelay.
	MaxDelay time.Duration
	Now      func() time.Time
	Log      *slog.Logger
}

const (
	DefaultHTTPTimeout = 30 * time.Second
	DefaultMaxDelay    = 15 * time.Minute
	// retryAfter: a pass that could not decide a domain (DNS failure)
	// runs again this much later, the same day.
	retryAfter = time.Hour
)

// StateFile is the state file's name in the spool directory.
const StateFile = "tlsrpt-state.json"

// Sender sends each day's reports once.
type Sender struct {
	cfg    Config
	client *http.Client
}

// New checks cfg and makes a Sender.
func New(cfg Config) (*Sender, error) {
	if cfg.AuditLog == "" || cfg.State == "" || cfg.LookupTXT == nil || cfg.Enqueue == nil || cfg.Audit == nil {
		return nil, errors.New("tlsrpt: AuditLog, State, LookupTXT, Enqueue and Audit are required")
	}
	if cfg.HTTPTimeout <= 0 {
		cfg.HTTPTimeout = DefaultHTTPTimeout
	}
	if cfg.MaxDelay <= 0 {
		cfg.MaxDelay = DefaultMaxDelay
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.IsNotFound == nil {
		cfg.IsNotFound = func(error) bool { return false }
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		Proxy:             http.ProxyFromEnvironment,
		ForceAttemptHTTP2: true,
	}
	if cfg.LookupAddrs != nil {
		tr.DialContext = dialVia(cfg.LookupAddrs)
	}
	client := &http.Client{
		Timeout:   cfg.HTTPTimeout,
		Transport: tr,
		// A redirect is not a receipt: the report is POSTed to the URI
		// the domain published, nowhere else.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &Sender{cfg: cfg, client: client}, nil
}

// dialVia dials the addresses lookup gives for the host (an address
// literal as it is), each in turn until one answers.
func dialVia(lookup func(ctx context.Context, host string) ([]netip.Addr, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs := []netip.Addr{}
		if a, err := netip.ParseAddr(host); err == nil {
			addrs = append(addrs, a)
		} else if addrs, err = lookup(ctx, host); err != nil {
			return nil, err
		}
		var last error = fmt.Errorf("%s: no address", host)
		for _, a := range addrs {
			c, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
}

// Domain states in the state file.
const (
	// stateSending is written, durably, before the first rua of a
	// domain is tried: found after a restart it means the relay stopped
	// while sending, and the domain is not tried again that day.
	stateSending = "sending"
	stateSent    = "sent"
	stateNoRUA   = "no-record"
)

// State is the state file: the day whose reports are being sent and
// each policy domain's progress.
type State struct {
	Day     string            `json:"day"`
	Domains map[string]string `json:"domains"`
}

// load reads the state of day. A state file of another day is
// replaced; it is returned as stale so that a sending it left
// interrupted is still audited.
func (s *Sender) load(day string) (st, stale *State, err error) {
	st = &State{Day: day, Domains: map[string]string{}}
	b, err := os.ReadFile(s.cfg.State)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var old State
	if err := json.Unmarshal(b, &old); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.cfg.State, err)
	}
	if old.Domains == nil {
		return st, nil, nil
	}
	if old.Day == day {
		return &old, nil, nil
	}
	return st, &old, nil
}

// auditInterrupted audits the domains a stop left "sending" in st and
// marks them sent: they are never tried again.
func (s *Sender) auditInterrupted(st *State) {
	day, err := time.Parse(time.DateOnly, st.Day)
	if err != nil {
		return
	}
	for _, d := range slices.Sorted(maps.Keys(st.Domains)) {
		if st.Domains[d] != stateSending {
			continue
		}
		s.cfg.Log.Warn("TLS-RPT report interrupted by a stop; not sent again", "domain", d, "day", st.Day)
		s.cfg.Audit(audit.Record{Event: audit.TLSRPTFailed, ReportDomain: d,
			ReportID:   report.ReportID(day, d, s.cfg.Submitter),
			Diagnostic: "the relay stopped while sending this report; it is not sent again (at most once a day)"})
		st.Domains[d] = stateSent
	}
}

func (s *Sender) save(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return safeio.WriteFile(s.cfg.State, append(b, '\n'), 0o600)
}

// Run sends yesterday's reports after a random delay, then each day's
// after the next midnight UTC plus a random delay, until ctx ends.
func (s *Sender) Run(ctx context.Context) {
	wait := s.delay()
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		retry, err := s.Pass(ctx)
		if err != nil {
			s.cfg.Log.Error("sending TLS-RPT reports", "err", err)
			retry = true
		}
		now := s.cfg.Now().UTC()
		wait = report.DayStart(now).Add(24*time.Hour).Sub(now) + s.delay()
		if retry && wait > retryAfter {
			wait = retryAfter
		}
	}
}

// delay spreads the relays' reports over the first minutes of the day.
func (s *Sender) delay() time.Duration {
	return time.Duration(rand.Int64N(int64(s.cfg.MaxDelay)))
}

// Pass sends the reports on the day before today (UTC) that have not
// been sent, and says whether a domain is left for a later pass (its
// TLS-RPT record could not be looked up).
//
// Exactly once per domain and day, across restarts, is made
// at-most-once: the state file says "sending" for the domain, durably,
// before anything is sent, and "sent" after. A domain found "sending"
// (the relay stopped in between) is not sent again: a report a partner
// receives twice distorts its counts, one it misses only leaves a gap.
// A failure to send is audited (tlsrpt-failed) and not retried: the
// mail is retried by the queue like any message, and the RFC's HTTPS
// retry advice is left to the next day's report.
func (s *Sender) Pass(ctx context.Context) (retry bool, err error) {
	day := report.DayStart(s.cfg.Now()).Add(-24 * time.Hour)
	st, stale, err := s.load(day.Format(time.DateOnly))
	if err != nil {
		return false, err
	}
	if stale != nil {
		s.auditInterrupted(stale)
	}
	s.auditInterrupted(st)
	if err := s.save(st); err != nil {
		return false, err
	}
	logs, err := logset.Logs([]string{s.cfg.AuditLog})
	if err != nil {
		return false, err
	}
	reps, err := report.Build(ctx, logs, report.Options{Day: day, Organization: s.cfg.Organization,
		Contact: s.cfg.Contact, Submitter: s.cfg.Submitter})
	if err != nil {
		return false, err
	}
	for _, r := range reps {
		domain := r.Policies[0].Policy.Domain
		if st.Domains[domain] != "" {
			continue
		}
		txts, err := s.cfg.LookupTXT(ctx, "_smtp._tls."+domain)
		if err != nil && !s.cfg.IsNotFound(err) {
			s.cfg.Log.Warn("looking up the TLS-RPT record; trying again later", "domain", domain, "err", err)
			retry = true
			continue
		}
		ruas, perr := ParseRecords(txts)
		if err != nil || perr != nil {
			st.Domains[domain] = stateNoRUA
			if err := s.save(st); err != nil {
				return retry, err
			}
			continue
		}
		st.Domains[domain] = stateSending
		if err := s.save(st); err != nil {
			return retry, err // nothing sent: tried again next pass
		}
		for _, rua := range ruas {
			s.send(ctx, r, domain, rua)
		}
		st.Domains[domain] = stateSent
		if err := s.save(st); err != nil {
			return retry, err
		}
	}
	// The day is recorded even when nothing was sent.
	return retry, s.save(st)
}

// send delivers one report to one rua and audits the outcome.
func (s *Sender) send(ctx context.Context, r report.Report, domain string, rua RUA) {
	rec := audit.Record{Event: audit.TLSRPTSent, ReportDomain: domain, RUA: rua.String(), ReportID: r.ReportID}
	var err error
	switch rua.Scheme {
	case "mailto":
		var m *Mail
		// The record names no Message-ID: audit trace finds the
		// report's deliveries, not this relay event.
		if m, err = BuildMail(r, domain, s.cfg.Submitter, s.cfg.Contact, rua.Address, s.cfg.Now()); err == nil {
			err = s.cfg.Enqueue(m)
		}
	case "https":
		err = s.post(ctx, r, rua.Address)
	}
	if err != nil {
		rec.Event, rec.Diagnostic = audit.TLSRPTFailed, err.Error()
		s.cfg.Log.Warn("TLS-RPT report not sent", "domain", domain, "rua", rua.String(), "err", err)
	} else {
		s.cfg.Log.Info("TLS-RPT report sent", "domain", domain, "rua", rua.String(), "report_id", r.ReportID)
	}
	if aerr := s.cfg.Audit(rec); aerr != nil {
		s.cfg.Log.Error("auditing a TLS-RPT report", "domain", domain, "err", aerr)
	}
}

// post sends the gzipped report by HTTPS POST (RFC 8460 §5.4); any 2xx
// is a receipt.
func (s *Sender) post(ctx context.Context, r report.Report, url string) error {
	gz, _, err := Compress(r)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	return nil
}
