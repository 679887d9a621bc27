// Package inbound is the relay's SMTP server: it takes mail from the
// company's own MTAs, checks it, and hands it to the spool. A message is
// acknowledged with 250 only once the spool has it on disk.
//
// It is built on github.com/emersion/go-smtp, one go-smtp Server per
// connection so that each connection's decrypted input can be checked for
// bare CR/LF (see streamTap).
package inbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
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
	closing   bool
	wg        sync.WaitGroup
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*connection]struct{}{},
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

// accept admits a connection, or turns it away when the server is full
// (RFC 5321 §3.8: 421 and close).
func (s *Server) accept(ctx context.Context, nc net.Conn) {
	remote := remoteAddr(nc)
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.cfg.MaxConnections {
		closing := s.closing
		s.mu.Unlock()
		s.log.Warn("connection refused", "client", remote.String(), "too_many", !closing, "closing", closing)
		s.wg.Go(func() {
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if closing {
				nc.Write([]byte(shuttingDownGreeting(s.cfg.Hostname)))
			} else {
				nc.Write([]byte(tooManyConnections(s.cfg.Hostname)))
			}
			nc.Close()
		})
		return
	}
	c := &connection{s: s, ctx: ctx, nc: nc, remote: remote, relay: s.cfg.allowed(remote)}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
		c.serve()
	})
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
	remote netip.Addr
	relay  bool // the client's network may relay without AUTH
	tap    streamTap

	mu   sync.Mutex
	sc   *smtp.Conn // set at the first EHLO
	inTx bool       // between MAIL and the end of the transaction
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
	srv.ReadTimeout = cfg.ReadTimeout
	srv.WriteTimeout = cfg.WriteTimeout
	srv.EnableSMTPUTF8 = true
	srv.Debug = &c.tap
	srv.ErrorLog = errorLog{log: c.s.log, client: c.remote.String()}

	log := c.s.log.With("client", c.remote.String())
	log.Debug("connection opened", "relay_allowed", c.relay)
	start := time.Now()
	srv.Serve(&oneConnListener{conn: c.nc})
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
	c.say421()
}

// say421 sends the shutdown reply over the connection as it currently is
// (after STARTTLS, through TLS) and closes it. c.mu is held.
func (c *connection) say421() {
	var w net.Conn = c.nc
	if c.sc != nil {
		w = c.sc.Conn()
	}
	w.SetWriteDeadline(time.Now().Add(5 * time.Second))
	w.Write([]byte(shuttingDownGreeting(c.s.cfg.Hostname)))
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
	log    *slog.Logger
	client string
}

func (e errorLog) Printf(format string, v ...any) {
	e.log.Debug("smtp: "+fmt.Sprintf(format, v...), "client", e.client)
}

func (e errorLog) Println(v ...any) {
	e.log.Debug("smtp: "+fmt.Sprint(v...), "client", e.client)
}
