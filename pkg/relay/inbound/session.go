package inbound

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/smgctl/smgctl/pkg/relay/spool"
)

// session is one SMTP session in go-smtp's sense: from EHLO to QUIT, or to
// STARTTLS, after which go-smtp starts a new one (RFC 3207 §4.2: the client
// must forget what it knew, and so must the server, AUTH included).
type session struct {
	c  *connection
	sc *smtp.Conn

	user string // authenticated user (RFC 4954), "" if none

	hasFrom bool
	from    string
	opts    smtp.MailOptions
	rcpts   []string
}

func (c *connection) newSession(sc *smtp.Conn) (smtp.Session, error) {
	if c.s.isClosing() {
		return nil, errShuttingDown
	}
	c.mu.Lock()
	c.sc = sc
	c.mu.Unlock()
	return &session{c: c, sc: sc}, nil
}

func (s *session) log() []any {
	return []any{"client", s.c.remote.String(), "helo", s.sc.Hostname()}
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.c.tap.Tainted() {
		return errBareNewline
	}
	if !opts.UTF8 && !isASCII(from) {
		return errNeedSMTPUTF8
	}
	from, refused, why := sender(from)
	if refused != nil {
		s.c.s.log.Warn("sender refused", append(s.log(), "reply", enh(refused), "reason", why)...)
		return refused
	}
	s.c.mu.Lock()
	s.c.inTx = true
	s.c.mu.Unlock()
	s.hasFrom, s.from, s.opts, s.rcpts = true, from, *opts, nil
	return nil
}

// Rcpt adds a recipient (RFC 5321 §4.1.1.3) if the client may relay.
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.c.tap.Tainted() {
		return errBareNewline
	}
	// Never an open relay: every recipient is remote to us, so only the
	// company's own networks and authenticated users may use it.
	if !s.c.relay && s.user == "" {
		s.c.s.log.Warn("relay denied", append(s.log(), "from", s.from, "rcpt", to)...)
		return errRelayDenied
	}
	if !s.opts.UTF8 && !isASCII(to) {
		return errNeedSMTPUTF8
	}
	to, refused, why := recipient(to)
	if refused != nil {
		s.c.s.log.Warn("recipient refused", append(s.log(), "from", s.from, "reply", enh(refused), "reason", why)...)
		return refused
	}
	// Canonical forms: equal strings are the same mailbox (RFC 5321 §2.4:
	// only the local part may be case-sensitive).
	if slices.Contains(s.rcpts, to) {
		return nil // RFC 5321 §3.3: accept it again, deliver once
	}
	if len(s.rcpts) >= s.c.s.cfg.MaxRecipients {
		return errTooManyRcpts
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// Data reads the message, checks it, and spools it. The reply is 250 only
// if the spool has the message on disk.
func (s *session) Data(r io.Reader) error {
	cfg := &s.c.s.cfg
	if s.c.tap.Tainted() {
		return errBareNewline
	}
	q := cfg.Queue
	id := q.NewID()
	log := s.c.s.log.With(append(s.log(), "id", id)...)

	in := &dataStream{
		r:       r,
		conn:    s.sc.Conn(),
		timeout: cfg.ReadTimeout,
		check:   lineCheck{maxLine: cfg.MaxLineLength},
		tap:     &s.c.tap,
	}
	env := &spool.Envelope{
		ID:         id,
		From:       s.from,
		Arrival:    time.Now().UTC(),
		SMTPUTF8:   s.opts.UTF8,
		Body8Bit:   s.opts.Body == smtp.Body8BitMIME,
		ClientAddr: s.c.remote.String(),
		ClientHelo: s.sc.Hostname(),
	}
	for _, rc := range s.rcpts {
		env.Recipients = append(env.Recipients, spool.Recipient{Address: rc, State: spool.Pending})
	}
	in.onEOF = func() {
		// RFC 6152: the content is 8-bit whatever the client declared;
		// delivery needs to know before it talks to a 7-bit peer. Put
		// reads the body to its end before it writes the envelope.
		env.Body8Bit = env.Body8Bit || in.check.eightBit
	}

	// The header section is read ahead, bounded, for the Message-ID.
	br := bufio.NewReaderSize(in, 64<<10)
	hdr, herr := peekHeader(br, headerPeekLimit)
	env.MessageID = messageID(hdr)

	var cs *tls.ConnectionState
	if st, ok := s.sc.TLSConnectionState(); ok {
		cs = &st
	}
	received := (&trace{
		helo: s.sc.Hostname(), addr: s.c.remote, tls: cs, auth: s.user != "",
		smtputf8: s.opts.UTF8, by: cfg.Hostname, id: id, rcpts: s.rcpts, at: env.Arrival,
	}).header()

	var err error
	if herr != nil {
		err = herr
	} else {
		body := io.MultiReader(strings.NewReader(received), bytes.NewReader(hdr), br)
		err = q.Put(env, body)
	}
	if err == nil {
		log.Info("message queued", "from", env.From, "rcpts", len(env.Recipients), "size", env.Size,
			"message_id", env.MessageID, "tls", cs != nil, "auth", s.user != "")
		if cfg.Notify != nil {
			cfg.Notify(id)
		}
		return queuedReply(id)
	}

	// Whose fault: the client's input, or our storage?
	var reply *smtp.SMTPError
	switch {
	case in.fault == BareCR || in.fault == BareLF:
		reply = errBareNewline
	case in.fault == LongLine:
		reply = errLineTooLong(cfg.MaxLineLength)
	case errors.Is(in.err, smtp.ErrDataTooLarge):
		reply = errTooBig
	case in.err != nil:
		// The client went away or timed out mid-DATA; go-smtp closes.
		log.Info("message not queued: input failed", "err", in.err)
		return in.err
	case errors.Is(err, spool.ErrNoSpace):
		reply = errNoSpace
	default:
		reply = errSpool
	}
	lvl := slogLevel(reply)
	log.Log(s.c.ctx, lvl, "message refused", "reply", reply.Code, "status", enh(reply), "reason", reply.Message, "err", err)
	return reply
}

// peekHeader reads the header section up to and including the empty line
// that ends it, or up to limit octets, whichever comes first.
func peekHeader(br *bufio.Reader, limit int) ([]byte, error) {
	var hdr []byte
	for len(hdr) < limit {
		line, err := br.ReadSlice('\n')
		hdr = append(hdr, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			return hdr, nil
		}
		if err != nil {
			return hdr, err
		}
		if len(line) <= 2 && (string(line) == "\r\n" || string(line) == "\n") {
			break
		}
	}
	return hdr, nil
}

// dataStream is the message as go-smtp hands it over (dot-unstuffed, ending
// before <CRLF>.<CRLF>), checked as it passes. Its first fault ends the
// read with an error, so the spool never stores the message; go-smtp then
// reads the rest of the DATA away and sends the reply Data returns.
type dataStream struct {
	r       io.Reader
	conn    net.Conn
	timeout time.Duration
	check   lineCheck
	tap     *streamTap
	onEOF   func()

	fault Violation
	err   error // the first error returned
	tail  bool  // the final CRLF was added
}

var errFault = errors.New("inbound: message refused by line check")

func (d *dataStream) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.tail {
		return 0, io.EOF
	}
	// go-smtp sets a deadline per command line only; refresh it so a
	// large message may take as long as it needs while the client keeps
	// sending (RFC 5321 §4.5.3.2.7).
	d.conn.SetReadDeadline(time.Now().Add(d.timeout))
	n, err := d.r.Read(p)
	d.check.scan(p[:n])
	if v := d.check.fault; v != OK || d.tap.Tainted() {
		if v == OK {
			v = d.tap.Fault() // seen only in the raw stream; see streamTap
		}
		d.fault, d.err = v, errFault
		return 0, d.err
	}
	if err == io.EOF {
		if v := d.check.finish(); v != OK {
			d.fault, d.err = v, errFault
			return 0, d.err
		}
		if d.onEOF != nil {
			d.onEOF()
		}
		// BDAT (RFC 3030) content may end mid-line; the stored message is
		// always whole CRLF lines, as DATA would have delivered it.
		if d.check.lineLen > 0 {
			if n+2 > len(p) {
				return n, nil // room next time; the reader repeats its EOF
			}
			p[n], p[n+1] = '\r', '\n'
			d.tail = true
			return n + 2, nil
		}
		return n, io.EOF
	}
	if err != nil {
		d.err = err
		return n, err
	}
	return n, nil
}

// Reset ends the transaction (RSET, or after DATA). When the server is
// shutting down the connection closes here, after its reply went out.
func (s *session) Reset() {
	s.hasFrom, s.from, s.opts, s.rcpts = false, "", smtp.MailOptions{}, nil
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	s.c.inTx = false
	if s.c.s.isClosing() {
		s.c.say421()
	}
}

// Logout ends the session.
func (s *session) Logout() error {
	s.c.mu.Lock()
	s.c.inTx = false
	s.c.mu.Unlock()
	return nil
}

// AuthMechanisms lists PLAIN and LOGIN when credentials can be checked;
// go-smtp offers them only on a TLS connection.
func (s *session) AuthMechanisms() []string {
	if s.c.s.cfg.Auth == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts a SASL exchange (RFC 4954).
func (s *session) Auth(mech string) (sasl.Server, error) {
	check := s.c.s.cfg.Auth
	if check == nil {
		return nil, smtp.ErrAuthUnsupported
	}
	verify := func(user, pass string) error {
		if !check(s.c.ctx, user, pass) {
			s.c.s.log.Warn("authentication failed", append(s.log(), "user", user)...)
			return errAuthFailed
		}
		s.user = user
		s.c.s.log.Info("authenticated", append(s.log(), "user", user)...)
		return nil
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error {
			// RFC 4616 §2: acting as someone else is not offered.
			if identity != "" && identity != user {
				return errAuthFailed
			}
			return verify(user, pass)
		}), nil
	case sasl.Login:
		return &loginServer{verify: verify}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}
