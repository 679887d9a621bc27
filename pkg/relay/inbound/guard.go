package inbound

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// guardConn is the connection as go-smtp sees it. It owns the read
// deadlines, so that a client cannot hold a connection by trickling octets
// (slowloris), and it makes sure no clear text follows a STARTTLS go-ahead.
//
// Deadlines are totals that no octet resets:
//   - idle: from the moment the server waits for a command to its first
//     octet (RFC 5321 §4.5.3.2.7: at least 5 minutes);
//   - command: from a command line's first octet to its end;
//   - data: from the start of DATA/BDAT to its end, a floor plus time in
//     proportion to what has arrived (dataAllowance);
//   - handshake: from the STARTTLS go-ahead to the end of the TLS
//     handshake.
//
// go-smtp (v0.25.1) calls SetReadDeadline before each line it reads
// (commands and AUTH responses) and at no other time; the guard takes that
// call as "waiting for the next line" and ignores the time it names.
type guardConn struct {
	net.Conn
	limits Timeouts

	mu       sync.Mutex
	phase    phase
	since    time.Time // start of the phase
	dataIn   int64     // octets read in the data phase
	dataOver bool      // Data returned; the next line ends the data phase
	greeted  bool      // the greeting went out
	tls      bool      // the STARTTLS go-ahead went out: records only from now on
	failed   bool      // clear text after the go-ahead was refused; closed
}

type phase int

const (
	waitLine  phase = iota // between commands: idle deadline
	inLine                 // a line has begun: command deadline
	handshake              // after "220" to STARTTLS: handshake deadline
	data                   // DATA or BDAT content: data deadline
)

// Timeouts are the guard's limits; see Config.
type Timeouts struct {
	Idle, Command, Data, Handshake time.Duration
}

// dataRate is the slowest transfer the data deadline allows for beyond its
// floor: 64 KiB a second, so a 50 MiB message gets 800 s more.
const dataRate = 64 << 10

func newGuardConn(nc net.Conn, t Timeouts) *guardConn {
	g := &guardConn{Conn: nc, limits: t}
	g.wait()
	return g
}

// wait starts the idle phase. g.mu is held or g is not shared yet.
func (g *guardConn) wait() {
	g.phase, g.since = waitLine, time.Now()
	g.Conn.SetReadDeadline(g.since.Add(g.limits.Idle))
}

// SetReadDeadline is go-smtp saying it waits for the next line.
func (g *guardConn) SetReadDeadline(time.Time) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.phase == data && !g.dataOver {
		return nil // BDAT: chunk commands inside one data phase
	}
	g.wait()
	return nil
}

// beginData starts the data phase (Session.Data).
func (g *guardConn) beginData() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.phase, g.since, g.dataIn, g.dataOver = data, time.Now(), 0, false
	g.Conn.SetReadDeadline(g.since.Add(g.limits.Data))
}

// endData marks Data as returned. The deadline stays until go-smtp reads
// the next command, so the rest of a refused message is still read away
// under it.
func (g *guardConn) endData() {
	g.mu.Lock()
	g.dataOver = true
	g.mu.Unlock()
}

func (g *guardConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if err != nil && isTimeout(err) {
		g.mu.Lock()
		if g.phase == inLine {
			// A line cut short by its deadline: bufio hands go-smtp the
			// part that came as if it were the whole command (a
			// truncated RCPT address, say). The connection is closed
			// first, so whatever go-smtp makes of it goes nowhere.
			g.failed = true
			g.Conn.Close()
		}
		g.mu.Unlock()
	}
	if n > 0 {
		g.mu.Lock()
		switch g.phase {
		case waitLine:
			g.phase, g.since = inLine, time.Now()
			g.Conn.SetReadDeadline(g.since.Add(g.limits.Command))
		case data:
			g.dataIn += int64(n)
			allow := g.limits.Data + time.Duration(g.dataIn)*time.Second/dataRate
			g.Conn.SetReadDeadline(g.since.Add(allow))
		}
		g.mu.Unlock()
	}
	return n, quietError(err)
}

// Write passes replies and TLS records through. The first write is the
// greeting; in clear text after it, a 220 can only be the go-ahead to
// STARTTLS (RFC 3207 §4), after which every octet must be a TLS record. A
// failed handshake makes go-smtp answer in clear text ("550 Handshake
// error") into what the client takes for a TLS stream; that write is
// refused and the connection closed instead.
func (g *guardConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	switch {
	case g.failed:
		g.mu.Unlock()
		return 0, net.ErrClosed
	case g.tls && !isTLSRecord(p):
		g.failed = true
		g.mu.Unlock()
		g.Conn.Close()
		return 0, net.ErrClosed
	case !g.greeted:
		g.greeted = true
	case !g.tls && len(p) >= 4 && string(p[:4]) == "220 ":
		g.tls, g.phase, g.since = true, handshake, time.Now()
		g.Conn.SetDeadline(g.since.Add(g.limits.Handshake))
	}
	g.mu.Unlock()
	return g.Conn.Write(p)
}

// isTLSRecord: a record starts with its content type, 20 to 24
// (RFC 8446 §5.1, RFC 5246 §6.2.1).
func isTLSRecord(p []byte) bool {
	return len(p) > 0 && p[0] >= 20 && p[0] <= 24
}

// connError replaces a read error's text, which names addresses and
// ports ("read tcp 127.0.0.1:2525->...: i/o timeout"), with a fixed one:
// go-smtp copies some errors into replies. io.EOF is returned as is
// (go-smtp compares it by identity); errors.Is and Timeout still work.
type connError struct {
	err     error
	timeout bool
}

func (e *connError) Error() string {
	if e.timeout {
		return "timeout exceeded"
	}
	return "connection error"
}

func (e *connError) Unwrap() error   { return e.err }
func (e *connError) Timeout() bool   { return e.timeout }
func (e *connError) Temporary() bool { return false }

func quietError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var ne net.Error
	return &connError{err: err, timeout: errors.As(err, &ne) && ne.Timeout()}
}

// isTimeout reports whether err is a deadline that ran out.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
