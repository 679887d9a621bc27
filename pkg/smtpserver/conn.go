package smtpserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// conn is one client connection: the session state machine of RFC 5321
// §4.1.4 and §3.3.
type conn struct {
	srv    *Server
	cfg    *Config
	log    *slog.Logger // see logger
	raw    net.Conn     // the TCP connection, for deadlines and the final close
	remote netip.AddrPort
	w      *wire
	ctx    context.Context
	state  ConnState
	sess   Session

	helo     string // "" until HELO/EHLO (again after STARTTLS)
	esmtp    bool
	authUser string // set by a successful AUTH

	// Admission (server.go): the per-address key, whether the client
	// is in LimitExempt, and whether it counts in Server.unauth (guarded
	// by Server.mu).
	key    netip.Prefix
	exempt bool
	unauth bool

	authFailures int // failed AUTHs on this connection

	// The transaction (RFC 5321 §3.3).
	inMail bool
	mail   MailParams
	rcpts  int

	commands, bad int

	mu      sync.Mutex // guards waiting against Shutdown's wake-up
	waiting bool       // between transactions, waiting for a command
}

func newConn(s *Server, nc net.Conn, remote netip.AddrPort) *conn {
	return &conn{
		srv: s, cfg: &s.cfg, raw: nc, remote: remote,
		w: newWire(nc, s.cfg.WriteTimeout),
		state: ConnState{
			Local:  addrPort(nc.LocalAddr()),
			Remote: remote,
		},
	}
}

// logger is the server's logger naming the client, made on first use:
// at the usual levels most connections log nothing, and a new session
// per message would otherwise pay for formatting the attribute each
// time.
func (c *conn) logger() *slog.Logger {
	if c.log == nil {
		c.log = c.srv.log.With("client", c.remote.Addr().String())
	}
	return c.log
}

// errQuit ends the command loop: the connection is closed.
var errQuit = errors.New("quit")

func (c *conn) serve(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctx = ctx
	defer c.raw.Close()
	start := time.Now()
	debug := c.srv.log.Enabled(ctx, slog.LevelDebug)
	if debug {
		c.logger().Debug("smtp connection opened")
	}
	defer func() {
		if c.sess != nil {
			c.sess.Logout()
		}
		c.w.flush()
		c.w.nc.Close() // over TLS: close_notify first (RFC 8446 §6.1)
		c.w.release()
		if debug {
			c.logger().Debug("smtp connection closed", "duration", time.Since(start).Round(time.Millisecond), "commands", c.commands)
		}
	}()
	if !c.startSession() {
		return
	}
	c.w.reply(replyGreeting(c.cfg.Hostname))
	for {
		if err := c.command(); err != nil {
			return
		}
	}
}

// startSession asks the backend for a session; false: refused, the reply
// is sent.
func (c *conn) startSession() bool {
	sess, r := c.srv.backend.NewSession(c.ctx, c.state)
	if r != nil || sess == nil {
		if r == nil {
			r = ptr(replyShuttingDown(c.cfg.Hostname))
		}
		c.w.reply(*r)
		return false
	}
	c.sess = sess
	return true
}

// wakeIfIdle is Shutdown's nudge: a connection waiting for a command
// between transactions stops waiting now and sends its 421.
func (c *conn) wakeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting {
		c.raw.SetReadDeadline(time.Now())
	}
}

// readCommand waits for the next command line: IdleTimeout for its first
// octet, then CommandTimeout for the whole line.
func (c *conn) readCommand(max int) ([]byte, error) {
	if c.w.br.Buffered() == 0 {
		if err := c.w.flush(); err != nil {
			return nil, err
		}
		c.mu.Lock()
		idle := !c.inMail
		if idle && c.srv.closing.Load() {
			c.mu.Unlock()
			return nil, errShutdown
		}
		c.waiting = idle
		c.raw.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout))
		c.mu.Unlock()
		_, err := c.w.br.Peek(1)
		c.mu.Lock()
		c.waiting = false
		c.mu.Unlock()
		if err != nil {
			if idle && c.srv.closing.Load() {
				return nil, errShutdown
			}
			return nil, err
		}
	}
	c.raw.SetReadDeadline(time.Now().Add(c.cfg.CommandTimeout))
	return c.w.readLine(max)
}

var errShutdown = errors.New("server shutting down")

// fail answers a protocol error and counts it; too many end the
// connection (RFC 5321 §4.3.2 lets the server close with 421).
func (c *conn) fail(r smtpreply.Reply) error {
	c.w.reply(r)
	c.bad++
	if c.bad >= c.cfg.MaxBadCommands {
		c.w.reply(replyTooManyErrors(c.cfg.Hostname))
		return errQuit
	}
	return nil
}

// readFailed turns an error from reading a command into the reply, if
// any, and whether the connection must close.
func (c *conn) readFailed(err error) error {
	switch {
	case errors.Is(err, errCommandTooLong):
		return c.fail(replyCommandTooLong)
	case errors.Is(err, ErrNUL):
		return c.fail(replyCommandNUL)
	case errors.Is(err, ErrBareNewline):
		c.logger().Info("smtp bare newline in command; closing", "err", err)
		c.w.reply(replyCommandBareNewline)
	case errors.Is(err, errShutdown):
		c.w.reply(replyShuttingDown(c.cfg.Hostname))
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.w.reply(replyTimeout(c.cfg.Hostname))
	}
	return errQuit
}

// command reads and runs one command. A non-nil error closes the
// connection.
func (c *conn) command() error {
	if !c.inMail && c.srv.closing.Load() {
		c.w.reply(replyShuttingDown(c.cfg.Hostname))
		return errQuit
	}
	// AUTH's line may be longer than others (RFC 4954 §4): read up to
	// its limit, then hold every other command to MaxCommandLine.
	line, err := c.readCommand(max(c.cfg.MaxCommandLine, maxAuthLine))
	if err != nil {
		return c.readFailed(err)
	}
	c.commands++
	if c.commands > c.cfg.MaxCommands {
		c.w.reply(replyTooManyCommands(c.cfg.Hostname))
		return errQuit
	}
	verb, arg := splitCommand(string(line))
	if len(line) > c.cfg.MaxCommandLine-2 && verb != "AUTH" {
		return c.fail(replyCommandTooLong)
	}
	switch verb {
	case "HELO", "EHLO":
		return c.hello(verb == "EHLO", arg)
	case "MAIL":
		return c.mailCmd(arg)
	case "RCPT":
		return c.rcptCmd(arg)
	case "DATA":
		return c.data(arg)
	case "BDAT":
		return c.bdat(arg)
	case "RSET":
		if arg != "" {
			return c.fail(replySyntax("RSET"))
		}
		c.reset()
		c.w.reply(replyOK)
	case "NOOP": // RFC 5321 §4.1.1.9: an argument is allowed and ignored
		c.w.reply(replyOK)
	case "QUIT":
		if arg != "" {
			return c.fail(replySyntax("QUIT"))
		}
		c.w.reply(replyBye)
		return errQuit
	case "VRFY":
		if arg == "" {
			return c.fail(replySyntax("VRFY address"))
		}
		c.w.reply(replyVrfy)
	case "HELP":
		c.w.reply(replyHelp)
	case "STARTTLS":
		return c.startTLS(arg)
	case "AUTH":
		return c.auth(arg)
	case "EXPN", "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "VERB":
		// RFC 5321 §4.2.4: known commands this server does not do.
		return c.fail(replyNotImplemented)
	default:
		return c.fail(replyNotRecognized)
	}
	return nil
}

// reset ends the transaction, if any (RFC 5321 §4.1.1.5).
func (c *conn) reset() {
	if c.inMail {
		c.sess.Reset()
	}
	c.inMail, c.mail, c.rcpts = false, MailParams{}, 0
}

func (c *conn) hello(esmtp bool, arg string) error {
	verb := "HELO"
	if esmtp {
		verb = "EHLO"
	}
	// RFC 5321 §4.1.1.1: one argument, a domain or address literal. Its
	// syntax is not checked further: it is recorded, never trusted.
	// Trailing spaces, which some clients send, are dropped.
	arg = strings.TrimRight(arg, " ")
	if arg == "" || !validHeloArg(arg) {
		return c.fail(replySyntax(verb + " hostname"))
	}
	c.reset() // RFC 5321 §4.1.4: HELO/EHLO resets the state
	if r := c.sess.Hello(Hello{Name: arg, ESMTP: esmtp}); r != nil {
		c.w.reply(*r)
		return nil
	}
	c.helo, c.esmtp = arg, esmtp
	if esmtp {
		c.w.reply(c.ehloReply())
	} else {
		c.w.reply(replyHelo(c.cfg.Hostname))
	}
	return nil
}

// validHeloArg: printable, no spaces, valid UTF-8 (RFC 6531 allows
// U-labels).
func validHeloArg(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

func (c *conn) offer() offer {
	return offer{
		esmtp: c.esmtp, auth: c.authOffered(),
		maxSize: c.cfg.MaxMessageBytes, requireTLS: c.state.TLS != nil,
	}
}

func (c *conn) mailCmd(arg string) error {
	switch {
	case c.helo == "":
		return c.fail(replyNeedHelo)
	case c.inMail:
		return c.fail(replyNestedMail)
	}
	from, fields, err := parsePathArg(arg, "FROM:")
	if err != nil {
		if len(arg) < 5 || !equalFoldPrefix(arg, "FROM:") {
			return c.fail(replyMailSyntax)
		}
		return c.fail(replyBadSender)
	}
	if from.Domain == "" && !from.IsNull() {
		return c.fail(replyBadSender) // <Postmaster> is for RCPT only
	}
	mp, r := parseMailParams(fields, c.offer())
	if r != nil {
		return c.fail(*r)
	}
	if !mp.SMTPUTF8 && !from.ASCII() {
		return c.fail(replyNeedSMTPUTF8)
	}
	if r := c.sess.Mail(from, mp); r != nil {
		c.w.reply(*r)
		return nil
	}
	c.inMail, c.mail, c.rcpts = true, mp, 0
	c.w.reply(replyMailOK)
	return nil
}

func (c *conn) rcptCmd(arg string) error {
	if !c.inMail {
		return c.fail(replyNeedMail)
	}
	to, fields, err := parsePathArg(arg, "TO:")
	if err != nil || to.IsNull() {
		if len(arg) < 3 || !equalFoldPrefix(arg, "TO:") {
			return c.fail(replyRcptSyntax)
		}
		return c.fail(replyBadRecipient)
	}
	rp, r := parseRcptParams(fields, c.offer(), c.mail.SMTPUTF8)
	if r != nil {
		return c.fail(*r)
	}
	if !c.mail.SMTPUTF8 && !to.ASCII() {
		return c.fail(replyNeedSMTPUTF8)
	}
	if c.rcpts >= c.cfg.MaxRecipients {
		c.w.reply(replyTooManyRcpts)
		return nil
	}
	if r := c.sess.Rcpt(to, rp); r != nil {
		c.w.reply(*r)
		return nil
	}
	c.rcpts++
	c.w.reply(replyRcptOK)
	return nil
}

func equalFoldPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		a, b := s[i], prefix[i]
		if 'a' <= a && a <= 'z' {
			a -= 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

func (c *conn) bodyLimits() bodyLimits {
	return bodyLimits{maxSize: c.cfg.MaxMessageBytes, maxLine: c.cfg.MaxLineLength}
}

// data runs DATA (RFC 5321 §4.1.1.4).
func (c *conn) data(arg string) error {
	switch {
	case arg != "":
		return c.fail(replySyntax("DATA"))
	case !c.inMail:
		return c.fail(replyNeedMail)
	case c.rcpts == 0:
		return c.fail(replyNeedRcpt)
	}
	c.w.reply(replyStartData)
	c.raw.SetReadDeadline(time.Now().Add(c.cfg.DataTimeout))
	d := newDataReader(c.w, c.bodyLimits())
	r := c.sess.Data(d)
	if d.err == nil {
		// Data returned before the end, or the body was refused for its
		// content: read the rest away first, so that the reply comes in
		// step with the client.
		d.drain()
	}
	defer c.reset()
	switch {
	case errors.Is(d.err, ErrBareNewline):
		// The end of data cannot be found any more: reply and close
		// (reader.go dataReader).
		c.logger().Info("smtp bare newline in DATA; closing", "err", d.err)
		c.w.reply(replyBareNewline)
		return errQuit
	case d.err != nil && d.err != io.EOF:
		if errors.Is(d.err, os.ErrDeadlineExceeded) {
			c.w.reply(replyTimeout(c.cfg.Hostname))
		}
		return errQuit
	case d.fault != nil:
		c.w.reply(c.faultReply(d.fault))
		return nil
	}
	if r == nil {
		r = &replyOK
	}
	c.w.reply(*r)
	return nil
}

// faultReply is the reply to a body refused for its content.
func (c *conn) faultReply(err error) smtpreply.Reply {
	switch {
	case errors.Is(err, ErrTooBig):
		return replyTooBig
	case errors.Is(err, ErrLineTooLong):
		return replyLineTooLong(c.cfg.MaxLineLength)
	case errors.Is(err, ErrNUL):
		return replyBodyNUL
	}
	return replyBareNewline
}
