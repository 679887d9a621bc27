// Package inbound is the relay's SMTP server: it takes mail from the
// company's own MTAs, checks it, and hands it to the spool. A message is
// acknowledged with 250 only once the spool has it on disk.
//
// The protocol — framing, grammar, extensions, limits, deadlines,
// STARTTLS, the AUTH exchange — is pkg/smtpserver's; this package is its
// Backend: who may relay, which addresses are taken, and the spool.
package inbound

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"

	"github.com/smgctl/smgctl/pkg/smtpreply"
	"github.com/smgctl/smgctl/pkg/smtpserver"
)

// Server accepts SMTP connections. Create it with New.
type Server struct {
	cfg  Config
	log  *slog.Logger
	smtp *smtpserver.Server
}

// Stats are the server's counters since New.
type Stats struct {
	// Connections turned away with 421: the server was full, the
	// client's address had MaxConnectionsPerIP, or clients outside Allow
	// had MaxOutsideConnections.
	RefusedFull, RefusedPerIP, RefusedOutside uint64
	// AuthFailures counts AUTH attempts that did not succeed.
	AuthFailures uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := s.smtp.Stats()
	return Stats{
		RefusedFull:    st.RefusedFull,
		RefusedPerIP:   st.RefusedPerIP,
		RefusedOutside: st.RefusedUnauthenticated,
		AuthFailures:   st.AuthFailures,
	}
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	s.smtp, err = smtpserver.New(smtpserver.Config{
		Hostname:        cfg.Hostname,
		TLS:             cfg.TLS,
		MaxMessageBytes: cfg.MaxMessageBytes,
		MaxRecipients:   cfg.MaxRecipients,
		MaxLineLength:   cfg.MaxLineLength,
		MaxConnections:  cfg.MaxConnections,
		// The allowed networks are the company's MTAs: only the total
		// bounds them (Postfix's smtpd_client_event_limit_exceptions).
		LimitExempt:         cfg.Allow,
		MaxPerIP:            cfg.MaxConnectionsPerIP,
		MaxUnauthenticated:  cfg.MaxOutsideConnections,
		MaxAuthFailures:     cfg.MaxAuthFailures,
		AuthFailureDelay:    cfg.AuthDelay,
		AuthFailureDelayMax: cfg.AuthDelayMax,
		IdleTimeout:         cfg.IdleTimeout,
		CommandTimeout:      cfg.CommandTimeout,
		DataTimeout:         cfg.DataTimeout,
		TLSHandshakeTimeout: cfg.HandshakeTimeout,
		WriteTimeout:        cfg.WriteTimeout,
		Logger:              cfg.Logger,
	}, s)
	if err != nil {
		return nil, fmt.Errorf("inbound: %w", err)
	}
	return s, nil
}

// Config returns the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ListenAndServe listens on Config.Addr and serves until Shutdown or until
// ctx is cancelled.
func (s *Server) ListenAndServe(ctx context.Context) error {
	l, err := Listen(ctx, s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("inbound: %w", err)
	}
	return s.Serve(ctx, l)
}

// Serve accepts connections on l until Shutdown is called (it then returns
// nil) or ctx is cancelled (it then closes l and every connection at once
// and returns ctx.Err(); nothing unacknowledged is ever in the spool, so an
// abrupt stop loses no mail). ctx is also the context of Auth checks.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.log.Info("smtp server listening", "addr", l.Addr().String())
	if err := s.smtp.Serve(ctx, l); err != nil && ctx.Err() == nil {
		return fmt.Errorf("inbound: accept: %w", err)
	} else if err != nil {
		return err
	}
	return nil
}

// Shutdown stops accepting, tells idle clients 421 and closes them, lets
// transactions in progress finish (closing each after its reply), and
// waits for all connections to end. When ctx expires first, it closes what
// is left and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error { return s.smtp.Shutdown(ctx) }

// Active is the number of connections being served.
func (s *Server) Active() int { return s.smtp.Active() }

// NewSession is smtpserver's Backend: a session per connection, and a
// fresh one after STARTTLS.
func (s *Server) NewSession(ctx context.Context, cs smtpserver.ConnState) (smtpserver.Session, *smtpreply.Reply) {
	sess := &session{s: s, ctx: ctx, cs: cs, id: sessionID(), relay: s.cfg.allowed(cs.Remote.Addr())}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("session started", append(sess.log(), "relay_allowed", sess.relay, "tls", cs.TLS != nil)...)
	}
	if s.cfg.Auth != nil {
		return &authSession{sess}, nil
	}
	return sess, nil
}

// sessionID names a session in the log: the replies never carry
// internal detail, the log does, under this ID.
func sessionID() string {
	return fmt.Sprintf("%08x", rand.Uint32())
}
