package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/hashchain"
	"github.com/smgctl/smgctl/pkg/policy"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	n := 0
	return &Store{
		Path:        filepath.Join(t.TempDir(), "policy.conf"),
		LockTimeout: time.Second,
		// A fixed clock makes journal lines comparable.
		Now: func() time.Time { n++; return time.Date(2026, 1, 2, 3, 4, 5, n, time.UTC) },
	}
}

func target(t testing.TB, s string) policy.Target {
	t.Helper()
	tg, err := policy.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func journal(t testing.TB, s *Store) []Record {
	t.Helper()
	recs, err := ReadJournal(s.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.JournalPath())
	if err == nil {
		lines := bytes.Count(b, []byte("\n"))
		if n, err := VerifyChain(bytes.NewReader(b)); err != nil || n != lines {
			t.Fatalf("chain: %d lines, %v; want %d lines intact", n, err, lines)
		}
		last := b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:]
		if m, ok := hashchain.ParseMark(last); !ok || m.Event != hashchain.Checkpoint || m.Seq != int64(lines-1) {
			t.Fatalf("the journal ends with %s, want a checkpoint of %d lines", last, lines-1)
		}
	}
	return recs
}

// TestEdits runs a sequence of edits against one file and checks after
// each what changed, the file's bytes and the journal.
func TestEdits(t *testing.T) {
	s := newStore(t)
	if err := os.WriteFile(s.Path, []byte("# kept\npartner.com  # first\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	type step struct {
		name    string
		do      func() (Change, error)
		kind    Action
		file    string
		records int
	}
	add := func(tg string, set map[string]string, comment string) func() (Change, error) {
		return func() (Change, error) { return s.Add(context.Background(), "tester", target(t, tg), set, comment) }
	}
	remove := func(tg string) func() (Change, error) {
		return func() (Change, error) { return s.Remove(context.Background(), "tester", target(t, tg)) }
	}
	steps := []step{
		{"identical add writes nothing", add("partner.com", nil, ""), "",
			"# kept\npartner.com  # first\n\n", 0},
		{"new entry at the end", add("bank.example", map[string]string{"bits": "256", "verify": "cert"}, "contract"), ActionAdd,
			"# kept\npartner.com  # first\n\nbank.example             bits=256 verify=cert  # contract\n", 1},
		{"new option merges, comment kept", add("bank.example", map[string]string{"min-tls": "1.2"}, ""), ActionUpdate,
			"# kept\npartner.com  # first\n\nbank.example             bits=256 min-tls=1.2 verify=cert  # contract\n", 2},
		{"same options again", add("BANK.example.", map[string]string{"bits": "256"}, ""), "",
			"# kept\npartner.com  # first\n\nbank.example             bits=256 min-tls=1.2 verify=cert  # contract\n", 2},
		{"resetting to a default is a change", add("bank.example", map[string]string{"verify": "none"}, ""), ActionUpdate,
			"# kept\npartner.com  # first\n\nbank.example             bits=256 min-tls=1.2  # contract\n", 3},
		{"comment only", add("partner.com", nil, "since 2023"), ActionUpdate,
			"# kept\npartner.com  # since 2023\n\nbank.example             bits=256 min-tls=1.2  # contract\n", 4},
		{"catch-all", add("", map[string]string{"mode": "testing"}, ""), ActionAdd,
			"# kept\npartner.com  # since 2023\n\nbank.example             bits=256 min-tls=1.2  # contract\n*                        mode=testing\n", 5},
		{"remove", remove("partner.com"), ActionRemove,
			"# kept\n\nbank.example             bits=256 min-tls=1.2  # contract\n*                        mode=testing\n", 6},
		{"remove absent writes nothing", remove("partner.com"), "",
			"# kept\n\nbank.example             bits=256 min-tls=1.2  # contract\n*                        mode=testing\n", 6},
	}
	for _, st := range steps {
		ch, err := st.do()
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if ch.Kind() != st.kind {
			t.Errorf("%s: kind %q, want %q", st.name, ch.Kind(), st.kind)
		}
		if got := readFile(t, s.Path); got != st.file {
			t.Errorf("%s: file\n%q\nwant\n%q", st.name, got, st.file)
		}
		if recs := journal(t, s); len(recs) != st.records {
			t.Errorf("%s: %d journal records, want %d", st.name, len(recs), st.records)
		}
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want the file's own 0600 kept", fi.Mode().Perm())
	}

	recs := journal(t, s)
	want := Record{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Actor: "tester", Action: ActionUpdate, Target: "bank.example",
		Before: map[string]string{"bits": "256", "min-tls": "1.0", "verify": "cert", "mode": "enforce", "on-fail": "bounce", "comment": "contract"},
		After:  map[string]string{"bits": "256", "min-tls": "1.2", "verify": "cert", "mode": "enforce", "on-fail": "bounce", "comment": "contract"},
	}
	got := recs[1]
	got.Time, got.Prev, got.SHA256 = want.Time, "", "" // sha256_test.go checks the hash
	if !recordEqual(got, want) {
		t.Errorf("record 2 = %+v\nwant %+v", got, want)
	}
	if recs[5].Action != ActionRemove || recs[5].After != nil || recs[5].Before["comment"] != "since 2023" {
		t.Errorf("remove record = %+v", recs[5])
	}
	if recs[0].Before != nil || recs[0].Prev != "" {
		t.Errorf("first record = %+v: want before null and prev \"\"", recs[0])
	}
}

func recordEqual(a, b Record) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestRefusedEdits: whatever is wrong, neither the file nor the journal
// changes, and no temporary file is left.
func TestRefusedEdits(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		file string
		edit func(s *Store) error
		want string
	}{
		{"bad bits", "partner.com\n", func(s *Store) error {
			_, err := s.Add(ctx, "a", target(t, "x.example"), map[string]string{"bits": "999"}, "")
			return err
		}, `bits="999"`},
		{"unknown option", "partner.com\n", func(s *Store) error {
			_, err := s.Add(ctx, "a", target(t, "x.example"), map[string]string{"colour": "red"}, "")
			return err
		}, `unknown option "colour"`},
		{"newline in comment", "partner.com\n", func(s *Store) error {
			_, err := s.Add(ctx, "a", target(t, "x.example"), nil, "two\nlines")
			return err
		}, "control character"},
		{"file does not parse", "partner.com\nx.example bits=abc\n", func(s *Store) error {
			_, err := s.Add(ctx, "a", target(t, "y.example"), nil, "")
			return err
		}, `policy.conf:2:11: bits="abc"`},
		{"remove from a file that does not parse", "a..b\n", func(s *Store) error {
			_, err := s.Remove(ctx, "a", target(t, "y.example"))
			return err
		}, `policy.conf:1:1: bad target "a..b"`},
		{"import into a file that does not parse", "\xff\n", func(s *Store) error {
			_, err := s.Import(ctx, "a", []policy.Entry{{Target: target(t, "y.example"), Options: policy.DefaultOptions()}}, false)
			return err
		}, "not valid UTF-8"},
		{"import with a bad comment", "partner.com\n", func(s *Store) error {
			_, err := s.Import(ctx, "a", []policy.Entry{{Target: target(t, "y.example"), Options: policy.DefaultOptions(), Comment: "a\rb"}}, false)
			return err
		}, "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			if err := os.WriteFile(s.Path, []byte(c.file), 0o644); err != nil {
				t.Fatal(err)
			}
			const j = `{"time":"2026-01-01T00:00:00Z","actor":"a","action":"add","target":"partner.com","before":null,"after":{},"prev":""}` + "\n"
			if err := os.WriteFile(s.JournalPath(), []byte(j), 0o644); err != nil {
				t.Fatal(err)
			}
			err := c.edit(s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if got := readFile(t, s.Path); got != c.file {
				t.Errorf("file changed to %q", got)
			}
			if got := readFile(t, s.JournalPath()); got != j {
				t.Errorf("journal changed to %q", got)
			}
			assertNoTemp(t, filepath.Dir(s.Path))
		})
	}
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestLockTimeout(t *testing.T) {
	s := newStore(t)
	s.LockTimeout = 50 * time.Millisecond
	// flock(2) locks belong to open file descriptions, so a second lock
	// from this same process conflicts like another process would.
	unlock, err := lock(context.Background(), s.LockPath(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Add(context.Background(), "a", target(t, "x.example"), nil, "")
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Add under a held lock: %v, want ErrLocked", err)
	}
	if _, err := os.Stat(s.Path); !os.IsNotExist(err) {
		t.Errorf("policy file written under someone else's lock")
	}
	// A cancelled context ends the wait too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.LockTimeout = time.Hour
	if _, err := s.Add(ctx, "a", target(t, "x.example"), nil, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Add with cancelled context: %v", err)
	}
	// Released: the edit goes through.
	unlock()
	if _, err := s.Add(context.Background(), "a", target(t, "x.example"), nil, ""); err != nil {
		t.Fatal(err)
	}
}

// TestLockWaits: an edit waits for a lock that is released in time.
func TestLockWaits(t *testing.T) {
	s := newStore(t)
	unlock, err := lock(context.Background(), s.LockPath(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(released)
		unlock()
	}()
	if _, err := s.Add(context.Background(), "a", target(t, "x.example"), nil, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	default:
		t.Fatal("Add finished while the lock was still held")
	}
}

func TestImportDryRun(t *testing.T) {
	s := newStore(t)
	entries := []policy.Entry{
		{Target: target(t, "a.example"), Options: policy.DefaultOptions()},
		{Target: target(t, "b.example"), Options: policy.Options{Bits: 256, MinTLS: policy.DefaultMinTLS}},
	}
	cs, err := s.Import(context.Background(), "a", entries, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Kind() != ActionAdd || cs[1].Kind() != ActionAdd {
		t.Fatalf("dry run changes %+v", cs)
	}
	for _, p := range []string{s.Path, s.JournalPath(), s.LockPath()} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("dry run created %s", p)
		}
	}
	// The real run, then again: the second changes nothing.
	if _, err := s.Import(context.Background(), "a", entries, false); err != nil {
		t.Fatal(err)
	}
	cs, err = s.Import(context.Background(), "a", entries, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Changed() {
			t.Errorf("re-import changed %s", c.Target)
		}
	}
	recs := journal(t, s)
	if len(recs) != 2 || recs[0].Action != ActionImport || recs[1].After["bits"] != "256" {
		t.Errorf("journal %+v", recs)
	}
}

func TestTornJournalRefused(t *testing.T) {
	s := newStore(t)
	torn := `{"time":"2026-01-01T00:00:00Z","actor":"a","act`
	if err := os.WriteFile(s.JournalPath(), []byte(torn), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Add(context.Background(), "a", target(t, "x.example"), nil, "")
	if !errors.Is(err, ErrTornJournal) {
		t.Fatalf("Add onto a torn journal: %v", err)
	}
	if _, err := os.Stat(s.Path); !os.IsNotExist(err) {
		t.Error("policy written although the journal was refused")
	}
	if got := readFile(t, s.JournalPath()); got != torn {
		t.Errorf("journal changed to %q", got)
	}
	assertNoTemp(t, filepath.Dir(s.Path))
}

// TestLongJournalLines chains across lines longer than lastLine's read
// chunk, and across chunk boundaries.
func TestLongJournalLines(t *testing.T) {
	s := newStore(t)
	for i, n := range []int{10, 4000, 4096, 5000, 9000, 1, 12000} {
		comment := strings.Repeat("c", n)
		if _, err := s.Add(context.Background(), "a", target(t, "x.example"), map[string]string{"bits": []string{"112", "128"}[i%2]}, comment); err != nil {
			t.Fatal(err)
		}
	}
	if recs := journal(t, s); len(recs) != 7 {
		t.Fatalf("%d records, want 7", len(recs))
	}
}

func TestVerifyChain(t *testing.T) {
	line := func(prev string) string {
		return `{"time":"2026-01-01T00:00:00Z","actor":"a","action":"add","target":"x","before":null,"after":{},"prev":"` + prev + `"}`
	}
	l1 := line("")
	l2 := line(LineHash([]byte(l1)))
	l3 := line(LineHash([]byte(l2)))
	cases := []struct {
		name     string
		data     string
		n        int
		failLine int // 0: intact
	}{
		{"empty", "", 0, 0},
		{"one", l1 + "\n", 1, 0},
		{"three", l1 + "\n" + l2 + "\n" + l3 + "\n", 3, 0},
		{"first line with prev", l2 + "\n", 0, 1},
		{"line removed", l1 + "\n" + l3 + "\n", 1, 2},
		{"lines swapped", l2 + "\n" + l1 + "\n", 0, 1},
		{"line altered", strings.Replace(l1, `"actor":"a"`, `"actor":"b"`, 1) + "\n" + l2 + "\n", 1, 2},
		{"partial last line", l1 + "\n" + l2, 1, 2},
		{"not json", l1 + "\nhello\n", 1, 2},
	}
	for _, c := range cases {
		n, err := VerifyChain(strings.NewReader(c.data))
		var ce *ChainError
		switch {
		case c.failLine == 0 && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.failLine != 0 && (!errors.As(err, &ce) || ce.Line != c.failLine):
			t.Errorf("%s: error %v, want a break at line %d", c.name, err, c.failLine)
		case n != c.n:
			t.Errorf("%s: %d good lines, want %d", c.name, n, c.n)
		}
	}
}

// FuzzLastLine: reading the journal backwards finds the same last line as
// reading it forwards, whatever the bytes.
func FuzzLastLine(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("a\n"))
	f.Add([]byte("a\nb\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte("no newline"))
	f.Add(bytes.Repeat([]byte("x"), 5000))
	f.Add(append(bytes.Repeat([]byte("x"), 4095), '\n', 'y', '\n'))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "j")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fh, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		last, size, err := lastLine(fh)
		if size != int64(len(data)) {
			t.Fatalf("size %d, want %d", size, len(data))
		}
		switch {
		case len(data) == 0:
			if err != nil || last != nil {
				t.Fatalf("empty: %q %v", last, err)
			}
		case data[len(data)-1] != '\n':
			if !errors.Is(err, ErrTornJournal) {
				t.Fatalf("torn: %v", err)
			}
		default:
			body := data[:len(data)-1]
			want := body[bytes.LastIndexByte(body, '\n')+1:]
			if err != nil || !bytes.Equal(last, want) {
				t.Fatalf("last line %q, %v; want %q", last, err, want)
			}
		}
	})
}

// FuzzVerifyChain: never panics, and a chain it accepts that also reads
// as journal records reads back as exactly that many.
func FuzzVerifyChain(f *testing.F) {
	l1 := `{"time":"2026-01-01T00:00:00Z","actor":"a","action":"add","target":"x","before":null,"after":{},"prev":""}`
	f.Add([]byte(l1 + "\n"))
	f.Add([]byte(l1 + "\n" + `{"prev":"` + LineHash([]byte(l1)) + `"}` + "\n"))
	f.Add([]byte("{}\n"))
	f.Add([]byte("\n"))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := VerifyChain(bytes.NewReader(data))
		if err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), "j")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadJournal(path)
		marks := 0
		for _, l := range bytes.SplitAfter(data, []byte("\n")) {
			if _, ok := hashchain.ParseMark(l); ok {
				marks++
			}
		}
		if err == nil && len(recs)+marks != n {
			t.Fatalf("chain accepted %d lines, ReadJournal: %d records, %v", n, len(recs), err)
		}
	})
}

// BenchmarkAddLongJournal: an edit costs the same however long the
// journal is, since only its last line is read.
func BenchmarkAddLongJournal(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(map[int]string{0: "empty", 100_000: "100k-lines"}[n], func(b *testing.B) {
			s := newStore(b)
			var j bytes.Buffer
			prev := ""
			for i := 0; i < n; i++ {
				line := `{"time":"2026-01-01T00:00:00Z","actor":"a","action":"add","target":"x","before":null,"after":{},"prev":"` + prev + `"}`
				j.WriteString(line + "\n")
				prev = LineHash([]byte(line))
			}
			if err := os.WriteFile(s.JournalPath(), j.Bytes(), 0o644); err != nil {
				b.Fatal(err)
			}
			tg := target(b, "x.example")
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				bits := []string{"112", "128"}[i%2]
				if _, err := s.Add(context.Background(), "a", tg, map[string]string{"bits": bits}, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAddLargePolicy: one edit of a 10,000-entry policy (read,
// parse, write, fsync, rename, journal).
func BenchmarkAddLargePolicy(b *testing.B) {
	s := newStore(b)
	var p bytes.Buffer
	for i := 0; i < 10_000; i++ {
		p.WriteString("partner" + strings.Repeat("x", i%7) + "-" + strconv.Itoa(i) + ".example bits=128\n")
	}
	if err := os.WriteFile(s.Path, p.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	tg := target(b, "x.example")
	for i := 0; b.Loop(); i++ {
		bits := []string{"112", "128"}[i%2]
		if _, err := s.Add(context.Background(), "a", tg, map[string]string{"bits": bits}, ""); err != nil {
			b.Fatal(err)
		}
	}
}
