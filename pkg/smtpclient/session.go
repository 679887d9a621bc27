// Package smtpclient is smgctl's outbound SMTP session, shared by the
// probe and the relay: connect, banner, EHLO, STARTTLS with an eager and
// wide handshake, EHLO again, and for the relay MAIL/RCPT/DATA with
// PIPELINING. It records what it saw — banner, replies, TLS parameters,
// the peer's chain, timings — and leaves judging the TLS outcome to
// pkg/policy.
package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/smgctl/smgctl/pkg/dane"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// Step is one recorded step of a session.
type Step struct {
	Name    string           // "connect", "banner", "EHLO", "STARTTLS", "handshake", "MAIL", ...
	Command string           // the command line sent, "" for connect, banner, handshake
	Reply   *smtpreply.Reply // nil when there was none
	Took    time.Duration
	Err     string // "" when the step succeeded at the transport level
}

// maxSteps bounds the record of a long-lived relay session; the oldest
// half is dropped when it fills.
const maxSteps = 128

// Session is one SMTP connection. It is not safe for concurrent use.
type Session struct {
	addr string
	opts Options
	log  *slog.Logger

	conn   net.Conn // the TCP connection, then the *tls.Conn over it
	r      *bufio.Reader
	w      *bufio.Writer
	closed bool

	banner smtpreply.Reply
	ehlo   *smtpreply.Reply
	esmtp  bool
	ext    map[string]string // upper-case keyword → parameters

	// resetNext: the next Envelope starts with RSET (ResetNext).
	resetNext bool
	// dataReply: DATA's reply, when Envelope pipelined it.
	dataReply *smtpreply.Reply

	tlsState *tls.ConnectionState
	outcome  policy.Outcome
	check    Verification
	dane     dane.Result
	steps    []Step
}

// Verification is what the session's own certificate check found.
type Verification struct {
	ChainVerified bool   // the chain leads to a trusted root
	NameMatched   bool   // the leaf names Options.ServerName
	Error         string // why not, "" when both hold
}

// Dial connects to addr ("ip:port" or "host:port") and reads the banner.
// On error the returned Session, when not nil, is closed and still holds
// what was learnt (the banner, the steps). A banner other than 220 gives an
// *Error carrying the reply (RFC 5321 §3.1: 554 means no service; 421
// means try later).
func Dial(ctx context.Context, addr string, opts Options) (*Session, error) {
	opts.Timeouts = opts.Timeouts.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Session{addr: addr, opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := checkLine(opts.helo()); err != nil {
		return nil, &Error{Step: "EHLO", Err: err, permanent: true}
	}
	start := time.Now()
	d := net.Dialer{Timeout: opts.Timeouts.Connect}
	conn, err := d.DialContext(ctx, "tcp", addr)
	s.record(Step{Name: "connect", Took: time.Since(start), Err: errString(err)})
	if err != nil {
		return nil, &Error{Step: "connect", Err: err}
	}
	s.conn = conn
	s.r = bufio.NewReader(conn)
	s.w = bufio.NewWriter(conn)

	rep, err := s.exchange(ctx, "banner", "", opts.Timeouts.Banner)
	if err != nil {
		s.Close()
		return s, err
	}
	s.banner = rep
	if rep.Code != 220 {
		// RFC 5321 §3.1: after a 554 greeting the client sends QUIT.
		if rep.Code != 421 {
			s.exchange(ctx, "QUIT", "QUIT", min(opts.Timeouts.Command, 5*time.Second))
		}
		s.Close()
		return s, &Error{Step: "banner", Reply: &rep}
	}
	return s, nil
}

// Addr is the address dialled.
func (s *Session) Addr() string { return s.addr }

// LocalIP is the client's own address on the connection (TLS-RPT's
// sending-mta-ip, RFC 8460 §4.3); "" when there is none.
func (s *Session) LocalIP() string {
	if s.conn == nil {
		return ""
	}
	if a, ok := s.conn.LocalAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// Banner is the server's greeting.
func (s *Session) Banner() smtpreply.Reply { return s.banner }

// Steps returns the recorded steps, oldest first.
func (s *Session) Steps() []Step { return append([]Step(nil), s.steps...) }

// Hello sends EHLO and, when the server rejects it with 5xx (a pre-ESMTP
// server, RFC 5321 §4.1.4 / §3.2), HELO. It learns the extensions.
func (s *Session) Hello(ctx context.Context) error {
	helo := s.opts.helo()
	s.ext, s.ehlo, s.esmtp = nil, nil, false
	rep, err := s.exchange(ctx, "EHLO", "EHLO "+helo, s.opts.Timeouts.Command)
	if err != nil {
		return err
	}
	if rep.Code == 250 {
		s.ehlo, s.esmtp = &rep, true
		s.ext = parseExtensions(rep)
		return nil
	}
	if !rep.Permanent() {
		return s.fail("EHLO", rep)
	}
	rep, err = s.exchange(ctx, "HELO", "HELO "+helo, s.opts.Timeouts.Command)
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		return s.fail("HELO", rep)
	}
	s.ehlo = &rep
	s.ext = map[string]string{}
	return nil
}

// parseExtensions reads EHLO keywords (RFC 5321 §4.1.1.1): every line
// after the first is "KEYWORD [params]".
func parseExtensions(rep smtpreply.Reply) map[string]string {
	ext := map[string]string{}
	for _, l := range rep.Lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(l), " ")
		if k != "" {
			ext[strings.ToUpper(k)] = v
		}
	}
	return ext
}

// ESMTP reports whether the server accepted EHLO.
func (s *Session) ESMTP() bool { return s.esmtp }

// HelloReply is the reply to the last EHLO or HELO.
func (s *Session) HelloReply() (smtpreply.Reply, bool) {
	if s.ehlo == nil {
		return smtpreply.Reply{}, false
	}
	return *s.ehlo, true
}

// Extensions returns the EHLO keywords (upper case) and their parameters.
func (s *Session) Extensions() map[string]string {
	m := make(map[string]string, len(s.ext))
	for k, v := range s.ext {
		m[k] = v
	}
	return m
}

// Supports reports whether the last EHLO offered ext.
func (s *Session) Supports(ext string) bool {
	_, ok := s.ext[strings.ToUpper(ext)]
	return ok
}

// OffersRequireTLS reports whether a REQUIRETLS message may be passed on
// in this session: TLS is up and the EHLO after STARTTLS listed
// REQUIRETLS. RFC 8689 §2 has servers advertise it only over TLS; a
// keyword seen in clear text (which a man in the middle can add) does not
// count. Whether the server was authenticated is the caller's judgement
// (Outcome, Verification): RFC 8689 §4.2.1 wants that as well.
func (s *Session) OffersRequireTLS() bool {
	return s.tlsState != nil && s.Supports("REQUIRETLS")
}

// StartTLS upgrades the session if the server offers STARTTLS (RFC 3207).
// The Outcome always says what was achieved. err is nil when the session
// can go on — encrypted, or still in clear text because STARTTLS was not
// offered or was refused with a non-421 reply — and non-nil when the
// session is dead (handshake failed, injection, 421, network) and must be
// closed. A certificate that does not verify still encrypts: the Outcome
// records Verified=false and why, and pkg/policy decides.
func (s *Session) StartTLS(ctx context.Context) (policy.Outcome, error) {
	if s.tlsState != nil {
		return s.outcome, nil
	}
	if s.closed {
		return policy.Outcome{Failure: "session closed"}, &Error{Step: "STARTTLS", Err: ErrClosed}
	}
	if !s.Supports("STARTTLS") {
		s.outcome = policy.Outcome{Failure: "STARTTLS not offered"}
		return s.outcome, nil
	}
	rep, err := s.exchange(ctx, "STARTTLS", "STARTTLS", s.opts.Timeouts.Command)
	if err != nil {
		s.outcome = policy.Outcome{Failure: "STARTTLS: " + err.Error()}
		return s.outcome, err
	}
	if rep.Code != 220 {
		// RFC 3207 §4: after 454 the client may go on without TLS.
		s.outcome = policy.Outcome{Failure: "STARTTLS refused: " + rep.String()}
		if rep.Code == 421 {
			return s.outcome, s.fail("STARTTLS", rep)
		}
		return s.outcome, nil
	}
	// RFC 3207 §5 and CVE-2011-0411: nothing the server sent after the
	// 220 may be read as a post-TLS reply. Anything already buffered is a
	// sign of injection; the attempt fails rather than guess.
	if n := s.r.Buffered(); n > 0 {
		s.outcome = policy.Outcome{Failure: fmt.Sprintf("%v: %d bytes", ErrInjection, n)}
		s.record(Step{Name: "handshake", Err: s.outcome.Failure})
		s.Close()
		return s.outcome, &Error{Step: "STARTTLS", Reply: &rep, Err: ErrInjection}
	}

	cfg := RelayOffer()
	cfg.ServerName = s.opts.ServerName
	// The handshake must not fail on a certificate: encryption with an
	// unverified certificate still beats clear text (RFC 7435
	// opportunistic security). VerifyConnection records the verdict.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		s.check = verify(cs.PeerCertificates, s.opts.RootCAs, s.opts.ServerName, s.opts.Now())
		return nil
	}
	if net.ParseIP(cfg.ServerName) != nil {
		cfg.ServerName = "" // RFC 6066 §3: no IP literals in SNI
	}
	tc := tls.Client(s.conn, cfg)
	stop := s.deadline(ctx, s.opts.Timeouts.Command)
	start := time.Now()
	err = tc.HandshakeContext(ctx)
	stop()
	s.record(Step{Name: "handshake", Took: time.Since(start), Err: errString(err)})
	if err != nil {
		s.outcome = policy.Outcome{Failure: "TLS handshake failed: " + err.Error()}
		s.Close()
		return s.outcome, &Error{Step: "handshake", Err: err}
	}
	cs := tc.ConnectionState()
	s.tlsState = &cs
	s.outcome = s.authenticate(cs)
	s.conn = tc
	s.r = bufio.NewReader(tc)
	// One full TLS record (RFC 8446 §5.1: 2^14 octets of plaintext) per
	// flush: the 4 KiB default cut a 100 KB body into 25 records and as
	// many write(2) calls.
	s.w = bufio.NewWriterSize(tc, 16<<10)
	s.log.Debug("TLS established", "addr", s.addr, "version", policy.VersionName(cs.Version),
		"suite", policy.SuiteName(cs.CipherSuite), "bits", s.outcome.Bits(), "verified", s.outcome.Verified)

	// RFC 3207 §4.2: discard all knowledge obtained before TLS and
	// start again with EHLO.
	if err := s.Hello(ctx); err != nil {
		return s.outcome, err
	}
	return s.outcome, nil
}

// authenticate judges the peer's chain: by its TLSA records when the
// host has usable ones (RFC 7672 §3: then the WebPKI does not count),
// else by the WebPKI check (RFC 7672 §3.1.3: unusable records leave the
// server unauthenticated by DANE).
func (s *Session) authenticate(cs tls.ConnectionState) policy.Outcome {
	out := policy.Outcome{TLS: true, Version: cs.Version, CipherSuite: cs.CipherSuite}
	s.dane = dane.Result{}
	if len(s.opts.TLSA) > 0 {
		owner := s.opts.TLSAOwner
		if owner == "" {
			_, port, _ := net.SplitHostPort(s.addr)
			owner = fmt.Sprintf("_%s._tcp.%s", port, s.opts.ServerName)
		}
		names := s.opts.TLSANames
		if names == nil {
			names = []string{s.opts.ServerName}
		}
		s.dane = dane.Verify(s.opts.TLSA, cs.PeerCertificates, owner, names, s.opts.Now())
		switch s.dane.Status {
		case dane.Match:
			out.Verified, out.Auth, out.TLSA = true, policy.AuthDANE, s.dane.TLSA()
			return out
		case dane.Mismatch:
			out.Auth, out.VerifyError = policy.AuthNone, s.dane.Diagnostic
			return out
		}
	}
	out.Verified, out.VerifyError, out.Auth = s.check.ChainVerified && s.check.NameMatched, s.check.Error, policy.AuthNone
	if out.Verified {
		out.Auth = policy.AuthPKIX
	}
	return out
}

// DANE is how the last handshake's chain fared against Options.TLSA
// (zero Status when no TLSA records were given).
func (s *Session) DANE() dane.Result { return s.dane }

// Outcome is what the last StartTLS achieved (zero before any).
func (s *Session) Outcome() policy.Outcome { return s.outcome }

// TLSState returns the connection state after a completed handshake.
func (s *Session) TLSState() (tls.ConnectionState, bool) {
	if s.tlsState == nil {
		return tls.ConnectionState{}, false
	}
	return *s.tlsState, true
}

// PeerCertificates is the chain the server presented, leaf first.
func (s *Session) PeerCertificates() []*x509.Certificate {
	if s.tlsState == nil {
		return nil
	}
	return s.tlsState.PeerCertificates
}

// Verification is the session's own PKIX check of the peer's chain.
func (s *Session) Verification() Verification { return s.check }

// verify checks the chain against roots and the leaf against name, never
// failing the handshake.
func verify(chain []*x509.Certificate, roots *x509.CertPool, name string, now time.Time) Verification {
	if len(chain) == 0 {
		return Verification{Error: "no certificate presented"}
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	var v Verification
	var reasons []string
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		reasons = append(reasons, err.Error())
	} else {
		v.ChainVerified = true
	}
	switch {
	case name == "":
		reasons = append(reasons, "no MX host name to match")
	case leaf.VerifyHostname(name) != nil:
		reasons = append(reasons, fmt.Sprintf("certificate does not name %s", name))
	default:
		v.NameMatched = true
	}
	v.Error = strings.Join(reasons, "; ")
	return v
}

// Reset sends RSET, ending any transaction so the connection can carry the
// next message (RFC 5321 §4.1.1.5).
func (s *Session) Reset(ctx context.Context) error {
	rep, err := s.exchange(ctx, "RSET", "RSET", s.opts.Timeouts.Command)
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		return s.fail("RSET", rep)
	}
	return nil
}

// Quit sends QUIT, waits for the reply and closes the connection. A
// missing 221 is not an error worth reporting: the work is done.
func (s *Session) Quit(ctx context.Context) error {
	if s.closed {
		return nil
	}
	_, err := s.exchange(ctx, "QUIT", "QUIT", s.opts.Timeouts.Command)
	s.Close()
	return err
}

// Close drops the connection without QUIT.
func (s *Session) Close() error {
	if s.closed || s.conn == nil {
		s.closed = true
		return nil
	}
	s.closed = true
	return s.conn.Close()
}

// Closed reports whether the session can no longer be used.
func (s *Session) Closed() bool { return s.closed }

// exchange sends cmd (unless "") and reads one reply within timeout,
// recording the step. A transport failure closes the session.
func (s *Session) exchange(ctx context.Context, step, cmd string, timeout time.Duration) (smtpreply.Reply, error) {
	if s.closed {
		return smtpreply.Reply{}, &Error{Step: step, Err: ErrClosed}
	}
	stop := s.deadline(ctx, timeout)
	defer stop()
	start := time.Now()
	if cmd != "" {
		if err := s.writeLine(cmd); err != nil {
			return smtpreply.Reply{}, s.broken(ctx, step, cmd, start, timeout, err)
		}
		if err := s.w.Flush(); err != nil {
			return smtpreply.Reply{}, s.broken(ctx, step, cmd, start, timeout, err)
		}
	}
	return s.readReply(ctx, step, cmd, start, timeout)
}

func (s *Session) readReply(ctx context.Context, step, cmd string, start time.Time, timeout time.Duration) (smtpreply.Reply, error) {
	rep, err := smtpreply.Read(s.r)
	if err != nil {
		return rep, s.broken(ctx, step, cmd, start, timeout, err)
	}
	s.record(Step{Name: step, Command: redact(cmd), Reply: &rep, Took: time.Since(start)})
	s.log.Debug("smtp", "addr", s.addr, "step", step, "reply", rep.String())
	if rep.Code == 421 {
		// RFC 5321 §3.8: the server is closing the channel.
		s.Close()
	}
	return rep, nil
}

// broken records a transport failure, closes the session and makes the
// error say what happened in words an operator understands.
func (s *Session) broken(ctx context.Context, step, cmd string, start time.Time, timeout time.Duration, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case errors.As(err, &ne) && ne.Timeout():
		err = fmt.Errorf("no reply within %v", timeout)
	case errors.Is(err, io.EOF):
		err = errors.New("connection closed by the server")
	}
	s.record(Step{Name: step, Command: redact(cmd), Took: time.Since(start), Err: err.Error()})
	s.Close()
	return &Error{Step: step, Err: err}
}

// fail turns an unexpected reply into an *Error.
func (s *Session) fail(step string, rep smtpreply.Reply) error {
	return &Error{Step: step, Reply: &rep}
}

func (s *Session) writeLine(line string) error {
	if _, err := s.w.WriteString(line); err != nil {
		return err
	}
	_, err := s.w.WriteString("\r\n")
	return err
}

// deadline bounds the next I/O by timeout and by ctx, and makes ctx's
// cancellation interrupt it. The returned func must be called when done.
func (s *Session) deadline(ctx context.Context, timeout time.Duration) func() {
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	s.conn.SetDeadline(dl)
	conn := s.conn
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

func (s *Session) record(st Step) {
	if len(s.steps) >= maxSteps {
		s.steps = append(s.steps[:0], s.steps[maxSteps/2:]...)
	}
	s.steps = append(s.steps, st)
}

// redact keeps AUTH secrets out of the record (none are sent today; this
// keeps it so if AUTH is ever added).
func redact(cmd string) string {
	if len(cmd) >= 5 && strings.EqualFold(cmd[:5], "AUTH ") {
		return "AUTH ..."
	}
	return cmd
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// checkLine refuses command arguments that could end the command line
// early and smuggle another (RFC 5321 §2.3.8: CR and LF only as CRLF).
func checkLine(s string) error {
	if strings.ContainsAny(s, "\r\n\x00") {
		return fmt.Errorf("%q: CR, LF or NUL in a command argument", s)
	}
	return nil
}
