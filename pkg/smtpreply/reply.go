// Package smtpreply is the one SMTP reply type: code, enhanced status
// code, text, and whether it is temporary. The outbound session, the
// relay's queue and the DSN builder all use it, so a 4xx can never turn
// into a bounce by accident.
package smtpreply

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Reply is one complete (possibly multi-line) SMTP reply, or, with Code
// 0, the relay's own words about a failure no server answered (see
// Local).
type Reply struct {
	Code int // 200–599 (RFC 5321 §4.2); 0 for Local

	// Enhanced is the RFC 3463 status code from the first line
	// ("5.7.0"), "" when the server sent none.
	Enhanced string
	// Lines is the text of each line, the code and any enhanced code
	// removed. A one-line reply with no text has one empty line.
	Lines []string
}

// Temporary: a transient negative completion (RFC 5321 §4.2.1, 4yz).
// The transaction may succeed later; never a reason to bounce.
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent: a permanent negative completion (5yz).
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Positive: 2yz or 3yz.
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Text joins the lines with single spaces.
func (r Reply) Text() string { return strings.Join(r.Lines, " ") }

// IsZero: no reply and no text.
func (r Reply) IsZero() bool { return r.Code == 0 && len(r.Lines) == 0 }

// String renders the reply on one line as logs, audit records and DSN
// Diagnostic-Code fields quote it: "550 5.1.1 no such user". A Local
// reply is its text alone, the zero Reply "".
func (r Reply) String() string {
	if r.Code == 0 {
		return r.Text()
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if r.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.Enhanced)
	}
	if t := r.Text(); t != "" {
		b.WriteByte(' ')
		b.WriteString(t)
	}
	return b.String()
}

// Local is the relay's own account of a failure that has no SMTP reply
// (a refused connection, a timeout, a shutdown): no code, so neither
// Temporary nor Permanent (the caller knows which), and a DSN types it
// as the relay's words, not as "smtp" (RFC 3464 §2.3.6).
func Local(text string) Reply { return Reply{Lines: []string{text}} }

// FromLine reads back a reply that was stored as String's one line (an
// envelope's last reply on disk, written by older versions too): the
// code and enhanced code when the line starts with them, else a Local
// reply. It never fails; for a server's reply on the wire use Read.
func FromLine(s string) Reply {
	s = strings.TrimSpace(s)
	if s == "" {
		return Reply{}
	}
	code, _, text, err := parseLine(s)
	if err != nil {
		return Local(s)
	}
	enh, rest := splitEnhanced(code, strings.TrimSpace(text))
	return Reply{Code: code, Enhanced: enh, Lines: []string{strings.TrimSpace(rest)}}
}

// Limits on what Read accepts. RFC 5321 §4.5.3.1.5 allows 512 octets per
// reply line; real servers exceed that a little, a hostile one by a lot.
const (
	MaxLineLength = 2048
	MaxLines      = 256
)

// ErrMalformed wraps every syntax problem Read finds.
var ErrMalformed = errors.New("malformed SMTP reply")

// Read reads one reply: lines "xyz-text" continue it, "xyz text" (or a
// bare "xyz") ends it (RFC 5321 §4.2.1). Every line must carry the same
// code. Bare LF line endings are accepted, as Postfix does. Errors are
// I/O errors from r or wrap ErrMalformed.
func Read(r *bufio.Reader) (Reply, error) {
	var rep Reply
	for n := 0; ; n++ {
		if n == MaxLines {
			return rep, fmt.Errorf("%w: more than %d lines", ErrMalformed, MaxLines)
		}
		line, err := readLine(r)
		if err != nil {
			return rep, err
		}
		code, last, text, err := parseLine(line)
		if err != nil {
			return rep, err
		}
		if n == 0 {
			rep.Code = code
		} else if code != rep.Code {
			return rep, fmt.Errorf("%w: line %d has code %d, the first %d", ErrMalformed, n+1, code, rep.Code)
		}
		// RFC 2034 §4: the enhanced code is repeated on every line.
		enh, rest := splitEnhanced(code, text)
		if n == 0 {
			rep.Enhanced = enh
		}
		if enh != "" && enh != rep.Enhanced {
			rest = text // a different code on a later line is just text
		}
		rep.Lines = append(rep.Lines, rest)
		if last {
			return rep, nil
		}
	}
}

// Parse reads one reply from s, which must hold exactly one reply.
func Parse(s string) (Reply, error) {
	r := bufio.NewReader(strings.NewReader(s))
	rep, err := Read(r)
	if err != nil {
		return rep, err
	}
	if r.Buffered() > 0 {
		return rep, fmt.Errorf("%w: data after the last line", ErrMalformed)
	}
	return rep, nil
}

// readLine reads up to LF without letting a line grow without bound.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		b = append(b, frag...)
		if len(b) > MaxLineLength+2 {
			return "", fmt.Errorf("%w: line longer than %d octets", ErrMalformed, MaxLineLength)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if len(b) > 0 && errors.Is(err, io.EOF) {
				return "", fmt.Errorf("%w: connection closed in the middle of a line", ErrMalformed)
			}
			return "", err
		}
		s := string(b[:len(b)-1])
		return strings.TrimSuffix(s, "\r"), nil
	}
}

func parseLine(line string) (code int, last bool, text string, err error) {
	if len(line) < 3 {
		return 0, false, "", fmt.Errorf("%w: %q", ErrMalformed, line)
	}
	// RFC 5321 §4.2: the first digit 2–5, the second 0–5, the third 0–9.
	d := line[:3]
	if d[0] < '2' || d[0] > '5' || d[1] < '0' || d[1] > '5' || d[2] < '0' || d[2] > '9' {
		return 0, false, "", fmt.Errorf("%w: bad reply code in %q", ErrMalformed, truncate(line))
	}
	code = int(d[0]-'0')*100 + int(d[1]-'0')*10 + int(d[2]-'0')
	switch {
	case len(line) == 3:
		return code, true, "", nil
	case line[3] == ' ':
		return code, true, line[4:], nil
	case line[3] == '-':
		return code, false, line[4:], nil
	}
	return 0, false, "", fmt.Errorf("%w: want space or hyphen after the code in %q", ErrMalformed, truncate(line))
}

// splitEnhanced removes a leading RFC 3463 status code whose class
// matches the reply's first digit (RFC 2034 §4).
func splitEnhanced(code int, text string) (string, string) {
	tok, rest, _ := strings.Cut(text, " ")
	if !ValidEnhanced(tok) || int(tok[0]-'0') != code/100 {
		return "", text
	}
	return tok, rest
}

// ValidEnhanced reports whether s is class.subject.detail with class 2, 4
// or 5, subject 1–3 digits and detail 1–3 digits (RFC 3463 §2).
func ValidEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.Contains("245", parts[0]) {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
