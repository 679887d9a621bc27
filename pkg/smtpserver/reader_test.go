package smtpserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// testWire reads from in through a read buffer of size bufSize (16 is
// bufio's minimum), so that every boundary case of the buffer is reached.
func testWire(in io.Reader, bufSize int) *wire {
	return &wire{br: bufio.NewReaderSize(in, bufSize), bw: bufio.NewWriter(io.Discard)}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		in   string
		line string
		err  error
	}{
		{"NOOP\r\n", "NOOP", nil},
		{"\r\n", "", nil},
		{"MAIL FROM:<a@b>\r\nRCPT", "MAIL FROM:<a@b>", nil},
		{"NOOP\n", "", errBareLF},
		{"NO\nOP\r\n", "", errBareLF},
		{"NOOP\rRSET\r\n", "", errBareCR},
		{"NOOP\r\r\n", "", errBareCR},
		{"NO\x00OP\r\n", "", ErrNUL},
		{strings.Repeat("x", 510) + "\r\n", strings.Repeat("x", 510), nil},
		{strings.Repeat("x", 511) + "\r\nNOOP\r\n", "", errCommandTooLong},
		{"NOOP", "", io.EOF},
		{"NOOP\r", "", io.EOF},
	}
	for _, tc := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tc.in)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			w := testWire(r, 16)
			line, err := w.readLine(512)
			if !errors.Is(err, tc.err) || string(line) != tc.line {
				t.Errorf("%q (one byte %v): got %q, %v; want %q, %v", tc.in, oneByte, line, err, tc.line, tc.err)
			}
		}
	}
	// After a line too long the next line is read normally: the dialogue
	// stays in step.
	w := testWire(strings.NewReader(strings.Repeat("y", 600)+"\r\nQUIT\r\n"), 16)
	if _, err := w.readLine(512); err != errCommandTooLong {
		t.Fatalf("long line: %v", err)
	}
	if line, err := w.readLine(512); err != nil || string(line) != "QUIT" {
		t.Fatalf("after the long line: %q %v", line, err)
	}
}

func TestDataReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  bodyLimits
		body string
		err  error // from Read; a soft fault
		hard error // from drain after a soft fault, or from Read
		rest string
	}{
		{name: "simple", in: "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n", body: "Subject: x\r\n\r\nhello\r\n", rest: "QUIT\r\n"},
		{name: "empty", in: ".\r\n", body: ""},
		{name: "dot-stuffed", in: "..\r\n..x\r\n.y\r\n.\r\n", body: ".\r\n.x\r\ny\r\n"},
		{name: "dot not at line start", in: "a.\r\n.\r\n", body: "a.\r\n"},
		{name: "LF.LF is no end", in: "a\n.\nb\r\n.\r\n", hard: errBareLF},
		{name: "bare LF", in: "a\nb\r\n.\r\n", hard: errBareLF},
		{name: "bare CR", in: "a\rb\r\n.\r\n", hard: errBareCR},
		{name: "CR.CR", in: "a\r\n.\rX\r\n.\r\n", hard: errBareCR},
		{name: "dot LF", in: "a\r\n.\n.\r\n", hard: errBareLF},
		{name: "CR CR LF", in: "a\r\r\n.\r\n", hard: errBareCR},
		{name: "NUL", in: "a\x00b\r\n.\r\nNOOP\r\n", err: ErrNUL, rest: "NOOP\r\n"},
		{name: "size at limit", in: "12345678\r\n.\r\n", lim: bodyLimits{maxSize: 10}, body: "12345678\r\n"},
		{name: "size over limit", in: "123456789\r\n.\r\nNOOP\r\n", lim: bodyLimits{maxSize: 10}, err: ErrTooBig, rest: "NOOP\r\n"},
		{name: "line at limit", in: "12345678\r\n.\r\n", lim: bodyLimits{maxLine: 10}, body: "12345678\r\n"},
		{name: "line at limit, stuffed", in: "..2345678\r\n.\r\n", lim: bodyLimits{maxLine: 10}, body: ".2345678\r\n"},
		{name: "line over limit", in: "123456789\r\n.\r\nNOOP\r\n", lim: bodyLimits{maxLine: 10}, err: ErrLineTooLong, rest: "NOOP\r\n"},
		{name: "bare LF after soft fault", in: "123456789\r\nx\n.\r\n", lim: bodyLimits{maxLine: 10}, err: ErrLineTooLong, hard: errBareLF},
		{name: "no end", in: "abc\r\n", hard: io.ErrUnexpectedEOF},
	}
	for _, tc := range tests {
		for _, size := range []int{16, 4096} {
			w := testWire(iotest.HalfReader(strings.NewReader(tc.in)), size)
			d := newDataReader(w, tc.lim)
			body, err := io.ReadAll(d)
			var hard error
			switch {
			case err == nil:
			case errors.Is(err, ErrTooBig), errors.Is(err, ErrLineTooLong), errors.Is(err, ErrNUL):
				hard = d.drain()
			default:
				hard, err = err, nil
			}
			if err != tc.err || hard != tc.hard {
				t.Errorf("%s/%d: got %v, %v; want %v, %v", tc.name, size, err, hard, tc.err, tc.hard)
				continue
			}
			if err == nil && hard == nil && string(body) != tc.body {
				t.Errorf("%s/%d: body %q, want %q", tc.name, size, body, tc.body)
			}
			if hard == nil {
				rest, _ := io.ReadAll(w.br)
				if string(rest) != tc.rest {
					t.Errorf("%s/%d: left %q, want %q", tc.name, size, rest, tc.rest)
				}
			}
		}
	}
}

// refData is the DATA decoder written the obvious way, one octet at a
// time, for the differential fuzz test. It returns the body, whether a
// soft fault was seen, how many octets it consumed, and the hard fault.
func refData(in []byte, lim bodyLimits) (body []byte, soft bool, used int, hard error) {
	i, start, lineLen := 0, true, 0
	over := func() {
		if lim.maxLine > 0 && lineLen > lim.maxLine || lim.maxSize > 0 && int64(len(body)) > lim.maxSize {
			soft = true
		}
	}
	for {
		if i >= len(in) {
			return body, soft, i, io.ErrUnexpectedEOF
		}
		b := in[i]
		if start && b == '.' {
			if i+1 >= len(in) {
				return body, soft, i, io.ErrUnexpectedEOF
			}
			switch in[i+1] {
			case '\r':
				if i+2 >= len(in) {
					return body, soft, i, io.ErrUnexpectedEOF
				}
				if in[i+2] != '\n' {
					return body, soft, i, errBareCR
				}
				return body, soft, i + 3, nil
			case '\n':
				return body, soft, i, errBareLF
			}
			i++
			start = false
			continue
		}
		start = false
		switch b {
		case '\r':
			// The CR is passed on before the octet after it is seen.
			body = append(body, '\r')
			lineLen++
			over()
			if i+1 >= len(in) {
				return body, soft, i, io.ErrUnexpectedEOF
			}
			if in[i+1] != '\n' {
				return body, soft, i, errBareCR
			}
			body = append(body, '\n')
			lineLen++
			over()
			lineLen = 0
			i += 2
			start = true
			continue
		case '\n':
			return body, soft, i, errBareLF
		case 0:
			soft = true
		}
		body = append(body, b)
		lineLen++
		over()
		i++
	}
}

func FuzzDataReader(f *testing.F) {
	for _, s := range []string{"a\r\n.\r\n", "..\r\n.\r\n", "a\n.\n", "a\r\n.\rb\r\n.\r\n", "x\x00\r\n.\r\nNOOP\r\n", ".", "\r", "..\r", strings.Repeat("y", 40) + "\r\n.\r\n"} {
		f.Add([]byte(s), uint8(16), uint16(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, bufSize uint8, maxSize uint16, maxLine uint8) {
		lim := bodyLimits{maxSize: int64(maxSize), maxLine: int(maxLine)}
		wantBody, wantSoft, wantUsed, wantHard := refData(in, lim)

		cr := &countingReader{r: iotest.HalfReader(bytes.NewReader(in))}
		w := testWire(cr, 16+int(bufSize))
		d := newDataReader(w, lim)
		body, err := io.ReadAll(d)
		soft := err != nil && (errors.Is(err, ErrTooBig) || errors.Is(err, ErrLineTooLong) || errors.Is(err, ErrNUL))
		hard := err
		if soft {
			hard = d.drain()
		}
		if soft != wantSoft || hard != wantHard {
			t.Fatalf("%q: soft %v hard %v; reference soft %v hard %v", in, soft, hard, wantSoft, wantHard)
		}
		if !soft && hard == nil && !bytes.Equal(body, wantBody) {
			t.Fatalf("%q: body %q, reference %q", in, body, wantBody)
		}
		if hard == nil {
			if used := cr.n - w.br.Buffered(); used != wantUsed {
				t.Fatalf("%q: consumed %d octets, reference %d", in, used, wantUsed)
			}
		}
	})
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// refLines is the BDAT body check written the obvious way, over the whole
// body at once: whether any fault is found, and whether the last line
// lacks its CRLF.
func refLines(in []byte, lim bodyLimits) (fault bool, needCRLF bool) {
	if lim.maxSize > 0 && int64(len(in)) > lim.maxSize {
		return true, false
	}
	lineLen := 0
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\r':
			if i+1 >= len(in) || in[i+1] != '\n' {
				return true, false
			}
		case '\n':
			if i == 0 || in[i-1] != '\r' {
				return true, false
			}
		case 0:
			return true, false
		}
		lineLen++
		if lim.maxLine > 0 && lineLen > lim.maxLine {
			return true, false
		}
		if in[i] == '\n' {
			lineLen = 0
		}
	}
	return false, lineLen > 0
}

// FuzzLineCheck cuts a body into chunks at the fuzzer's offsets and checks
// the chunked result against refLines.
func FuzzLineCheck(f *testing.F) {
	f.Add([]byte("a\r\nb\r\n"), []byte{2})
	f.Add([]byte("a\r\nb"), []byte{1, 1})
	f.Add([]byte("a\rb\r\n"), []byte{2})
	f.Add([]byte("a\r"), []byte{2})
	f.Add([]byte("\na"), []byte{0})
	f.Fuzz(func(t *testing.T, in []byte, cuts []byte) {
		for _, lim := range []bodyLimits{{}, {maxLine: 8}, {maxSize: 12}} {
			wantFault, wantCRLF := refLines(in, lim)
			c := lineCheck{lim: lim}
			rest := in
			for _, cut := range cuts {
				n := min(int(cut), len(rest))
				c.scan(rest[:n])
				rest = rest[n:]
			}
			c.scan(rest)
			needCRLF := c.finish()
			if (c.fault != nil) != wantFault || !wantFault && needCRLF != wantCRLF {
				t.Fatalf("%q cut at %v, limits %+v: fault %v crlf %v; reference fault %v crlf %v", in, cuts, lim, c.fault, needCRLF, wantFault, wantCRLF)
			}
		}
	})
}

// TestLineCheckEveryCut splits a message with CRLF, dot lines and 8-bit
// text at every offset, and one with a bare CR or LF likewise: the verdict
// never depends on where a chunk ends.
func TestLineCheckEveryCut(t *testing.T) {
	good := []byte("Subject: t\r\n\r\n.\r\nline \xc3\xa9\r\n\r\n..\r\nend")
	for _, tc := range []struct {
		msg   []byte
		fault error
	}{{good, nil}, {[]byte("a\r\nb\rc\r\n"), errBareCR}, {[]byte("a\r\nb\nc\r\n"), errBareLF}, {[]byte("a\r\n\r"), errBareCR}} {
		for i := 0; i <= len(tc.msg); i++ {
			for j := i; j <= len(tc.msg); j++ {
				c := lineCheck{}
				c.scan(tc.msg[:i])
				c.scan(tc.msg[i:j])
				c.scan(tc.msg[j:])
				c.finish()
				if c.fault != tc.fault {
					t.Fatalf("%q cut at %d,%d: %v, want %v", tc.msg, i, j, c.fault, tc.fault)
				}
			}
		}
	}
}

// BenchmarkDataReader reads a 100 KB body of 76-octet lines, the relay's
// common case (base64 attachments).
func BenchmarkDataReader(b *testing.B) {
	var msg bytes.Buffer
	for msg.Len() < 100_000 {
		msg.WriteString(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 3)[:76] + "\r\n")
	}
	msg.WriteString(".\r\n")
	in := msg.Bytes()
	r := bytes.NewReader(in)
	w := testWire(r, bufferSize)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(in)
		w.br.Reset(r)
		d := newDataReader(w, bodyLimits{maxSize: 50 << 20, maxLine: 1000})
		for {
			_, err := d.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
