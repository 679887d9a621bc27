package smtpclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/address"
	"github.com/smgctl/smgctl/pkg/smtpreply"
	"github.com/smgctl/smgctl/pkg/xtext"
)

// MailOptions are the MAIL FROM parameters a message needs.
type MailOptions struct {
	// Size is the message size in octets for SIZE= (RFC 1870); 0 omits it.
	Size int64
	// SMTPUTF8: the envelope or headers hold UTF-8 (RFC 6531). Without
	// the extension at the server the message cannot go: ErrSMTPUTF8.
	SMTPUTF8 bool
	// Body8BIT: the body has 8-bit octets; BODY=8BITMIME is sent when the
	// server offers 8BITMIME (RFC 6152). Without it the body goes as is,
	// as Postfix does by default.
	Body8BIT bool
	// Ret and EnvID are the client's RFC 3461 RET (§4.3: "FULL" or
	// "HDRS") and ENVID (§4.4, decoded), passed on only to a server that
	// offers DSN; "" sends none.
	Ret   string
	EnvID string
	// RequireTLS sends REQUIRETLS (RFC 8689 §4.2.1 step 5: the message
	// was received with it and is passed on with it). It goes only to a
	// server for which OffersRequireTLS holds; to any other the message
	// cannot go: Mail fails with ErrRequireTLS before sending anything,
	// so the flag is never silently dropped. The caller checks
	// OffersRequireTLS first to choose its own reply (5.7.30).
	RequireTLS bool
}

// Recipient is one RCPT TO with the client's RFC 3461 parameters, which
// are passed on only to a server that offers DSN.
type Recipient struct {
	Addr string
	// Notify is NOTIFY (§4.1): nil sends none; ["NEVER"] or a subset
	// of SUCCESS, FAILURE and DELAY.
	Notify []string
	// ORcpt is ORCPT (§4.2) as "addr-type;address", the address
	// decoded; xtext-encoded on the wire. "" sends none.
	ORcpt string
}

// Recipients makes plain recipients without DSN parameters.
func Recipients(addrs []string) []Recipient {
	rs := make([]Recipient, len(addrs))
	for i, a := range addrs {
		rs[i].Addr = a
	}
	return rs
}

// path is an address as it goes between a command's angle brackets:
// parsed to an RFC 5321 Mailbox and written again with the quoting it
// needs (address.Mailbox.String), never copied. A string that is not a
// Mailbox, say `x@d> NOTIFY=SUCCESS`, cannot reach the command line; a
// local part that needs quoting is sent quoted, as one address (§4.1.2).
// "" is the null reverse-path (§4.1.1.2), for MAIL only.
func path(step, addr string) (string, error) {
	if addr == "" && step == "MAIL" {
		return "", nil
	}
	m, err := address.Parse(addr)
	if err != nil {
		return "", &Error{Step: step, Err: fmt.Errorf("address %q: %w", addr, err), permanent: true}
	}
	return m.String(), nil
}

// mailCommand builds "MAIL FROM:<from> ..." for what the server offers.
func (s *Session) mailCommand(from string, o MailOptions) (string, error) {
	from, err := path("MAIL", from)
	if err != nil {
		return "", err
	}
	if o.SMTPUTF8 && !s.Supports("SMTPUTF8") {
		return "", &Error{Step: "MAIL", Err: ErrSMTPUTF8, permanent: true}
	}
	if o.RequireTLS && !s.OffersRequireTLS() {
		return "", &Error{Step: "MAIL", Err: ErrRequireTLS, permanent: true}
	}
	cmd := "MAIL FROM:<" + from + ">"
	if o.Size > 0 && s.Supports("SIZE") {
		cmd += " SIZE=" + strconv.FormatInt(o.Size, 10)
	}
	if o.Body8BIT && s.Supports("8BITMIME") {
		cmd += " BODY=8BITMIME"
	}
	if o.SMTPUTF8 {
		cmd += " SMTPUTF8"
	}
	if o.RequireTLS {
		cmd += " REQUIRETLS"
	}
	if s.Supports("DSN") {
		// RFC 3461 §4.3, §4.4: only to a server that offers DSN; a
		// server without it would refuse the parameters (555).
		if ret := strings.ToUpper(o.Ret); ret == "FULL" || ret == "HDRS" {
			cmd += " RET=" + ret
		}
		if o.EnvID != "" {
			cmd += " ENVID=" + xtext.Encode(o.EnvID)
		}
	}
	return cmd, nil
}

// rcptCommand builds "RCPT TO:<to> ..." for what the server offers.
func (s *Session) rcptCommand(r Recipient) (string, error) {
	to, err := path("RCPT", r.Addr)
	if err != nil {
		return "", err
	}
	cmd := "RCPT TO:<" + to + ">"
	if !s.Supports("DSN") {
		return cmd, nil
	}
	if n := notifyValue(r.Notify); n != "" {
		cmd += " NOTIFY=" + n
	}
	if o, ok := xtext.ORcpt(r.ORcpt); ok {
		cmd += " ORCPT=" + o
	}
	return cmd, nil
}

// notifyValue is RFC 3461 §4.1's NOTIFY value: "NEVER" alone, or the
// known keywords among SUCCESS, FAILURE and DELAY, each once; "" when
// nothing valid is left (the server's default then applies).
func notifyValue(n []string) string {
	var out []string
	for _, k := range n {
		k = strings.ToUpper(strings.TrimSpace(k))
		switch k {
		case "NEVER":
			return "NEVER"
		case "SUCCESS", "FAILURE", "DELAY":
			if !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return strings.Join(out, ",")
}

// Mail sends MAIL FROM. A reply other than 250 is an *Error carrying it.
func (s *Session) Mail(ctx context.Context, from string, o MailOptions) (smtpreply.Reply, error) {
	cmd, err := s.mailCommand(from, o)
	if err != nil {
		return smtpreply.Reply{}, err
	}
	rep, err := s.exchange(ctx, "MAIL", cmd, s.opts.Timeouts.Command)
	if err != nil {
		return rep, err
	}
	if rep.Code != 250 {
		return rep, s.fail("MAIL", rep)
	}
	return rep, nil
}

// Rcpt sends RCPT TO and returns the server's reply for this recipient. A
// negative reply is not an error (it concerns one recipient); err is set
// for transport failures and a 421, which end the session.
func (s *Session) Rcpt(ctx context.Context, to string) (smtpreply.Reply, error) {
	return s.RcptTo(ctx, Recipient{Addr: to})
}

// RcptTo is Rcpt with the recipient's DSN parameters.
func (s *Session) RcptTo(ctx context.Context, r Recipient) (smtpreply.Reply, error) {
	cmd, err := s.rcptCommand(r)
	if err != nil {
		return smtpreply.Reply{}, err
	}
	rep, err := s.exchange(ctx, "RCPT", cmd, s.opts.Timeouts.Command)
	if err != nil {
		return rep, err
	}
	if rep.Code == 421 {
		return rep, s.fail("RCPT", rep)
	}
	return rep, nil
}

// pipelineGroup bounds the commands sent before reading replies, so a
// server that does not read while it writes cannot deadlock us
// (RFC 2920 §3.2 warns of exactly that).
const pipelineGroup = 100

// Envelope sends MAIL FROM and one RCPT TO per recipient and returns
// every reply. With PIPELINING (RFC 2920 §3.1) the commands go out
// together and the replies are read afterwards, one per command, in
// order; without it they go one by one and stop at a failed MAIL. err is
// an *Error for a MAIL failure (the rcpt replies are then meaningless) or
// a transport failure; a refused recipient only shows in its reply.
//
// With PIPELINING, a RSET asked for by ResetNext leads the group and DATA
// ends it (RFC 2920 allows both there), so a message on a reused
// connection costs two round trips, not four; Data then uses DATA's reply.
// A RSET that fails, or gets no reply, is an *Error with Step "RSET":
// the connection was dead before the transaction began.
func (s *Session) Envelope(ctx context.Context, from string, o MailOptions, rcpts []string) (mail smtpreply.Reply, replies []smtpreply.Reply, err error) {
	return s.EnvelopeTo(ctx, from, o, Recipients(rcpts))
}

// EnvelopeTo is Envelope with each recipient's DSN parameters.
func (s *Session) EnvelopeTo(ctx context.Context, from string, o MailOptions, rcpts []Recipient) (mail smtpreply.Reply, replies []smtpreply.Reply, err error) {
	reset := s.resetNext
	s.resetNext = false
	s.dataReply = nil
	if !s.Supports("PIPELINING") {
		if reset {
			if err := s.Reset(ctx); err != nil {
				return mail, nil, err
			}
		}
		if mail, err = s.Mail(ctx, from, o); err != nil {
			return mail, nil, err
		}
		for _, to := range rcpts {
			rep, err := s.RcptTo(ctx, to)
			if err != nil {
				return mail, replies, err
			}
			replies = append(replies, rep)
		}
		return mail, replies, nil
	}
	var cmds, steps []string
	if reset {
		cmds, steps = append(cmds, "RSET"), append(steps, "RSET")
	}
	mailAt := len(cmds)
	cmd, err := s.mailCommand(from, o)
	if err != nil {
		return mail, nil, err
	}
	cmds, steps = append(cmds, cmd), append(steps, "MAIL")
	for _, to := range rcpts {
		cmd, err := s.rcptCommand(to)
		if err != nil {
			return mail, nil, err
		}
		cmds, steps = append(cmds, cmd), append(steps, "RCPT")
	}
	// DATA only in a single group, where it can be the last command.
	withData := len(cmds) < pipelineGroup
	if withData {
		cmds, steps = append(cmds, "DATA"), append(steps, "DATA")
	}
	if s.closed {
		return mail, nil, &Error{Step: steps[0], Err: ErrClosed}
	}
	for first := 0; first < len(cmds); first += pipelineGroup {
		end := min(first+pipelineGroup, len(cmds))
		reps, err := s.pipeline(ctx, cmds[first:end], steps[first:end])
		var resetRep *smtpreply.Reply
		for i, rep := range reps {
			switch k := first + i; {
			case k < mailAt:
				resetRep = &rep
			case k == mailAt:
				mail = rep
			case withData && k == len(cmds)-1:
				s.dataReply = &rep
			default:
				replies = append(replies, rep)
			}
		}
		if resetRep != nil && resetRep.Code != 250 {
			return mail, replies, s.fail("RSET", *resetRep)
		}
		if err != nil {
			return mail, replies, err
		}
		if first == 0 && mail.Code != 250 {
			// The RCPT replies of this group were read (the server
			// answers every pipelined command); stop here.
			return mail, replies, s.fail("MAIL", mail)
		}
	}
	return mail, replies, nil
}

// ResetNext makes the next Envelope start with RSET (RFC 5321 §4.1.1.5),
// pipelined when the server allows: for a cached connection, to end
// whatever the last transaction left and to prove the connection alive
// without a round trip of its own.
func (s *Session) ResetNext() { s.resetNext = true }

// EndData ends a DATA that Envelope pipelined and the server accepted
// with 354 although no recipient was accepted (RFC 2920 §3.1 asks servers
// to refuse it; not all do): an empty message to nobody.
func (s *Session) EndData(ctx context.Context) error {
	rep := s.dataReply
	s.dataReply = nil
	if rep == nil || rep.Code != 354 {
		return nil
	}
	_, err := s.exchange(ctx, "DATA", ".", s.opts.Timeouts.DataEnd)
	return err
}

// pipeline writes cmds in one go and reads one reply per command; steps
// names each command for errors.
func (s *Session) pipeline(ctx context.Context, cmds, steps []string) ([]smtpreply.Reply, error) {
	stop := s.deadline(ctx, s.opts.Timeouts.Command)
	defer stop()
	start := time.Now()
	for _, c := range cmds {
		if err := s.writeLine(c); err != nil {
			return nil, s.broken(ctx, steps[0], c, start, s.opts.Timeouts.Command, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return nil, s.broken(ctx, steps[0], cmds[0], start, s.opts.Timeouts.Command, err)
	}
	reps := make([]smtpreply.Reply, 0, len(cmds))
	for i, c := range cmds {
		rep, err := s.readReply(ctx, steps[i], c, start, s.opts.Timeouts.Command)
		if err != nil {
			return reps, err
		}
		reps = append(reps, rep)
		if rep.Code == 421 {
			return reps, s.fail(steps[i], rep)
		}
	}
	return reps, nil
}

// Data sends DATA, then the message from r with CRLF line endings and
// dot-stuffing (RFC 5321 §4.5.2), then the final ".", and returns the
// server's reply to it. A reply other than 354 to DATA or 250 at the end
// is an *Error carrying the reply.
func (s *Session) Data(ctx context.Context, r io.Reader) (smtpreply.Reply, error) {
	var rep smtpreply.Reply
	if s.dataReply != nil { // sent and answered with the envelope
		rep, s.dataReply = *s.dataReply, nil
	} else {
		var err error
		if rep, err = s.exchange(ctx, "DATA", "DATA", s.opts.Timeouts.Command); err != nil {
			return rep, err
		}
	}
	if rep.Code != 354 {
		return rep, s.fail("DATA", rep)
	}
	start := time.Now()
	dw := &dataWriter{w: s.w, bol: true}
	bp := dataBufs.Get().(*[]byte)
	defer dataBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			// RFC 5321 §4.5.3.2.5: the timeout applies per block sent.
			stop := s.deadline(ctx, s.opts.Timeouts.DataBlock)
			dw.write(buf[:n])
			err := s.w.Flush()
			stop()
			if err != nil {
				return smtpreply.Reply{}, s.broken(ctx, "DATA", "", start, s.opts.Timeouts.DataBlock, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// The message could not be read: abort without "." so the
			// server does not accept a truncated message.
			s.Close()
			return smtpreply.Reply{}, &Error{Step: "DATA", Err: fmt.Errorf("reading the message: %w", rerr)}
		}
	}
	stop := s.deadline(ctx, s.opts.Timeouts.DataEnd)
	defer stop()
	dw.end()
	if err := s.w.Flush(); err != nil {
		return smtpreply.Reply{}, s.broken(ctx, "DATA", ".", start, s.opts.Timeouts.DataEnd, err)
	}
	rep, err := s.readReply(ctx, "DATA", ".", start, s.opts.Timeouts.DataEnd)
	if err != nil {
		return rep, err
	}
	if rep.Code != 250 {
		return rep, s.fail("DATA", rep)
	}
	return rep, nil
}

// dataBufs recycles Data's read buffers: one per message otherwise.
var dataBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// dataWriter turns any line ending (CRLF, bare LF, bare CR) into CRLF and
// doubles a leading dot (RFC 5321 §4.5.2), so no byte sequence in a
// message can end DATA early or smuggle a second message.
type dataWriter struct {
	w interface {
		WriteByte(byte) error
		Write([]byte) (int, error)
	}
	bol bool // at the beginning of a line
	cr  bool // the previous octet was a CR not yet written
}

var crlf = []byte("\r\n")

func (d *dataWriter) write(p []byte) {
	for len(p) > 0 {
		if d.cr {
			d.cr = false
			d.w.Write(crlf)
			d.bol = true
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		switch p[0] {
		case '\r':
			d.cr = true
			p = p[1:]
			continue
		case '\n':
			d.w.Write(crlf)
			d.bol = true
			p = p[1:]
			continue
		case '.':
			if d.bol {
				d.w.WriteByte('.')
			}
		}
		// The rest of the line goes out in one copy: a byte-wise loop
		// cost a fifth of the relay's CPU on 100 KB messages.
		n := lineEnd(p)
		d.w.Write(p[:n])
		d.bol = false
		p = p[n:]
	}
}

// lineEnd is the index of the first CR or LF in p, or len(p).
func lineEnd(p []byte) int {
	n := bytes.IndexByte(p, '\n')
	if n < 0 {
		n = len(p)
	}
	if i := bytes.IndexByte(p[:n], '\r'); i >= 0 {
		return i
	}
	return n
}

// end terminates the last line and writes the end-of-data line.
func (d *dataWriter) end() {
	if d.cr || !d.bol {
		d.w.Write(crlf)
	}
	d.cr, d.bol = false, true
	d.w.Write([]byte(".\r\n"))
}
