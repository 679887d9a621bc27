package deep

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ErrNoSTARTTLS means the server's EHLO reply did not offer STARTTLS.
var ErrNoSTARTTLS = errors.New("STARTTLS not offered")

// maxReplyLine bounds one reply line. RFC 5321 §4.5.3.1.5 allows 512
// octets; real servers exceed that a little, nobody legitimately by 8x.
const maxReplyLine = 4096

// maxReplyLines bounds a multi-line reply (an EHLO reply has a line per
// extension; a few dozen at most).
const maxReplyLines = 100

// SMTPReply is one complete, possibly multi-line, SMTP reply.
type SMTPReply struct {
	Code  int
	Lines []string // text after the code and separator
}

func (r SMTPReply) String() string {
	return strconv.Itoa(r.Code) + " " + strings.Join(r.Lines, " / ")
}

// STARTTLS returns a Dial for deep probes of an SMTP server at addr
// ("host:port"): it connects, reads the banner, sends EHLO helo, STARTTLS,
// and hands over the connection after the 220, ready for a ClientHello.
// timeout bounds the preamble; the context passed to the Dial bounds it
// too.
func STARTTLS(addr, helo string, timeout time.Duration) Dial {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		if err := StartTLS(ctx, conn, helo, timeout); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// StartTLS runs the SMTP preamble on conn (RFC 3207 §4): banner, EHLO,
// STARTTLS, expect 220. On success the next bytes to write are the
// ClientHello. It clears the deadline it set.
func StartTLS(ctx context.Context, conn net.Conn, helo string, timeout time.Duration) error {
	if helo == "" {
		helo = "localhost"
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	dl := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := bufio.NewReaderSize(conn, 1024)
	wrap := func(step string, err error) error {
		if cerr := ctxErr(ctx, err); cerr != nil {
			err = cerr
		}
		return fmt.Errorf("SMTP %s: %w", step, err)
	}
	// RFC 5321 §4.3.1: the greeting is 220; 554 means "go away".
	banner, err := readSMTPReply(r)
	if err != nil {
		return wrap("banner", err)
	}
	if banner.Code != 220 {
		return fmt.Errorf("SMTP banner: %s", banner)
	}
	if _, err := fmt.Fprintf(conn, "EHLO %s\r\n", helo); err != nil {
		return wrap("EHLO", err)
	}
	ehlo, err := readSMTPReply(r)
	if err != nil {
		return wrap("EHLO", err)
	}
	if ehlo.Code != 250 {
		return fmt.Errorf("SMTP EHLO: %s", ehlo)
	}
	offered := false
	for _, l := range ehlo.Lines[1:] {
		if kw, _, _ := strings.Cut(l, " "); strings.EqualFold(kw, "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return ErrNoSTARTTLS
	}
	if _, err := fmt.Fprintf(conn, "STARTTLS\r\n"); err != nil {
		return wrap("STARTTLS", err)
	}
	st, err := readSMTPReply(r)
	if err != nil {
		return wrap("STARTTLS", err)
	}
	if st.Code != 220 {
		return fmt.Errorf("SMTP STARTTLS: %s", st)
	}
	// Bytes after the 220 arrived in clear text before the handshake:
	// either a broken server or STARTTLS command injection (CVE-2011-0411,
	// RFC 3207 §5). Either way what follows is not a clean TLS start.
	if r.Buffered() > 0 {
		return errors.New("SMTP STARTTLS: server sent data after its 220 reply")
	}
	return conn.SetDeadline(time.Time{})
}

// readSMTPReply reads one reply (RFC 5321 §4.2.1): lines "NNN-text"
// continue, "NNN text" (or a bare "NNN") ends it; every line must carry
// the same code.
func readSMTPReply(r *bufio.Reader) (SMTPReply, error) {
	var rep SMTPReply
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return rep, errors.New("reply has too many lines")
		}
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		if len(line) < 3 {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		if n > 0 && code != rep.Code {
			return rep, fmt.Errorf("reply code changed from %d to %d", rep.Code, code)
		}
		rep.Code = code
		sep, text := byte(' '), ""
		if len(line) > 3 {
			sep, text = line[3], line[4:]
		}
		if sep != ' ' && sep != '-' {
			return rep, fmt.Errorf("malformed reply line %q", line)
		}
		rep.Lines = append(rep.Lines, text)
		if sep == ' ' {
			return rep, nil
		}
	}
}

func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > maxReplyLine {
			return "", errors.New("reply line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}
