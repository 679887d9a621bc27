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
	// RFC 4954 §4 asks servers to slow password guessing; the delay grows
	// with the failures from one address, up to 8 times this.
	DefaultAuthFailureDelay = time.Second
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
	MaxPerIP        int   // from one client address; over it 421 4.7.0

	IdleTimeout         time.Duration // waiting for a command
	CommandTimeout      time.Duration // reading one command line
	DataTimeout         time.Duration // reading one DATA body or BDAT chunk
	WriteTimeout        time.Duration // sending replies
	TLSHandshakeTimeout time.Duration
	AuthFailureDelay    time.Duration

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
	defDur(&c.IdleTimeout, DefaultIdleTimeout)
	defDur(&c.CommandTimeout, DefaultCommandTimeout)
	defDur(&c.DataTimeout, DefaultDataTimeout)
	defDur(&c.WriteTimeout, DefaultWriteTimeout)
	defDur(&c.TLSHandshakeTimeout, DefaultTLSHandshakeTimeout)
	defDur(&c.AuthFailureDelay, DefaultAuthFailureDelay)
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
	perIP     map[netip.Addr]int
	authFails map[netip.Addr]int // failed AUTH per client address
	wg        sync.WaitGroup
}

// New checks cfg and fills in its defaults.
func New(cfg Config, b Backend) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, backend: b, log: cfg.Logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*conn]struct{}{},
		perIP:     map[netip.Addr]int{},
		authFails: map[netip.Addr]int{},
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
// goroutine, or turns it away with a 421 when the server is full or
// closing (RFC 5321 §3.8).
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) {
	remote := addrPort(nc.RemoteAddr())
	s.mu.Lock()
	var refuse smtpreply.Reply
	switch {
	case s.closing.Load():
		refuse = replyShuttingDown(s.cfg.Hostname)
	case len(s.conns) >= s.cfg.MaxConnections:
		refuse = replyTooManyConnections(s.cfg.Hostname)
	case s.perIP[remote.Addr()] >= s.cfg.MaxPerIP:
		refuse = replyTooManyFromIP(s.cfg.Hostname)
	}
	if refuse.Code != 0 {
		s.mu.Unlock()
		s.log.Warn("smtp connection refused", "client", remote.Addr().String(), "reply", refuse.String())
		s.wg.Go(func() {
			w := newWire(nc, 10*time.Second)
			w.reply(refuse)
			w.flush()
			nc.Close()
		})
		return
	}
	c := newConn(s, nc, remote)
	s.conns[c] = struct{}{}
	s.perIP[remote.Addr()]++
	s.mu.Unlock()
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			if s.perIP[remote.Addr()]--; s.perIP[remote.Addr()] <= 0 {
				delete(s.perIP, remote.Addr())
			}
			s.mu.Unlock()
		}()
		c.serve(ctx)
	})
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

// authDelay is how long to wait before answering a failed AUTH from a:
// AuthFailureDelay times the failures seen from that address, up to 8.
func (s *Server) authDelay(a netip.Addr, failed bool) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !failed {
		delete(s.authFails, a)
		return 0
	}
	if len(s.authFails) > 10000 { // bounded memory under a scan
		clear(s.authFails)
	}
	s.authFails[a] = min(s.authFails[a]+1, 8)
	return time.Duration(s.authFails[a]) * s.cfg.AuthFailureDelay
}
