package smtpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Defaults for Config's zero fields. docs/smtp-server.md explains each.
const (
	// RFC 1870: the limit announced in EHLO's SIZE and enforced at MAIL
	// and in the body.
	DefaultMaxMessageBytes = 50 << 20
	// RFC 5321 §4.5.3.1.8 asks for at least 100 per transaction.
	DefaultMaxRecipients = 1000
	// RFC 5321 §4.5.3.1.6: a text line is 1000 octets with its CRLF.
	DefaultMaxLineLength = 1000
	// RFC 5321 §4.5.3.1.4 says 512 octets with CRLF, "more with
	// extensions": MAIL and RCPT with SIZE, BODY, SMTPUTF8, RET, ENVID
	// (100 decoded, up to 300 as xtext), NOTIFY, ORCPT (500) and AUTH=
	// (RFC 4954 §5, a mailbox) need more. 2048 holds all of them with a
	// maximal path (256) and is still a small bound.
	DefaultMaxCommandLine = 2048
	// RFC 4954 §4: AUTH lines and SASL responses may be 12288 octets.
	maxAuthLine = 12288
	// Commands per connection. The company's MTAs keep sessions open for
	// many messages (smtp-source -d); ~4 commands a message.
	DefaultMaxCommands = 100000
	// Syntax and sequence errors before 421 (Postfix's
	// smtpd_hard_error_limit).
	DefaultMaxBadCommands = 20
	DefaultMaxConnections = 100
	DefaultMaxPerIP       = 50
	// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the
	// next command.
	DefaultIdleTimeout = 5 * time.Minute
	// From the first octet of a command line to its CRLF: one deadline,
	// not reset by each octet, so a client cannot hold a connection by
	// trickling.
	DefaultCommandTimeout = time.Minute
	// The whole body of one DATA, or of one BDAT chunk: 50 MiB at 100
	// KB/s takes about 9 minutes.
	DefaultDataTimeout         = 10 * time.Minute
	DefaultWriteTimeout        = time.Minute
	DefaultTLSHandshakeTimeout = 30 * time.Second
	// RFC 4954 §4 asks servers to slow password guessing: every AUTH
	// from an address with recent failures waits this per failure, at
	// most DefaultAuthFailureDelayMax (auththrottle.go).
	DefaultAuthFailureDelay    = time.Second
	DefaultAuthFailureDelayMax = 30 * time.Second
	// Failed AUTHs on one connection before 421 and close.
	DefaultMaxAuthFailures = 3
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Hostname names the server in the greeting, EHLO and 421 replies.
	Hostname string
	// TLS enables STARTTLS (RFC 3207), and with it AUTH and REQUIRETLS.
	TLS *tls.Config

	MaxMessageBytes int64 // SIZE (RFC 1870); over it 552 5.3.4
	MaxRecipients   int   // per transaction; over it 452 4.5.3
	MaxLineLength   int   // DATA/BDAT text line with CRLF; over it 500 5.5.2
	MaxCommandLine  int   // command line with CRLF; over it 500 5.5.2
	MaxCommands     int   // per connection; then 421 4.7.0
	MaxBadCommands  int   // per connection; then 421 4.7.0
	MaxConnections  int   // in all; over it 421 4.7.0 and close
	MaxPerIP        int   // from one client address (IPv6: one /64); over it 421 4.7.0
	// MaxUnauthenticated bounds the connections from outside LimitExempt
	// that have not authenticated, all together (0: only MaxConnections),
	// so that the rest of MaxConnections stays for the exempt networks
	// and for clients that logged in. Over it: 421 4.7.0.
	MaxUnauthenticated int
	// LimitExempt lists client networks that MaxPerIP and
	// MaxUnauthenticated do not apply to (Postfix's
	// smtpd_client_event_limit_exceptions = $mynetworks): the company's
	// own MTAs may open as many as MaxConnections allows.
	LimitExempt []netip.Prefix
	// MaxAuthFailures failed AUTHs on one connection end it with 421.
	MaxAuthFailures int

	IdleTimeout         time.Duration // waiting for a command
	CommandTimeout      time.Duration // reading one command line
	DataTimeout         time.Duration // reading one DATA body or BDAT chunk
	WriteTimeout        time.Duration // sending replies
	TLSHandshakeTimeout time.Duration
	AuthFailureDelay    time.Duration // per recent failure from the address
	AuthFailureDelayMax time.Duration

	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Hostname == "" {
		return c, errors.New("smtpserver: Config.Hostname is required")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	def(&c.MaxRecipients, DefaultMaxRecipients)
	def(&c.MaxLineLength, DefaultMaxLineLength)
	def(&c.MaxCommandLine, DefaultMaxCommandLine)
	c.MaxCommandLine = max(c.MaxCommandLine, 512) // RFC 5321 §4.5.3.1.4
	def(&c.MaxCommands, DefaultMaxCommands)
	def(&c.MaxBadCommands, DefaultMaxBadCommands)
	def(&c.MaxConnections, DefaultMaxConnections)
	def(&c.MaxPerIP, DefaultMaxPerIP)
	def(&c.MaxAuthFailures, DefaultMaxAuthFailures)
	if c.MaxUnauthenticated <= 0 {
		c.MaxUnauthenticated = c.MaxConnections
	}
	defDur(&c.IdleTimeout, DefaultIdleTimeout)
	defDur(&c.CommandTimeout, DefaultCommandTimeout)
	defDur(&c.DataTimeout, DefaultDataTimeout)
	defDur(&c.WriteTimeout, DefaultWriteTimeout)
	defDur(&c.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	defDur(&c.AuthFailureDelay, DefaultAuthFailureDelay)
	defDur(&c.AuthFailureDelayMax, DefaultAuthFailureDelayMax)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Server accepts SMTP connections and runs the protocol for a Backend.
type Server struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	closing atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	perIP     map[netip.Prefix]int // connections from outside LimitExempt, by clientKey
	unauth    int                  // of those, not authenticated
	wg        sync.WaitGroup

	throttle   *authThrottle
	refusedLog *logLimiter
	stats      struct {
		refusedFull, refusedPerIP, refusedUnauth, authFailures atomic.Uint64
	}
}

// Stats are a Server's counters since New.
type Stats struct {
	// Connections turned away with 421 4.7.0: MaxConnections reached,
	// MaxPerIP from the client's address, or MaxUnauthenticated.
	RefusedFull, RefusedPerIP, RefusedUnauthenticated uint64
	// AuthFailures counts AUTH attempts refused (wrong credentials or a
	// malformed PLAIN message).
	AuthFailures uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{
		RefusedFull:            s.stats.refusedFull.Load(),
		RefusedPerIP:           s.stats.refusedPerIP.Load(),
		RefusedUnauthenticated: s.stats.refusedUnauth.Load(),
		AuthFailures:           s.stats.authFailures.Load(),
	}
}

// New checks cfg and fills in its defaults.
func New(cfg Config, b Backend) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, backend: b, log: cfg.Logger,
		listeners:  map[net.Listener]struct{}{},
		conns:      map[*conn]struct{}{},
		perIP:      map[netip.Prefix]int{},
		throttle:   newAuthThrottle(cfg.AuthFailureDelay, cfg.AuthFailureDelayMax),
		refusedLog: newLogLimiter(10 * time.Second),
	}, nil
}

// Config is the configuration in force, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Serve accepts connections on l until Shutdown (it returns nil) or until
// ctx is cancelled (it closes l and every connection at once and returns
// ctx.Err()). ctx is the parent of every session's context.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
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
			if s.closing.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and the like: back off rather than spin or stop.
			var ne net.Error
			var tmp interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Timeout() || errors.As(err, &tmp) && tmp.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("smtp accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			return err
		}
		delay = 0
		s.ServeConn(ctx, nc)
	}
}

// ServeConn runs the protocol on one accepted connection in a new
// goroutine, or turns it away with a 421 (RFC 5321 §3.8) when the server
// is closing or full, when the client's address has MaxPerIP, or when the
// clients that have not authenticated have MaxUnauthenticated; clients in
// LimitExempt count only towards MaxConnections.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	remote := addrPort(nc.RemoteAddr())
	exempt := s.exempt(remote.Addr())
	key := clientKey(remote.Addr())
	s.mu.Lock()
	var refuse smtpreply.Reply
	var reason string
	switch {
	case s.closing.Load():
		refuse, reason = replyShuttingDown(s.cfg.Hostname), "shutting down"
	case len(s.conns) >= s.cfg.MaxConnections:
		refuse, reason = replyTooManyConnections(s.cfg.Hostname), "server full"
		s.stats.refusedFull.Add(1)
	case !exempt && s.perIP[key] >= s.cfg.MaxPerIP:
		refuse, reason = replyTooManyFromIP(s.cfg.Hostname), "too many from this address"
		s.stats.refusedPerIP.Add(1)
	case !exempt && s.unauth >= s.cfg.MaxUnauthenticated:
		refuse, reason = replyTooManyConnections(s.cfg.Hostname), "too many unauthenticated clients"
		s.stats.refusedUnauth.Add(1)
	}
	if refuse.Code != 0 {
		s.mu.Unlock()
		// A flood of refusals is not a flood of log lines.
		if ok, skipped := s.refusedLog.allow(reason); ok {
			s.log.Warn("smtp connection refused", "client", remote.Addr().String(), "reason", reason, "not_logged_since_last", skipped)
		}
		s.wg.Go(func() {
			w := newWire(nc, 10*time.Second)
			w.reply(refuse)
			w.flush()
			nc.Close()
			w.release()
		})
		return
	}
	c := newConn(s, nc, remote)
	c.key, c.exempt, c.unauth = key, exempt, !exempt
	s.conns[c] = struct{}{}
	if !exempt {
		s.perIP[key]++
		s.unauth++
	}
	s.mu.Unlock()
	s.wg.Go(func() {
		defer s.release(c)
		c.serve(ctx)
	})
}

// release forgets an ended connection.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if !c.exempt {
		if s.perIP[c.key]--; s.perIP[c.key] <= 0 {
			delete(s.perIP, c.key)
		}
	}
	if c.unauth {
		c.unauth = false
		s.unauth--
	}
}

// authenticated moves a connection out of the unauthenticated share.
func (s *Server) authenticated(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.unauth {
		c.unauth = false
		s.unauth--
	}
}

func (s *Server) exempt(a netip.Addr) bool {
	for _, p := range s.cfg.LimitExempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
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

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Active is the number of connections being served.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting, sends 421 to clients waiting between
// transactions and closes them, lets transactions in progress finish
// (each connection closes with a 421 after its transaction's final
// reply), and waits for every connection to end. When ctx expires first
// it closes what is left and returns ctx.Err(). Nothing is acknowledged
// that a Session did not accept, so an abrupt close loses no mail.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.wakeIfIdle()
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
	s.closing.Store(true)
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.raw.Close()
	}
}
