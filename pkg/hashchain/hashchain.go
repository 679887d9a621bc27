// Package hashchain links the lines of an append-only JSON-lines file —
// the relay's audit log and the policy journal — so that an edited,
// inserted or deleted line shows: every line carries "prev", the hex
// SHA-256 of the line before it ("" on the first line).
package hashchain

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
)

// Hash is the chain value of one line: hex SHA-256 of its bytes without
// the trailing newline.
func Hash(line []byte) string {
	sum := sha256.Sum256(bytes.TrimSuffix(line, []byte("\n")))
	return hex.EncodeToString(sum[:])
}

// Break says where a chain stops being trustworthy.
type Break struct {
	Line int // 1-based
	Msg  string
}

func (b *Break) Error() string { return fmt.Sprintf("line %d: %s", b.Line, b.Msg) }

// MaxLine bounds one line, so a corrupt file cannot exhaust memory.
const MaxLine = 1 << 20

// Verify reads a chained file from its first line and checks every line's
// prev against the hash of the line before it. It returns the number of
// good lines and, at the first break, a *Break. A last line without its
// newline is a break: a torn write must not pass as a record.
func Verify(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	prev := ""
	n := 0
	for {
		line, err := readLine(br)
		if len(line) == 0 && err == io.EOF {
			return n, nil
		}
		if err != nil && err != io.EOF {
			return n, err
		}
		if !bytes.HasSuffix(line, []byte("\n")) {
			return n, &Break{n + 1, "partial last line (no newline)"}
		}
		var rec struct {
			Prev *string `json:"prev"`
		}
		if jerr := json.Unmarshal(line, &rec); jerr != nil {
			return n, &Break{n + 1, "not a JSON record: " + jerr.Error()}
		}
		if rec.Prev == nil {
			return n, &Break{n + 1, "no prev field"}
		}
		if *rec.Prev != prev {
			want := prev
			if want == "" {
				want = `"" (first line)`
			}
			return n, &Break{n + 1, fmt.Sprintf("prev is %q, want %s: the line before was altered, inserted or removed", *rec.Prev, want)}
		}
		prev = Hash(line)
		n++
	}
}

// readLine reads through the next newline, refusing lines over MaxLine.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > MaxLine {
			return nil, fmt.Errorf("line longer than %d bytes", MaxLine)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// LastLine returns the last line of the first size bytes of r without its
// newline, and whether those bytes end without one (a torn write), so a
// writer can continue the chain. It reads backwards in chunks: the cost
// does not grow with the file. Empty input gives nil, false, nil.
func LastLine(r io.ReaderAt, size int64) (line []byte, torn bool, err error) {
	if size == 0 {
		return nil, false, nil
	}
	var end [1]byte
	if _, err := r.ReadAt(end[:], size-1); err != nil {
		return nil, false, err
	}
	torn = end[0] != '\n'
	stop := size // the line ends here, newline excluded
	if !torn {
		stop--
	}
	const chunk = 4096
	var tail []byte
	for off := stop; off > 0; {
		n := min(int64(chunk), off)
		off -= n
		buf := make([]byte, n)
		if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
			return nil, torn, err
		}
		tail = append(buf, tail...)
		if i := bytes.LastIndexByte(tail, '\n'); i >= 0 {
			return tail[i+1:], torn, nil
		}
		if len(tail) > MaxLine {
			return nil, torn, fmt.Errorf("last line longer than %d bytes", MaxLine)
		}
	}
	return tail, torn, nil
}
