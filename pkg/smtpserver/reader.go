package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/smgctl/smgctl/pkg/smtpreply"
)

// What a body reader returns to Session.Data when the client's input is
// refused. The server then makes the reply itself (codes.go); whatever Data
// returns after such an error is ignored, so a refused body can never be
// acknowledged. errors.Is tells them apart for logging.
var (
	// ErrBareNewline: a CR not followed by LF, or an LF not preceded by
	// CR (RFC 5321 §2.3.8). errBareCR and errBareLF wrap it.
	ErrBareNewline = errors.New("bare CR or LF")
	// ErrTooBig: the body passed the SIZE limit (RFC 1870 §6).
	ErrTooBig = errors.New("message exceeds the size limit")
	// ErrLineTooLong: a text line passed the line limit (RFC 5321
	// §4.5.3.1.6).
	ErrLineTooLong = errors.New("text line exceeds the line limit")
	// ErrNUL: a NUL octet, which no SMTP text may carry (RFC 5321
	// §4.1.1.4 "text"; RFC 6152 §2 excludes it from 8-bit data too).
	ErrNUL = errors.New("NUL octet")
	// ErrAborted: the client sent RSET or QUIT between BDAT chunks
	// (RFC 3030 §4), or the connection ended mid-body.
	ErrAborted = errors.New("transaction aborted by the client")

	errBareCR = fmt.Errorf("%w: bare CR", ErrBareNewline)
	errBareLF = fmt.Errorf("%w: bare LF", ErrBareNewline)
	// errCommandTooLong is a command line over Config.MaxCommandLine.
	errCommandTooLong = errors.New("command line too long")
)

// wire is one connection's buffered input and output. Replies are
// buffered and flushed only when the reader would otherwise wait for the
// client (RFC 2920 §3.2: a server SHOULD NOT flush while more pipelined
// commands are already in its input buffer).
type wire struct {
	nc           net.Conn // the connection as read (TLS after STARTTLS)
	br           *bufio.Reader
	bw           *bufio.Writer
	writeTimeout time.Duration
	line         []byte // the last command line, reused
}

// bufferSize is the read and write buffer per connection: large enough
// that a DATA body is copied in big slices, small enough for thousands of
// connections.
const bufferSize = 32 << 10

// flush sends the buffered replies.
func (w *wire) flush() error {
	if w.bw.Buffered() == 0 {
		return nil
	}
	w.nc.SetWriteDeadline(time.Now().Add(w.writeTimeout))
	return w.bw.Flush()
}

// fill makes at least one input octet available, flushing the replies
// first if it has to wait for the client.
func (w *wire) fill() error {
	if w.br.Buffered() > 0 {
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	_, err := w.br.Peek(1)
	return err
}

// buffered is the input already read from the connection.
func (w *wire) buffered() []byte {
	b, _ := w.br.Peek(w.br.Buffered())
	return b
}

// readLine reads one command line and returns it without its CRLF; the
// slice is valid until the next call. max counts the CRLF (RFC 5321
// §4.5.3.1.4). A bare LF is reported as soon as it is read, a bare CR as
// soon as the octet after it is: the caller replies and closes, because
// where such a client meant its line to end cannot be known. A line over
// max is read to its CRLF and discarded, so the dialogue stays in step.
func (w *wire) readLine(max int) ([]byte, error) {
	w.line = w.line[:0]
	long := false
	take := func(seg []byte) {
		if long || len(w.line)+len(seg) > max-2 {
			long = true
			return
		}
		w.line = append(w.line, seg...)
	}
	for {
		if err := w.fill(); err != nil {
			return nil, err
		}
		buf := w.buffered()
		i := indexCRorLF(buf)
		if i < 0 {
			take(buf)
			w.br.Discard(len(buf))
			continue
		}
		take(buf[:i])
		end := buf[i]
		w.br.Discard(i + 1)
		if end == '\n' {
			return nil, errBareLF
		}
		if err := w.fill(); err != nil {
			return nil, err
		}
		if b, _ := w.br.ReadByte(); b != '\n' {
			return nil, errBareCR
		}
		switch {
		case long:
			return nil, errCommandTooLong
		case bytes.IndexByte(w.line, 0) >= 0:
			return nil, ErrNUL
		}
		return w.line, nil
	}
}

// indexCRorLF is the index of the first CR or LF in b, or -1. Two
// vectorised scans beat one byte-by-byte loop on long lines.
func indexCRorLF(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	scope := b
	if i >= 0 {
		scope = b[:i]
	}
	if j := bytes.IndexByte(scope, '\r'); j >= 0 {
		return j
	}
	return i
}

// bodyLimits bound one message body.
type bodyLimits struct {
	maxSize int64 // octets of the body as delivered (RFC 1870 §4); 0: none
	maxLine int   // octets per text line, CRLF included; 0: none
}

// dataState is where a dataReader is within the DATA stream.
type dataState uint8

const (
	stLineStart dataState = iota // after CRLF, or at the start
	stText                       // inside a line
	stCR                         // a CR read, an LF must follow
	stDot                        // a "." read at the start of a line
	stDotCR                      // "." CR read at the start of a line
	stEnd                        // <CRLF>.<CRLF> read
)

// dataReader decodes a DATA body (RFC 5321 §4.1.1.4, §4.5.2): it stops
// after the line "." and removes the leading "." that the client added to
// every line starting with one. The body it yields ends with the CRLF of
// its last line; it never includes the final ".".
//
// Faults come in two kinds. A bare CR or LF is hard: the end of data can
// no longer be found reliably (a lenient client might end it with LF.LF,
// an attacker hopes some hop will), so nothing more is read and the
// connection is closed after the reply. Too big, too long a line and NUL
// are soft: the framing is intact, so drain reads on to the end of data,
// discarding, and the client gets its reply in step.
type dataReader struct {
	w       *wire
	lim     bodyLimits
	state   dataState
	size    int64
	lineLen int   // octets of the current line so far
	fault   error // the first soft fault
	err     error // a hard fault, an I/O error, or io.EOF at the end
}

func newDataReader(w *wire, lim bodyLimits) *dataReader {
	return &dataReader{w: w, lim: lim}
}

func (d *dataReader) Read(p []byte) (int, error) {
	if d.fault != nil {
		return 0, d.fault
	}
	n, err := d.decode(p)
	if d.fault != nil {
		return 0, d.fault
	}
	return n, err
}

// drain reads the rest of the body away. It returns nil at the end of
// data, or the hard fault or I/O error that stopped it.
func (d *dataReader) drain() error {
	var buf [4096]byte
	for {
		_, err := d.decode(buf[:])
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (d *dataReader) softFault(err error) {
	if d.fault == nil {
		d.fault = err
	}
}

func (d *dataReader) hardFault(err error) error {
	d.err = err
	return err
}

// decode copies decoded body octets into p. It reads the connection only
// when it has nothing to return yet, so a body arriving in small packets
// is handed on as it comes.
func (d *dataReader) decode(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := 0
	defer func() {
		d.size += int64(n)
		if d.lim.maxSize > 0 && d.size > d.lim.maxSize {
			d.softFault(ErrTooBig)
		}
	}()
	for n < len(p) {
		if d.w.br.Buffered() == 0 && n > 0 {
			return n, nil
		}
		if err := d.w.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, d.hardFault(err)
		}
		buf := d.w.buffered()
		switch d.state {
		case stLineStart:
			if buf[0] == '.' {
				d.w.br.Discard(1)
				d.state = stDot
				continue
			}
			d.state = stText
		case stDot:
			switch buf[0] {
			case '\r':
				d.w.br.Discard(1)
				d.state = stDotCR
				continue
			case '\n':
				return n, d.hardFault(errBareLF)
			}
			// RFC 5321 §4.5.2: the first "." of a longer line is removed.
			d.state = stText
		case stDotCR:
			if buf[0] != '\n' {
				return n, d.hardFault(errBareCR)
			}
			d.w.br.Discard(1)
			d.state = stEnd
			d.err = io.EOF
			return n, io.EOF
		case stCR:
			if buf[0] != '\n' {
				return n, d.hardFault(errBareCR)
			}
			d.w.br.Discard(1)
			p[n] = '\n'
			n++
			d.endLine()
			d.state = stLineStart
			continue
		}
		// stText: copy up to the next CR or LF.
		seg := buf[:min(len(buf), len(p)-n)]
		i := indexCRorLF(seg)
		if i < 0 {
			i = len(seg)
		}
		d.text(seg[:i])
		copy(p[n:], seg[:i])
		n += i
		d.w.br.Discard(i)
		if i == len(seg) {
			continue
		}
		if seg[i] == '\n' {
			return n, d.hardFault(errBareLF)
		}
		p[n] = '\r'
		n++
		d.lineLen++
		d.text(nil)
		d.w.br.Discard(1)
		d.state = stCR
	}
	return n, nil
}

// text accounts for line content without CR or LF.
func (d *dataReader) text(seg []byte) {
	d.lineLen += len(seg)
	if d.lim.maxLine > 0 && d.lineLen > d.lim.maxLine {
		d.softFault(ErrLineTooLong)
	}
	if bytes.IndexByte(seg, 0) >= 0 {
		d.softFault(ErrNUL)
	}
}

// endLine accounts for the LF of a CRLF.
func (d *dataReader) endLine() {
	d.lineLen++
	if d.lim.maxLine > 0 && d.lineLen > d.lim.maxLine {
		d.softFault(ErrLineTooLong)
	}
	d.lineLen = 0
}

// lineCheck checks a body that arrives as raw octets in pieces of any
// size, as BDAT chunks do (RFC 3030 §2: a chunk may end anywhere, between
// CR and LF included). Its state spans the pieces, so a CR that ends one
// chunk is judged by the first octet of the next. It records the first
// fault; all of them are soft, because a BDAT chunk's length tells where
// it ends whatever it contains.
type lineCheck struct {
	lim     bodyLimits
	size    int64
	lineLen int
	prevCR  bool // the last octet seen was a CR
	fault   error
}

func (c *lineCheck) fail(err error) {
	if c.fault == nil {
		c.fault = err
	}
}

func (c *lineCheck) scan(p []byte) {
	if len(p) == 0 || c.fault != nil {
		return
	}
	c.size += int64(len(p))
	if c.lim.maxSize > 0 && c.size > c.lim.maxSize {
		c.fail(ErrTooBig)
		return
	}
	i := 0
	if c.prevCR {
		c.prevCR = false
		if p[0] != '\n' {
			c.fail(errBareCR)
			return
		}
		i = 1
		c.endLine(1)
	}
	for i < len(p) && c.fault == nil {
		rest := p[i:]
		j := bytes.IndexByte(rest, '\n')
		seg := rest
		if j >= 0 {
			seg = rest[:j]
		}
		// Inside seg a CR may only be the last octet: the CR of a CRLF,
		// or one whose LF is in the next piece.
		if k := bytes.IndexByte(seg, '\r'); k >= 0 && k != len(seg)-1 {
			c.fail(errBareCR)
			return
		}
		if bytes.IndexByte(seg, 0) >= 0 {
			c.fail(ErrNUL)
			return
		}
		if j < 0 {
			c.prevCR = seg[len(seg)-1] == '\r'
			c.lineLen += len(seg)
			c.checkLen()
			return
		}
		if j == 0 || seg[j-1] != '\r' {
			c.fail(errBareLF)
			return
		}
		c.endLine(j + 1)
		i += j + 1
	}
}

func (c *lineCheck) endLine(n int) {
	c.lineLen += n
	c.checkLen()
	c.lineLen = 0
}

func (c *lineCheck) checkLen() {
	if c.lim.maxLine > 0 && c.lineLen > c.lim.maxLine {
		c.fail(ErrLineTooLong)
	}
}

// finish is called at the end of the body. It reports a CR left dangling
// by the last chunk, and whether the last line lacks its CRLF: a BDAT
// body may end anywhere, but the message is always stored as whole lines,
// as DATA would have delivered it.
func (c *lineCheck) finish() (needCRLF bool) {
	if c.prevCR {
		c.fail(errBareCR)
	}
	return c.lineLen > 0
}

// The buffers of ended connections, for the next ones: a new session
// per message would otherwise allocate 36 KiB per message for the
// garbage collector to find.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func newWire(nc net.Conn, writeTimeout time.Duration) *wire {
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(nc)
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(nc)
	return &wire{nc: nc, br: br, bw: bw, writeTimeout: writeTimeout}
}

// release gives the buffers back once the connection is done with
// them: closed, or replaced by a new wire after STARTTLS. What was
// buffered is dropped. The wire must not be used after.
func (w *wire) release() {
	if w.br == nil {
		return
	}
	w.br.Reset(nil)
	w.bw.Reset(nil)
	readerPool.Put(w.br)
	writerPool.Put(w.bw)
	w.br, w.bw = nil, nil
}

// reply buffers one reply (RFC 5321 §4.2.1): "xyz-" on every line but
// the last, the enhanced code (RFC 2034 §4) on every line. CR, LF and
// other controls in a text become spaces: a reply must never turn into
// two.
func (w *wire) reply(r smtpreply.Reply) {
	if r.Code < 200 || r.Code > 599 {
		r = replyInternal // a Session's bug must not break the framing
	}
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	code := strconv.Itoa(r.Code)
	for i, l := range lines {
		w.bw.WriteString(code)
		if i < len(lines)-1 {
			w.bw.WriteByte('-')
		} else {
			w.bw.WriteByte(' ')
		}
		if r.Enhanced != "" {
			w.bw.WriteString(r.Enhanced)
			w.bw.WriteByte(' ')
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c < ' ' || c == 0x7f {
				c = ' '
			}
			w.bw.WriteByte(c)
		}
		w.bw.WriteString("\r\n")
	}
}
