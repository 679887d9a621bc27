package inbound

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/spool"
	"github.com/smgctl/smgctl/pkg/smtpreply"
	"github.com/smgctl/smgctl/pkg/smtpserver"
)

// session is one SMTP session in smtpserver's sense: from the greeting to
// QUIT, or to STARTTLS, after which a new one starts (RFC 3207 §4.2: the
// client must forget what it knew, and so must the server, AUTH
// included).
type session struct {
	s     *Server
	ctx   context.Context
	cs    smtpserver.ConnState
	id    string // for the log: replies never carry internal detail
	relay bool   // the client's network may relay without AUTH

	hello smtpserver.Hello
	user  string // authenticated user (RFC 4954), "" if none

	from  string
	mp    smtpserver.MailParams
	rcpts []spool.Recipient
}

func (s *session) log() []any {
	return []any{"session", s.id, "client", s.cs.Remote.Addr().String(), "helo", s.hello.Name}
}

func (s *session) Hello(h smtpserver.Hello) *smtpreply.Reply {
	s.hello = h
	return nil
}

// Mail starts a transaction (RFC 5321 §4.1.1.2).
func (s *session) Mail(from smtpserver.Path, mp smtpserver.MailParams) *smtpreply.Reply {
	if refuse := s.s.cfg.Refuse; refuse != nil {
		if err := refuse(); err != nil {
			s.s.log.Warn("mail refused", append(s.log(), "from", from.String(), "reason", err)...)
			return errRefused
		}
	}
	addr, refused := sender(from)
	if refused != nil {
		s.s.log.Warn("sender refused", append(s.log(), "from", from.String(), "reply", refused.String())...)
		return refused
	}
	s.from, s.mp, s.rcpts = addr, mp, nil
	return nil
}

// Rcpt adds a recipient (RFC 5321 §4.1.1.3) if the client may relay.
func (s *session) Rcpt(to smtpserver.Path, rp smtpserver.RcptParams) *smtpreply.Reply {
	// Never an open relay: every recipient is remote to us, so only the
	// company's own networks and authenticated users may use it.
	if !s.relay && s.user == "" {
		s.s.log.Warn("relay denied", append(s.log(), "from", s.from, "rcpt", to.String())...)
		return errRelayDenied
	}
	addr, refused := recipient(to)
	if refused != nil {
		s.s.log.Warn("recipient refused", append(s.log(), "from", s.from, "rcpt", to.String(), "reply", refused.String())...)
		return refused
	}
	// Canonical forms: equal strings are the same mailbox (RFC 5321 §2.4:
	// only the local part may be case-sensitive).
	if slices.ContainsFunc(s.rcpts, func(r spool.Recipient) bool { return r.Address == addr }) {
		return nil // RFC 5321 §3.3: accept it again, deliver once
	}
	s.rcpts = append(s.rcpts, spool.Recipient{
		Address: addr, State: spool.Pending,
		Notify: notifyList(rp.Notify), ORcpt: orcpt(rp.ORcpt),
	})
	return nil
}

// notifyList is RFC 3461 §4.1's NOTIFY as the spool stores it.
func notifyList(n smtpserver.Notify) []string {
	if n&smtpserver.NotifyNever != 0 {
		return []string{"NEVER"}
	}
	var l []string
	for _, k := range []struct {
		bit  smtpserver.Notify
		name string
	}{{smtpserver.NotifySuccess, "SUCCESS"}, {smtpserver.NotifyFailure, "FAILURE"}, {smtpserver.NotifyDelay, "DELAY"}} {
		if n&k.bit != 0 {
			l = append(l, k.name)
		}
	}
	return l
}

// orcpt is RFC 3461 §4.2's ORCPT as the spool stores it: "type;address".
func orcpt(o smtpserver.ORcpt) string {
	if o.AddrType == "" {
		return ""
	}
	return o.AddrType + ";" + o.Addr
}

// Data reads the message and spools it. The reply is 250 only once the
// spool has the message on disk (spool.Put syncs it first).
func (s *session) Data(r io.Reader) *smtpreply.Reply {
	cfg := &s.s.cfg
	q := cfg.Queue
	id := q.NewID()
	// The session's attributes go with each line, not into a Logger made
	// per message: With formats them even when nothing is logged.
	log := func(level slog.Level, msg string, args ...any) {
		if s.s.log.Enabled(s.ctx, level) {
			s.s.log.Log(s.ctx, level, msg, append(append(s.log(), "id", id), args...)...)
		}
	}
	in := &bodyReader{r: r}
	env := &spool.Envelope{
		ID:         id,
		From:       s.from,
		Arrival:    time.Now().UTC(),
		SMTPUTF8:   s.mp.SMTPUTF8,
		Body8Bit:   s.mp.Body == smtpserver.Body8BitMIME,
		ClientAddr: s.cs.Remote.Addr().String(),
		ClientHelo: s.hello.Name,
		Recipients: slices.Clone(s.rcpts),
		DSNRet:     s.mp.Ret,
		DSNEnvID:   s.mp.EnvID,
		RequireTLS: s.mp.RequireTLS,
	}
	// RFC 6152: the content is 8-bit whatever the client declared;
	// delivery needs to know before it talks to a 7-bit peer. Put reads
	// the body to its end before it writes the envelope.
	in.onEOF = func() { env.Body8Bit = env.Body8Bit || in.eightBit }

	// The header section is read ahead, bounded, for the Message-ID.
	br := bodyBufs.Get().(*bufio.Reader)
	br.Reset(in)
	defer func() {
		br.Reset(nil) // Put has read the body to its end, or failed
		bodyBufs.Put(br)
	}()
	hdr, err := peekHeader(br, headerPeekLimit)
	env.MessageID = messageID(hdr)
	// RFC 8689 §4.1: with REQUIRETLS on MAIL FROM the TLS-Required field
	// is ignored, so the flag is stored only without it; delivery never
	// sees both.
	env.TLSRequiredNo = !env.RequireTLS && tlsRequiredNo(hdr)
	addrs := make([]string, len(env.Recipients))
	for i, rc := range env.Recipients {
		addrs[i] = rc.Address
	}
	received := (&trace{
		helo: s.hello.Name, esmtp: s.hello.ESMTP, addr: s.cs.Remote.Addr(), tls: s.cs.TLS, auth: s.user != "",
		smtputf8: s.mp.SMTPUTF8, by: cfg.Hostname, id: id, rcpts: addrs, at: env.Arrival,
	}).header()
	if err == nil {
		err = q.Put(env, io.MultiReader(strings.NewReader(received), bytes.NewReader(hdr), br))
	}
	if err == nil {
		log(slog.LevelInfo, "message queued", "from", env.From, "rcpts", len(env.Recipients), "size", env.Size,
			"message_id", env.MessageID, "tls", s.cs.TLS != nil, "auth", s.user != "")
		if cfg.Notify != nil {
			cfg.Notify(id)
		}
		return queuedReply(id)
	}
	if in.err != nil {
		// The client's input was refused (bare CR/LF, size, line length,
		// NUL) or failed (timeout, reset): smtpserver sends its own reply
		// and nothing is stored.
		log(slog.LevelInfo, "message not queued: input refused or failed", "err", in.err)
		return nil
	}
	reply := errSpool
	if errors.Is(err, spool.ErrNoSpace) {
		reply = errNoSpace
	}
	log(slogLevel(reply), "message refused", "reply", reply.String(), "err", err)
	return reply
}

// bodyBufs are the read-ahead buffers of Data, kept for the next
// message rather than allocated for each.
var bodyBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// bodyReader passes the message through, noting 8-bit octets (RFC 6152)
// and the first input error.
type bodyReader struct {
	r        io.Reader
	eightBit bool
	err      error
	onEOF    func()
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if !b.eightBit && hasHighBit(p[:n]) {
		b.eightBit = true
	}
	switch {
	case err == io.EOF:
		if b.onEOF != nil {
			b.onEOF()
		}
	case err != nil && b.err == nil:
		b.err = err
	}
	return n, err
}

// peekHeader reads the header section up to and including the empty line
// that ends it, or up to limit octets, whichever comes first. smtpserver
// hands over only CRLF-terminated lines.
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
		if string(line) == "\r\n" {
			break
		}
	}
	return hdr, nil
}

// Reset ends the transaction (RSET, the final reply to DATA/BDAT, ...).
func (s *session) Reset() { s.from, s.mp, s.rcpts = "", smtpserver.MailParams{}, nil }

// Logout ends the session.
func (s *session) Logout() {}

// authSession offers AUTH PLAIN and LOGIN; smtpserver runs the exchange
// (over TLS only), throttles guessing per address and closes a
// connection after MaxAuthFailures.
type authSession struct{ *session }

func (s *authSession) Auth(c smtpserver.Credentials) *smtpreply.Reply {
	// RFC 4616 §2: acting as someone else is not offered.
	if c.Identity != "" && c.Identity != c.Username || !s.s.cfg.Auth(s.ctx, c.Username, c.Password) {
		s.s.log.Warn("authentication failed", append(s.log(), "user", c.Username)...)
		return errAuthFailed
	}
	s.user = c.Username
	s.s.log.Info("authenticated", append(s.log(), "user", c.Username)...)
	return nil
}
