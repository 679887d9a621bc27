package inbound

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpserver"
)

// Defaults for Config's zero fields.
const (
	DefaultAddr            = "127.0.0.1:2525"
	DefaultMaxMessageBytes = 50 << 20
	DefaultMaxRecipients   = 1000
	// RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with its
	// CRLF. The company's MTAs (Postfix's smtp_line_length_limit = 998,
	// Exchange) already fold or encode longer lines, and a longer line
	// would be refused or broken at the next hop, so it is refused here,
	// where the sender still gets a clear answer.
	DefaultMaxLineLength = 1000
	// RFC 5321 §4.5.3.2.7: the server waits at least 5 minutes for the
	// next command.
	DefaultIdleTimeout = 5 * time.Minute
	// A command line, once begun, must end within this: a live MTA sends
	// one in a single packet, a slowloris one octet at a time.
	DefaultCommandTimeout = time.Minute
	// One DATA body or BDAT chunk must end within this: RFC 5321
	// §4.5.3.2.6 gives the client 10 minutes for the final reply; 50 MiB
	// at 100 KB/s takes about 9.
	DefaultDataTimeout = 10 * time.Minute
	// The TLS handshake after "220 Ready to start TLS".
	DefaultHandshakeTimeout = 30 * time.Second
	DefaultWriteTimeout     = 5 * time.Minute
	DefaultMaxConnections   = 100
	// Clients outside Allow: per address (IPv6: per /64), and all of
	// them together before they authenticate (by default half of
	// MaxConnections), so that the rest stays for the allowed networks
	// and authenticated clients. Postfix, too, exempts its own networks
	// from per-client limits (smtpd_client_event_limit_exceptions =
	// $mynetworks).
	DefaultMaxConnectionsPerIP = 20
	// AUTH: failures on one connection before 421 and close, and the
	// wait per recent failure from the same address before any AUTH
	// answer, capped (pkg/smtpserver's defaults).
	DefaultMaxAuthFailures = smtpserver.DefaultMaxAuthFailures
	DefaultAuthDelay       = smtpserver.DefaultAuthFailureDelay
	DefaultAuthDelayMax    = smtpserver.DefaultAuthFailureDelayMax

	// headerPeekLimit is how much of the header section is held in memory
	// to find the Message-ID before the message streams to the spool.
	headerPeekLimit = 256 << 10
)

// Queue is where accepted messages go: *spool.Spool.
type Queue interface {
	NewID() string
	// Put stores the message durably before returning nil; see spool.Put.
	Put(env *spool.Envelope, body io.Reader) error
}

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Hostname is the relay's name in the greeting and in Received: headers.
	Hostname string
	// Addr is the TCP address to listen on (ListenAndServe).
	Addr string
	// TLS, when set, enables STARTTLS (RFC 3207) and, with Auth, AUTH.
	TLS *tls.Config
	// Allow lists the client networks that may relay without AUTH.
	// nil means loopback only; an empty non-nil slice means nobody.
	Allow []netip.Prefix
	// Auth checks AUTH PLAIN/LOGIN credentials (RFC 4954). nil: no AUTH.
	// It is offered only after STARTTLS: passwords never cross in clear.
	Auth func(ctx context.Context, username, password string) bool

	MaxMessageBytes int64 // SIZE (RFC 1870); over it: 552 5.3.4
	MaxRecipients   int   // per message; over it: 452 4.5.3
	MaxLineLength   int   // text line in DATA, CRLF included; over it: 500 5.5.2
	MaxConnections  int   // concurrent; over it: 421 4.7.0 and close
	// MaxConnectionsPerIP bounds concurrent connections from one address
	// outside Allow (IPv6: one /64); MaxOutsideConnections bounds those
	// of all clients outside Allow that have not authenticated (zero:
	// half of MaxConnections).
	MaxConnectionsPerIP   int
	MaxOutsideConnections int

	// Totals that no octet resets (pkg/smtpserver): waiting for a
	// command, a command line once begun, one DATA body or BDAT chunk,
	// the TLS handshake.
	IdleTimeout      time.Duration
	CommandTimeout   time.Duration
	DataTimeout      time.Duration
	HandshakeTimeout time.Duration
	WriteTimeout     time.Duration

	// MaxAuthFailures failed AUTHs on one connection end it with 421.
	// Each AUTH from an address with failures in the last 15 minutes
	// waits AuthDelay per failure, at most AuthDelayMax, before its
	// answer.
	MaxAuthFailures int
	AuthDelay       time.Duration
	AuthDelayMax    time.Duration

	// Queue receives accepted messages (a *spool.Spool).
	Queue Queue
	// Notify, if set, is called with the queue ID of each accepted message
	// after its 250 is decided, to wake delivery. It must not block.
	Notify func(id string)
	// Refuse, if set and returning an error, refuses new transactions at
	// MAIL FROM with 451 4.3.0 (the reason is logged, not sent): the
	// relay cannot take responsibility for mail now (its audit log cannot
	// be written). It must not block.
	Refuse func() error
	Logger *slog.Logger
}

// LoopbackOnly is the default Allow list.
var loopbackOnly = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("::1/128"),
}

func (c Config) withDefaults() (Config, error) {
	if c.Queue == nil {
		return c, errors.New("inbound: Config.Queue is required")
	}
	if c.Hostname == "" {
		return c, errors.New("inbound: Config.Hostname is required")
	}
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Allow == nil {
		c.Allow = loopbackOnly
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxRecipients <= 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.MaxLineLength <= 0 {
		c.MaxLineLength = DefaultMaxLineLength
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConnectionsPerIP <= 0 {
		c.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if c.MaxOutsideConnections <= 0 {
		c.MaxOutsideConnections = max(c.MaxConnections/2, 1)
	}
	defDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	defDur(&c.IdleTimeout, DefaultIdleTimeout)
	defDur(&c.CommandTimeout, DefaultCommandTimeout)
	defDur(&c.DataTimeout, DefaultDataTimeout)
	defDur(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	defDur(&c.AuthDelay, DefaultAuthDelay)
	defDur(&c.AuthDelayMax, DefaultAuthDelayMax)
	if c.MaxAuthFailures <= 0 {
		c.MaxAuthFailures = DefaultMaxAuthFailures
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// allowed reports whether a client address may relay without AUTH.
func (c *Config) allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range c.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
