// Package inbound is the relay's SMTP server: it takes mail from the
// company's own MTAs, checks it, and hands it to the spool. A message is
// acknowledged with 250 only once the spool has it on disk.
//
// It is built on github.com/emersion/go-smtp, one go-smtp Server per
// connection so that each connection's decrypted input can be checked for
// bare CR/LF (see streamTap). go-smtp reads and writes through a
// guardConn, which keeps the deadlines a slow client cannot stretch and
// lets no clear text follow a STARTTLS go-ahead; admission (connection
// limits) and AUTH throttling are the Server's.
package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Server accepts SMTP connections. Create it with New.
type Server struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*connection]struct{}
	perIP     map[netip.Prefix]int // connections from outside Allow, by clientKey
	outside   int                  // of those, not authenticated
	closing   bool
	wg        sync.WaitGroup

	auth       *authThrottle
	refusedLog *logLimiter
	stats      struct {
		refusedFull, refusedPerIP, refusedOutside, authFailures atomic.Uint64
	}
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
	return Stats{
		RefusedFull:    s.stats.refusedFull.Load(),
		RefusedPerIP:   s.stats.refusedPerIP.Load(),
		RefusedOutside: s.stats.refusedOutside.Load(),
		AuthFailures:   s.stats.authFailures.Load(),
	}
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*connection]struct{}{},
		perIP:      map[netip.Prefix]int{},
		auth:       newAuthThrottle(cfg.AuthDelay, cfg.AuthDelayMax),
		refusedLog: newLogLimiter(10 * time.Second),
	}, nil
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
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	s.log.Info("smtp server listening", "addr", l.Addr().String())

	stop := context.AfterFunc(ctx, func() {
		l.Close()
		s.closeAll()
	})
	defer stop()

	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and friends: back off rather than spin (as net/http).
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			return fmt.Errorf("inbound: accept: %w", err)
		}
		delay = 0
		s.accept(ctx, nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// accept admits a connection, or turns it away (RFC 5321 §3.8: 421 and
// close) when the server is full, when the client's address has
// MaxConnectionsPerIP, or when clients outside Allow that have not
// authenticated have MaxOutsideConnections between them: what is left of
// MaxConnections stays for the allowed networks and authenticated clients.
func (s *Server) accept(ctx context.Context, nc net.Conn) {
	remote := remoteAddr(nc)
	relay := s.cfg.allowed(remote)
	key := clientKey(remote)
	s.mu.Lock()
	var reason, greeting string
	switch {
	case s.closing:
		reason, greeting = "shutting down", shuttingDownGreeting(s.cfg.Hostname)
	case len(s.conns) >= s.cfg.MaxConnections:
		reason, greeting = "server full", tooManyConnections(s.cfg.Hostname)
		s.stats.refusedFull.Add(1)
	case !relay && s.perIP[key] >= s.cfg.MaxConnectionsPerIP:
		reason, greeting = "too many from this address", tooManyFromAddress(s.cfg.Hostname)
		s.stats.refusedPerIP.Add(1)
	case !relay && s.outside >= s.cfg.MaxOutsideConnections:
		reason, greeting = "too many from outside the allowed networks", tooManyConnections(s.cfg.Hostname)
		s.stats.refusedOutside.Add(1)
	}
	if reason != "" {
		s.mu.Unlock()
		if ok, skipped := s.refusedLog.allow(reason); ok {
			s.log.Warn("connection refused", "client", remote.String(), "reason", reason, "not_logged_since_last", skipped)
		}
		s.wg.Go(func() {
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			nc.Write([]byte(greeting))
			nc.Close()
		})
		return
	}
	c := &connection{s: s, ctx: ctx, nc: nc, remote: remote, key: key, relay: relay, outside: !relay, id: sessionID()}
	c.guard = newGuardConn(nc, Timeouts{
		Idle: s.cfg.IdleTimeout, Command: s.cfg.CommandTimeout, Data: s.cfg.DataTimeout, Handshake: s.cfg.HandshakeTimeout,
	})
	s.conns[c] = struct{}{}
	if !relay {
		s.perIP[key]++
		s.outside++
	}
	s.mu.Unlock()
	s.wg.Go(func() {
		defer s.release(c)
		c.serve()
	})
}

// release forgets an ended connection.
func (s *Server) release(c *connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if !c.relay {
		if s.perIP[c.key]--; s.perIP[c.key] <= 0 {
			delete(s.perIP, c.key)
		}
	}
	if c.outside {
		c.outside = false
		s.outside--
	}
}

// authenticated moves a client outside Allow out of the unauthenticated
// share once it has logged in.
func (s *Server) authenticated(c *connection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.outside {
		c.outside = false
		s.outside--
	}
}

// clientKey is what per-address limits count by: the address, or for
// IPv6 its /64, which one end site usually gets whole (RFC 6177), so that
// one client cannot pass as many.
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// sessionID names a connection in the log: the replies never carry
// internal detail, the log does, under this ID.
func sessionID() string {
	return fmt.Sprintf("%08x", rand.Uint32())
}

func remoteAddr(nc net.Conn) netip.Addr {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr().Unmap()
	}
	ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	return ap.Addr().Unmap()
}

// Shutdown stops accepting, tells idle clients 421 and closes them, lets
// transactions in progress finish (closing each after its reply), and
// waits for all connections to end. When ctx expires first, it closes what
// is left and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*connection, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeIfIdle()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeAll()
		<-done
		return ctx.Err()
	}
}

// closeAll drops every connection at once.
func (s *Server) closeAll() {
	s.mu.Lock()
	s.closing = true
	conns := make([]*connection, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.nc.Close()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Active is the number of connections being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// connection is one client connection and its own go-smtp server.
type connection struct {
	s      *Server
	ctx    context.Context
	nc     net.Conn
	guard  *guardConn // nc as go-smtp sees it
	id     string     // session ID for the log
	remote netip.Addr
	key    netip.Prefix // clientKey(remote)
	relay  bool         // the client's network may relay without AUTH
	tap    streamTap

	outside bool // counted in Server.outside; guarded by Server.mu

	mu           sync.Mutex
	sc           *smtp.Conn // set at the first EHLO
	inTx         bool       // between MAIL and the end of the transaction
	authFailures int
}

func (c *connection) serve() {
	cfg := &c.s.cfg
	srv := smtp.NewServer(smtp.BackendFunc(c.newSession))
	srv.Domain = cfg.Hostname
	srv.TLSConfig = cfg.TLS
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxLineLength = max(commandLineLimit, cfg.MaxLineLength)
	// Enforced in Rcpt with RFC 5321's own wording.
	srv.MaxRecipients = 0
	srv.AllowInsecureAuth = false // RFC 4954 §4: no passwords in clear
	// The guard keeps the read deadlines; go-smtp's ReadTimeout must be
	// set only so that it says when it waits for a line (guard.go).
	srv.ReadTimeout = cfg.IdleTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.Debug = &c.tap
	srv.ErrorLog = errorLog{log: c.s.log, client: c.remote.String(), session: c.id}

	log := c.s.log.With("session", c.id, "client", c.remote.String())
	log.Debug("connection opened", "relay_allowed", c.relay)
	start := time.Now()
	srv.Serve(&oneConnListener{conn: c.guard})
	// Serve returned after handing the connection to its goroutine;
	// Shutdown waits for that goroutine, i.e. for the session to end.
	srv.Shutdown(context.Background())
	log.Debug("connection closed", "duration", time.Since(start).Round(time.Millisecond), "bare_newline", c.tap.Tainted())
}

// closeIfIdle closes a connection that is not in a transaction, with a 421
// (RFC 5321 §3.8); a busy one is closed by Reset when its transaction ends.
func (c *connection) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inTx {
		return
	}
	c.hangUp(shuttingDownGreeting(c.s.cfg.Hostname))
}

// hangUp sends a last reply over the connection as it currently is (after
// STARTTLS, through TLS) and closes it. c.mu is held.
func (c *connection) hangUp(reply string) {
	var w net.Conn = c.guard
	if c.sc != nil {
		w = c.sc.Conn()
	}
	w.SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.Write([]byte(reply))
	w.Close()
}

// oneConnListener hands go-smtp a single connection.
type oneConnListener struct {
	conn net.Conn
	done bool
}

var errOneConn = errors.New("inbound: single-connection listener")

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.done {
		return nil, errOneConn
	}
	l.done = true
	return l.conn, nil
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }

// errorLog routes go-smtp's internal complaints (mostly clients that went
// away) to debug logging.
type errorLog struct {
	log             *slog.Logger
	client, session string
}

func (e errorLog) Printf(format string, v ...any) {
	e.log.Debug("smtp: "+fmt.Sprintf(format, v...), "session", e.session, "client", e.client)
}

func (e errorLog) Println(v ...any) {
	e.log.Debug("smtp: "+fmt.Sprint(v...), "session", e.session, "client", e.client)
}
