package hashchain

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// chain builds n chained lines with a payload field.
func chain(n int) []string {
	var lines []string
	prev := ""
	for i := range n {
		l := fmt.Sprintf(`{"n":%d,"prev":%q}`, i, prev)
		lines = append(lines, l)
		prev = Hash([]byte(l))
	}
	return lines
}

func TestVerify(t *testing.T) {
	good := chain(4)
	edited := append([]string(nil), good...)
	edited[1] = strings.Replace(edited[1], `"n":1`, `"n":9`, 1)
	cases := []struct {
		name  string
		lines []string
		tail  string
		n     int
		brk   int // 0: no break
	}{
		{"empty", nil, "", 0, 0},
		{"clean", good, "\n", 4, 0},
		{"edited line 2 shows at line 3", edited, "\n", 2, 3},
		{"deleted line 2", []string{good[0], good[2], good[3]}, "\n", 1, 2},
		{"inserted first line", append([]string{`{"prev":""}`}, good...), "\n", 1, 2},
		{"no prev", []string{`{"n":0}`}, "\n", 0, 1},
		{"not JSON", []string{good[0], "garbage"}, "\n", 1, 2},
		{"torn last line", good, "", 3, 4},
	}
	for _, c := range cases {
		data := strings.Join(c.lines, "\n") + c.tail
		if len(c.lines) == 0 {
			data = ""
		}
		n, err := Verify(strings.NewReader(data))
		var b *Break
		if c.brk == 0 {
			if err != nil || n != c.n {
				t.Errorf("%s: %d, %v; want %d lines, no break", c.name, n, err, c.n)
			}
			continue
		}
		if !errors.As(err, &b) || b.Line != c.brk || n != c.n {
			t.Errorf("%s: %d, %v; want %d good lines and a break at line %d", c.name, n, err, c.n, c.brk)
		}
	}
}

func TestLongLine(t *testing.T) {
	long := `{"x":"` + strings.Repeat("a", MaxLine) + `","prev":""}` + "\n"
	if _, err := Verify(strings.NewReader(long)); err == nil {
		t.Fatal("a line over MaxLine must be refused")
	}
}

func FuzzVerify(f *testing.F) {
	f.Add([]byte(strings.Join(chain(3), "\n") + "\n"))
	f.Add([]byte("{\"prev\":\"\"}\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Verify(strings.NewReader(string(data)))
		if err == nil && n != strings.Count(string(data), "\n") {
			t.Fatalf("accepted %d lines of %d", n, strings.Count(string(data), "\n"))
		}
	})
}

func TestLastLine(t *testing.T) {
	long := strings.Repeat("x", 10000) // spans several backward chunks
	cases := []struct {
		data string
		line string
		torn bool
	}{
		{"", "", false},
		{"a\n", "a", false},
		{"a\nbb\n", "bb", false},
		{"a\nbb", "bb", true},
		{"a\n" + long + "\n", long, false},
		{long + "\n", long, false},
		{"\n", "", false},
	}
	for _, c := range cases {
		line, torn, err := LastLine(strings.NewReader(c.data), int64(len(c.data)))
		if err != nil || string(line) != c.line || torn != c.torn {
			t.Errorf("%.20q: %.20q torn=%v err=%v; want %.20q torn=%v", c.data, line, torn, err, c.line, c.torn)
		}
	}
	huge := strings.Repeat("y", MaxLine+10) + "\n"
	if _, _, err := LastLine(strings.NewReader(huge), int64(len(huge))); err == nil {
		t.Error("a last line over MaxLine must be refused")
	}
}

// FuzzParseMark: never panics; what it takes is a mark that survives a
// round trip through the writers' encoding.
func FuzzParseMark(f *testing.F) {
	f.Add([]byte(`{"time":"2026-01-02T03:04:05Z","event":"checkpoint","seq":3,"prev":"ab"}`))
	f.Add([]byte(`{"event":"log-repaired","seq":1,"cut_bytes":9,"reason":"x","prev":""}`))
	f.Add([]byte(`{"event":"delivered","prev":""}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		m, ok := ParseMark(line)
		if !ok {
			return
		}
		if !IsMark(m.Event) {
			t.Fatalf("accepted event %q", m.Event)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if m2, ok := ParseMark(b); !ok || m2.Seq != m.Seq || m2.Prev != m.Prev {
			t.Fatalf("round trip: %s -> %+v %v", b, m2, ok)
		}
	})
}
