package smtpclient

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

func dataOf(in string) string {
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	d := &dataWriter{w: w, bol: true}
	// Split the input at every position class: byte-wise feeding must
	// give the same result as one write.
	d.write([]byte(in))
	d.end()
	w.Flush()
	return b.String()
}

func TestDataWriter(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ".\r\n"},
		{"a", "a\r\n.\r\n"},
		{"a\r\n", "a\r\n.\r\n"},
		{"a\nb\n", "a\r\nb\r\n.\r\n"},
		{"a\rb", "a\r\nb\r\n.\r\n"},
		{"a\r", "a\r\n.\r\n"},
		{".", "..\r\n.\r\n"},
		{"x\r\n.\r\ny", "x\r\n..\r\ny\r\n.\r\n"},
		// SMTP smuggling: a bare-LF dot line must not end DATA.
		{"x\n.\nMAIL FROM:<evil>", "x\r\n..\r\nMAIL FROM:<evil>\r\n.\r\n"},
		{"x\r.\r", "x\r\n..\r\n.\r\n"},
		{"a.b\r\n", "a.b\r\n.\r\n"},
		{"\r\n\r\n", "\r\n\r\n.\r\n"},
	} {
		if got := dataOf(tc.in); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
		// Byte at a time gives the same.
		var b bytes.Buffer
		w := bufio.NewWriter(&b)
		d := &dataWriter{w: w, bol: true}
		for i := 0; i < len(tc.in); i++ {
			d.write([]byte{tc.in[i]})
		}
		d.end()
		w.Flush()
		if b.String() != tc.want {
			t.Errorf("%q byte-wise: got %q", tc.in, b.String())
		}
	}
}

func FuzzDataWriter(f *testing.F) {
	for _, s := range []string{"", ".", "a\n.\nb", "\r.\r", "x\r\n.\r\n", "..\n\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := dataOf(in)
		if !strings.HasSuffix(out, "\r\n.\r\n") && out != ".\r\n" {
			t.Fatalf("%q: no end marker in %q", in, out)
		}
		body := strings.TrimSuffix(out, ".\r\n")
		// Every line ends in CRLF; no bare CR or LF survives.
		if strings.Count(body, "\r") != strings.Count(body, "\n") || strings.Count(body, "\r\n") != strings.Count(body, "\n") {
			t.Fatalf("%q: bare CR or LF in %q", in, body)
		}
		// The end marker appears nowhere earlier.
		if strings.Contains("\r\n"+body, "\r\n.\r\n") {
			t.Fatalf("%q: early end of data in %q", in, body)
		}
		// Un-stuffing gives the input with normalised line endings.
		norm := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(in, "\r\n", "\n"), "\r", "\n"), "\n", "\r\n")
		if norm != "" && !strings.HasSuffix(norm, "\r\n") {
			norm += "\r\n"
		}
		var lines []string
		for _, l := range strings.SplitAfter(body, "\r\n") {
			lines = append(lines, strings.TrimPrefix(l, "."))
		}
		if got := strings.Join(lines, ""); got != norm {
			t.Fatalf("%q: unstuffed %q, want %q", in, got, norm)
		}
	})
}

func BenchmarkDataWriter(b *testing.B) {
	msg := []byte(strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n.dot\r\n", 2000))
	w := bufio.NewWriter(io.Discard)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		d := &dataWriter{w: w, bol: true}
		d.write(msg)
		d.end()
	}
}
