package inbound

import "bytes"

// Violation is what a lineCheck found wrong with a byte stream.
type Violation uint8

const (
	OK       Violation = iota
	BareCR             // a CR not followed by LF
	BareLF             // an LF not preceded by CR
	LongLine           // a line longer than the limit (CRLF included)
)

func (v Violation) String() string {
	switch v {
	case OK:
		return "ok"
	case BareCR:
		return "bare CR"
	case BareLF:
		return "bare LF"
	case LongLine:
		return "line too long"
	}
	return "unknown"
}

// lineCheck scans a stream, in chunks of any size, for the line-ending
// faults that make SMTP smuggling possible: RFC 5321 §2.3.8 allows CR and LF
// only together, as CRLF, and "." alone on a line ends DATA only when both
// line ends around it are CRLF (§4.1.1.4). A message carrying a bare CR or
// LF could end one transaction early at the next hop that is lenient about
// line ends, and let the rest pose as a second message (CVE-2023-51764 and
// friends), so such input is refused, never repaired.
//
// It also enforces the text-line limit of RFC 5321 §4.5.3.1.6 when maxLine
// is positive, and notes whether any octet has its high bit set (RFC 6152
// 8BITMIME content).
//
// The zero value with maxLine 0 only checks line ends. It records the first
// fault and where it was; later input is still consumed.
type lineCheck struct {
	maxLine int // octets per line including CRLF; 0: no limit

	lineLen  int   // octets of the current line so far
	prevCR   bool  // the last octet seen was CR
	off      int64 // octets scanned
	eightBit bool

	fault   Violation
	faultAt int64 // stream offset of the faulty octet (or the line's end)
}

// Write scans p; it never fails, so it can sit behind an io.TeeReader.
func (c *lineCheck) Write(p []byte) (int, error) {
	c.scan(p)
	return len(p), nil
}

func (c *lineCheck) fail(v Violation, at int) {
	if c.fault == OK {
		c.fault = v
		c.faultAt = c.off + int64(at)
	}
}

func (c *lineCheck) scan(p []byte) {
	if len(p) == 0 {
		return
	}
	if !c.eightBit && hasHighBit(p) {
		c.eightBit = true
	}
	i := 0
	if c.prevCR {
		// The CR that ended the previous chunk must start a CRLF.
		if p[0] != '\n' {
			c.fail(BareCR, -1)
		} else {
			c.endLine(0)
			i = 1
		}
		c.prevCR = false
	}
	// Lines are found with IndexByte (vectorised) rather than byte by byte:
	// this runs over every octet of every message twice.
	for i < len(p) {
		j := bytes.IndexByte(p[i:], '\n')
		if j < 0 {
			seg := p[i:]
			if k := bytes.IndexByte(seg, '\r'); k >= 0 && k < len(seg)-1 {
				c.fail(BareCR, i+k)
			}
			if seg[len(seg)-1] == '\r' {
				c.prevCR = true
			}
			c.lineLen += len(seg)
			c.checkLen(len(p) - 1)
			break
		}
		seg := p[i : i+j] // the line up to, not including, its LF
		if j > 1 {
			if k := bytes.IndexByte(seg[:j-1], '\r'); k >= 0 {
				c.fail(BareCR, i+k)
			}
		}
		switch {
		case j == 0:
			// LF first in this chunk: the CR, if any, ended the last chunk
			// and was handled above, so this one is bare.
			c.fail(BareLF, i)
		case seg[j-1] != '\r':
			c.fail(BareLF, i+j)
		}
		c.lineLen += j
		c.endLine(i + j)
		i += j + 1
	}
	c.off += int64(len(p))
}

// endLine accounts for the LF at p-offset at and starts a new line.
func (c *lineCheck) endLine(at int) {
	c.lineLen++
	c.checkLen(at)
	c.lineLen = 0
}

func (c *lineCheck) checkLen(at int) {
	if c.maxLine > 0 && c.lineLen > c.maxLine {
		c.fail(LongLine, at)
	}
}

// finish reports a fault, counting a CR left dangling at the very end.
func (c *lineCheck) finish() Violation {
	if c.prevCR {
		c.fail(BareCR, -1)
		c.prevCR = false
	}
	return c.fault
}

// hasHighBit reports whether any octet of p is ≥ 0x80, eight at a time.
func hasHighBit(p []byte) bool {
	for len(p) >= 8 {
		w := uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
			uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
		if w&0x8080808080808080 != 0 {
			return true
		}
		p = p[8:]
	}
	for _, b := range p {
		if b >= 0x80 {
			return true
		}
	}
	return false
}
