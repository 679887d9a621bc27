package smtp

// smgctl: the fast paths in dataReader.Read and lineLimitReader.Read must
// behave exactly like upstream's octet-at-a-time loops, kept here as the
// reference.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

type refDataReader struct {
	r       *bufio.Reader
	state   int
	limited bool
	n       int64
}

func (r *refDataReader) Read(b []byte) (n int, err error) {
	if r.limited {
		if r.n <= 0 {
			return 0, ErrDataTooLarge
		}
		if int64(len(b)) > r.n {
			b = b[0:r.n]
		}
	}
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
		stateEOF
	)
	for n < len(b) && r.state != stateEOF {
		var c byte
		c, err = r.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			break
		}
		switch r.state {
		case stateBeginLine:
			if c == '.' {
				r.state = stateDot
				continue
			}
			if c == '\r' {
				r.state = stateCR
				break
			}
			r.state = stateData
		case stateDot:
			if c == '\r' {
				r.state = stateDotCR
				continue
			}
			r.state = stateData
		case stateDotCR:
			if c == '\n' {
				r.state = stateEOF
				continue
			}
			r.state = stateData
		case stateCR:
			if c == '\n' {
				r.state = stateBeginLine
				break
			}
			r.state = stateData
		case stateData:
			if c == '\r' {
				r.state = stateCR
			}
		}
		b[n] = c
		n++
	}
	if err == nil && r.state == stateEOF {
		err = io.EOF
	}
	if r.limited {
		r.n -= int64(n)
	}
	return
}

type refLineLimitReader struct {
	R             io.Reader
	LineLimit     int
	curLineLength int
}

func (r *refLineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}
	if r.LineLimit == 0 {
		return n, nil
	}
	for _, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++
		if r.curLineLength > r.LineLimit {
			return 0, ErrTooLongLine
		}
	}
	return n, nil
}

// readAll reads r with reads of the given sizes (cycled) and returns what
// came out, read by read, and the final error.
func readAll(r io.Reader, sizes []byte) ([][]byte, error) {
	var out [][]byte
	for i := 0; i < 10000; i++ {
		size := 1 + int(sizes[i%len(sizes)])%97
		b := make([]byte, size)
		n, err := r.Read(b)
		out = append(out, b[:n])
		if err != nil {
			return out, err
		}
	}
	return out, errors.New("no end")
}

func sameReads(t *testing.T, what string, got, want [][]byte, gerr, werr error) {
	t.Helper()
	if gerr != werr && (gerr == nil || werr == nil || gerr.Error() != werr.Error()) {
		t.Fatalf("%s: error %v, want %v", what, gerr, werr)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d reads, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: read %d = %q, want %q", what, i, got[i], want[i])
		}
	}
}

func FuzzDataReaderFast(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"), []byte{5, 80}, uint8(16), uint16(0))
	f.Add([]byte("a\r\n..b\r\n.\r\n"), []byte{1}, uint8(0), uint16(4))
	f.Add([]byte("x\n.\nMAIL FROM:<e>\r\n.\r\n"), []byte{200}, uint8(3), uint16(0))
	f.Add([]byte("\r\r\n.\r\r\n.\r\n"), []byte{2, 3}, uint8(1), uint16(9))
	f.Fuzz(func(t *testing.T, in, sizes []byte, bufSize uint8, limit uint16) {
		if len(sizes) == 0 {
			sizes = []byte{96}
		}
		mk := func() *bufio.Reader { return bufio.NewReaderSize(bytes.NewReader(in), 16+int(bufSize)) }
		fast := &dataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		ref := &refDataReader{r: mk(), limited: limit > 0, n: int64(limit)}
		got, gerr := readAll(fast, sizes)
		want, werr := readAll(ref, sizes)
		sameReads(t, "dataReader", got, want, gerr, werr)
		if fast.state != ref.state || fast.n != ref.n {
			t.Fatalf("state %d/%d, n %d/%d", fast.state, ref.state, fast.n, ref.n)
		}
		// The bytes after the end of data are left for the next command.
		restF, _ := io.ReadAll(fast.r)
		restR, _ := io.ReadAll(ref.r)
		if !bytes.Equal(restF, restR) {
			t.Fatalf("left %q, want %q", restF, restR)
		}
	})
}

func FuzzLineLimitReaderFast(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\n"), []byte{7}, uint8(10))
	f.Add([]byte("\n\n\nabc"), []byte{1, 2}, uint8(1))
	f.Add([]byte("0123456789\n"), []byte{30}, uint8(10))
	f.Fuzz(func(t *testing.T, in, sizes []byte, limit uint8) {
		if len(sizes) == 0 {
			sizes = []byte{96}
		}
		fast := &lineLimitReader{R: bytes.NewReader(in), LineLimit: int(limit)}
		ref := &refLineLimitReader{R: bytes.NewReader(in), LineLimit: int(limit)}
		got, gerr := readAll(fast, sizes)
		want, werr := readAll(ref, sizes)
		sameReads(t, "lineLimitReader", got, want, gerr, werr)
		// Once too long, every later read fails too.
		if werr == ErrTooLongLine {
			if _, err := fast.Read(make([]byte, 8)); err != ErrTooLongLine {
				t.Fatalf("after ErrTooLongLine: %v", err)
			}
		}
	})
}
