package smtpserver

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// parseBdat reads BDAT's argument: chunk-size [SP "LAST"] (RFC 3030 §3).
func parseBdat(arg string) (size int64, last, ok bool) {
	n, rest, hasRest := strings.Cut(arg, " ")
	if hasRest {
		if !strings.EqualFold(rest, "LAST") {
			return 0, false, false
		}
		last = true
	}
	if n == "" || len(n) > 18 || strings.Trim(n, "0123456789") != "" {
		return 0, false, false
	}
	size, err := strconv.ParseInt(n, 10, 64)
	return size, last, err == nil
}

// bdat runs a BDAT transaction (RFC 3030): the first chunk's command has
// been read; the Session reads all chunks as one body while chunkReader
// answers and reads the BDAT commands between them.
func (c *conn) bdat(arg string) error {
	size, last, ok := parseBdat(arg)
	if !ok {
		// Where the chunk ends is unknown, so the input cannot be
		// followed any further.
		c.w.reply(replyBdatSyntax)
		return errQuit
	}
	var refuse = replyNeedRcpt
	switch {
	case !c.esmtp:
		refuse = replyNeedEhlo
	case !c.inMail:
		refuse = replyNeedMail
	case c.rcpts > 0:
		refuse.Code = 0
	}
	if refuse.Code != 0 {
		// RFC 3030 §3: a refused BDAT's chunk is still read, so that the
		// next command is found where it is.
		if err := c.discard(size); err != nil {
			return c.readFailed(err)
		}
		if c.esmtp {
			// Not counted as an error: a client that pipelined its
			// chunks meets this for each one after a refused chunk.
			c.w.reply(refuse)
			return nil
		}
		return c.fail(refuse)
	}
	defer c.reset()
	c.raw.SetReadDeadline(time.Now().Add(c.cfg.DataTimeout))
	cr := &chunkReader{c: c, remaining: size, chunk: size, last: last, check: lineCheck{lim: c.bodyLimits()}}
	r := c.sess.Data(cr)
	if cr.err == nil && !cr.done && cr.check.fault == nil && (r == nil || r.Positive()) {
		cr.drain() // Data returned early; read on to BDAT LAST
	}
	if cr.err == nil && !cr.done {
		// Refused: the reply goes to the chunk being read; the client
		// sends no more (RFC 3030 §2), and any BDAT it pipelined
		// meanwhile finds no transaction.
		if err := c.discard(cr.remaining); err != nil {
			cr.err = err
		}
	}
	switch {
	case cr.quit:
		return errQuit
	case cr.abort == "RSET":
		c.w.reply(replyOK)
		return nil
	case cr.abort == "QUIT":
		c.w.reply(replyBye)
		return errQuit
	case cr.err != nil && cr.err != io.EOF:
		if errors.Is(cr.err, os.ErrDeadlineExceeded) {
			c.w.reply(replyTimeout(c.cfg.Hostname))
		}
		return errQuit
	case cr.check.fault != nil:
		if errors.Is(cr.check.fault, ErrBareNewline) {
			c.logger().Info("smtp bare newline in BDAT", "err", cr.check.fault)
		}
		c.w.reply(c.faultReply(cr.check.fault))
		return nil
	}
	if r == nil {
		r = &replyOK
	}
	c.w.reply(*r)
	return nil
}

// discard reads n octets of chunk data away.
func (c *conn) discard(n int64) error {
	if err := c.w.flush(); err != nil {
		return err
	}
	c.raw.SetReadDeadline(time.Now().Add(c.cfg.DataTimeout))
	for n > 0 {
		k := int(min(n, 1<<30))
		d, err := c.w.br.Discard(k)
		n -= int64(d)
		if err != nil {
			return err
		}
	}
	return nil
}

// chunkReader is the body of a BDAT transaction: the chunks' octets as
// they are (RFC 3030 §2: no dot-stuffing), checked across chunk
// boundaries by lineCheck, with a CRLF added when the last line has none.
type chunkReader struct {
	c         *conn
	remaining int64 // octets of the current chunk still unread
	chunk     int64 // the current chunk's size
	last      bool
	check     lineCheck
	finished  bool   // lineCheck.finish done
	tail      []byte // the added CRLF, while not yet read
	done      bool   // io.EOF returned

	err   error  // why reading stopped
	abort string // "RSET" or "QUIT" between chunks
	quit  bool   // the connection must close; the reply is sent
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for r.remaining == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.check.fault != nil {
			return 0, r.check.fault
		}
		if !r.last {
			if err := r.next(); err != nil {
				r.err = err
				return 0, err
			}
			continue
		}
		if !r.finished {
			r.finished = true
			if r.check.finish() {
				r.tail = []byte("\r\n")
			}
			if r.check.fault != nil {
				return 0, r.check.fault
			}
		}
		if len(r.tail) > 0 && len(p) > 0 {
			n := copy(p, r.tail)
			r.tail = r.tail[n:]
			return n, nil
		}
		r.done, r.err = true, io.EOF
		return 0, io.EOF
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.check.fault != nil {
		return 0, r.check.fault
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	w := r.c.w
	if w.br.Buffered() == 0 {
		if err := w.flush(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n, err := w.br.Read(p)
	r.remaining -= int64(n)
	r.check.scan(p[:n])
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = err
		return 0, err
	}
	if r.check.fault != nil {
		return 0, r.check.fault
	}
	return n, nil
}

// next acknowledges the chunk just read and reads the next BDAT command.
// Between chunks only BDAT, RSET, QUIT and NOOP make sense (RFC 3030 §3;
// DATA cannot join a BDAT transaction).
func (r *chunkReader) next() error {
	c := r.c
	c.w.reply(replyChunkOK(r.chunk))
	for {
		line, err := c.readCommand(c.cfg.MaxCommandLine)
		if err != nil {
			if c.readFailed(err) != nil {
				r.quit = true
				return ErrAborted
			}
			continue
		}
		c.commands++
		if c.commands > c.cfg.MaxCommands {
			c.w.reply(replyTooManyCommands(c.cfg.Hostname))
			r.quit = true
			return ErrAborted
		}
		verb, arg := splitCommand(string(line))
		switch verb {
		case "BDAT":
			size, last, ok := parseBdat(arg)
			if !ok {
				c.w.reply(replyBdatSyntax)
				r.quit = true
				return ErrAborted
			}
			r.remaining, r.chunk, r.last = size, size, last
			c.raw.SetReadDeadline(time.Now().Add(c.cfg.DataTimeout))
			return nil
		case "RSET", "QUIT":
			r.abort = verb
			return ErrAborted
		case "NOOP":
			c.w.reply(replyOK)
		default:
			if c.fail(replyOnlyBdat) != nil {
				r.quit = true
				return ErrAborted
			}
		}
	}
}

// drain reads the rest of the transaction away, chunk by chunk.
func (r *chunkReader) drain() {
	var buf [4096]byte
	for {
		if _, err := r.Read(buf[:]); err != nil {
			return
		}
	}
}
