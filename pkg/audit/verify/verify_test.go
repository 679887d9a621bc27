package verify

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/policy/store"
)

func rec(i int) audit.Record {
	return audit.Record{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Event: audit.Delivered,
		QueueID: fmt.Sprintf("Q%03d", i), Sender: "a@corp.example", Recipient: "b@partner.example",
		PolicyTarget: "partner.example", PolicyLine: 3, MX: "mx.partner.example", IP: "127.0.0.1",
		TLS: true, TLSVersion: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", Bits: 128,
		Reply: "250 2.0.0 Ok", Attempt: 1,
	}
}

// writeLog writes n records, one batch each, through the relay's writer.
func writeLog(t testing.TB, path string, opt audit.Options, n int) {
	t.Helper()
	l, err := audit.OpenWith(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if err := l.Write(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o640); err != nil {
		t.Fatal(err)
	}
}

func without(lines [][]byte, i int) [][]byte {
	return append(append([][]byte{}, lines[:i]...), lines[i+1:]...)
}

func with(lines [][]byte, i int, l []byte) [][]byte {
	out := append([][]byte{}, lines[:i]...)
	out = append(out, l)
	return append(out, lines[i:]...)
}

func replaced(lines [][]byte, i int, l []byte) [][]byte {
	out := append([][]byte{}, lines...)
	out[i] = l
	return out
}

func hashOf(l []byte) string { return hashLine(bytes.TrimSuffix(l, []byte("\n"))) }

// TestAuditLogTampering: each record is followed by its batch's
// checkpoint, so record k is line 2k-1 and its checkpoint line 2k.
func TestAuditLogTampering(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		name   string
		tamper func(lines [][]byte) [][]byte
		noSeal bool   // the seal is deleted too
		file   string // "seal": the break names the seal; "": the log
		line   int64
		msg    string
	}{
		{"clean", func(l [][]byte) [][]byte { return l }, false, "", 0, ""},
		{"edited field", func(l [][]byte) [][]byte {
			return replaced(l, 8, bytes.Replace(l[8], []byte(`"Q005"`), []byte(`"Q00X"`), 1))
		}, false, "", 9, "altered"},
		{"edited prev", func(l [][]byte) [][]byte {
			return replaced(l, 8, bytes.Replace(l[8], []byte(`"prev":"`), []byte(`"prev":"0`), 1))
		}, false, "", 9, "altered"},
		{"edited first line", func(l [][]byte) [][]byte {
			return replaced(l, 0, bytes.Replace(l[0], []byte(`"Q001"`), []byte(`"Q00X"`), 1))
		}, false, "", 1, "altered"},
		{"edited last record", func(l [][]byte) [][]byte {
			return replaced(l, 18, bytes.Replace(l[18], []byte(`"Q010"`), []byte(`"Q01X"`), 1))
		}, false, "", 19, "altered"},
		{"edited last line", func(l [][]byte) [][]byte {
			return replaced(l, 19, bytes.Replace(l[19], []byte(`"time":"2`), []byte(`"time":"1`), 1))
		}, false, "", 20, "altered after it was sealed"},
		{"deleted line", func(l [][]byte) [][]byte { return without(l, 8) }, false, "", 8, "lines are missing after it"},
		{"deleted first line", func(l [][]byte) [][]byte { return without(l, 0) }, false, "", 1, "does not start the chain"},
		{"inserted forged line", func(l [][]byte) [][]byte { return with(l, 9, chained(t, l[8])) }, false, "", 10, "inserted"},
		{"inserted stray line", func(l [][]byte) [][]byte { return with(l, 9, l[4]) }, false, "", 10, "inserted"},
		{"inserted first line", func(l [][]byte) [][]byte { return with(l, 0, chainedTo(t, "")) }, false, "", 1, "inserted"},
		{"swapped lines", func(l [][]byte) [][]byte {
			out := append([][]byte{}, l...)
			out[3], out[4] = out[4], out[3]
			return out
		}, false, "", 4, ""},
		{"truncated mid-line", func(l [][]byte) [][]byte {
			return replaced(l, 19, l[19][:len(l[19])/2])
		}, false, "", 20, "incomplete line"},
		{"truncated by whole lines", func(l [][]byte) [][]byte { return l[:14] }, false, "", 15, "missing: the seal records 20 lines"},
		{"garbage line", func(l [][]byte) [][]byte { return replaced(l, 2, []byte("{oops\n")) }, false, "", 3, "not a JSON record"},
		// Issue 10: these passed before checkpoints.
		{"forged last line with a correct prev", func(l [][]byte) [][]byte { return append(l, chained(t, l[19])) }, false, "", 21, "1 lines after the last checkpoint"},
		{"seal deleted", func(l [][]byte) [][]byte { return l }, true, "seal", 0, "missing: the log has checkpoints"},
		{"seal deleted and 5 lines cut", func(l [][]byte) [][]byte { return l[:15] }, true, "", 15, "1 lines after the last checkpoint"},
		{"seal deleted and cut at a checkpoint", func(l [][]byte) [][]byte { return l[:14] }, true, "seal", 0, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			writeLog(t, path, audit.Options{}, n)
			writeLines(t, path, tc.tamper(fileLines(t, path)))
			if tc.noSeal {
				os.Remove(audit.SealPath(path))
			}
			rep, err := Log(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			if tc.line == 0 && tc.file == "" {
				if !rep.OK() || rep.Lines != 2*n || rep.Count != 2*n || !rep.Sealed || rep.MidChain || rep.Legacy {
					t.Fatalf("clean log: %+v %v", rep, rep.Break)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("tampering not detected: %+v", rep)
			}
			file := path
			if tc.file == "seal" {
				file = audit.SealPath(path)
			}
			if rep.Break.Line != tc.line || rep.Break.File != file || !strings.Contains(rep.Break.Msg, tc.msg) {
				t.Errorf("break = %v, want %s:%d %q", rep.Break, file, tc.line, tc.msg)
			}
		})
	}
}

// TestAnchor: a head kept elsewhere catches what the files alone cannot:
// a log cut back to a checkpoint and given a new seal, and a chain
// rewritten from the anchored line on.
func TestAnchor(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	writeLog(t, path, audit.Options{}, 5)
	rep, err := Log(context.Background(), path)
	if err != nil || !rep.OK() || rep.Head() == "" {
		t.Fatalf("%+v %v", rep, err)
	}
	anchor, err := ParseAnchor(rep.Head())
	if err != nil || anchor.Count != 10 {
		t.Fatalf("head %q: %+v %v", rep.Head(), anchor, err)
	}
	writeLog(t, path, audit.Options{}, 3) // the relay writes on
	opt := Options{Anchor: &anchor}
	if rep, err := LogWith(context.Background(), path, opt); err != nil || !rep.OK() || !rep.Anchored || rep.Count != 16 {
		t.Fatalf("anchor in a grown log: %+v %v %v", rep, rep.Break, err)
	}

	t.Run("cut to a checkpoint, new seal", func(t *testing.T) {
		backup := snapshot(t, dir)
		defer restore(t, dir, backup)
		writeLines(t, path, fileLines(t, path)[:8])
		os.Remove(audit.SealPath(path))
		writeLog(t, path, audit.Options{}, 0) // a relay start seals what is there
		if rep, _ := Log(context.Background(), path); !rep.OK() {
			t.Fatalf("without the anchor this cannot show: %v", rep.Break)
		}
		rep, _ := LogWith(context.Background(), path, opt)
		if rep.OK() || !strings.Contains(rep.Break.Msg, "lines were cut") {
			t.Fatalf("break = %v, want the cut found", rep.Break)
		}
	})
	t.Run("rewritten", func(t *testing.T) {
		backup := snapshot(t, dir)
		defer restore(t, dir, backup)
		for _, f := range []string{path, audit.SealPath(path)} {
			os.Remove(f)
		}
		l, _ := audit.Open(path, nil)
		for i := range 8 {
			r := rec(i)
			r.Recipient = "someone-else@partner.example"
			l.Write(r)
		}
		l.Close()
		rep, _ := LogWith(context.Background(), path, opt)
		if rep.OK() || rep.Break.Line != 10 || !strings.Contains(rep.Break.Msg, "does not match the anchor") {
			t.Fatalf("break = %v, want line 10 against the anchor", rep.Break)
		}
	})
	if _, err := ParseAnchor("10:xyz"); err == nil {
		t.Error("a malformed anchor was accepted")
	}
}

// TestLegacyLog: a log written before checkpoints still verifies, with a
// note; the relay's first start on it adds a checkpoint over all of it.
func TestLegacyLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	prev := ""
	var lines [][]byte
	for i := range 3 {
		l := chainedTo(t, prev)
		l = bytes.Replace(l, []byte(`"Q001"`), []byte(fmt.Sprintf(`"L%03d"`, i)), 1)
		lines = append(lines, l)
		prev = hashOf(l)
	}
	writeLines(t, path, lines)
	rep, err := Log(context.Background(), path)
	if err != nil || !rep.OK() || !rep.Legacy || len(rep.Notes) == 0 {
		t.Fatalf("legacy log: %+v %v %v", rep, rep.Break, err)
	}
	writeLog(t, path, audit.Options{}, 1)
	rep, err = Log(context.Background(), path)
	if err != nil || !rep.OK() || rep.Legacy || rep.Count != 6 {
		t.Fatalf("after the relay's start: %+v %v %v", rep, rep.Break, err)
	}
}

// chained returns a forged record line that chains onto after.
func chained(t *testing.T, after []byte) []byte { return chainedTo(t, hashOf(after)) }

func chainedTo(t *testing.T, prev string) []byte {
	t.Helper()
	// Write one record into a scratch log and rewrite its prev: the same
	// encoding the relay uses.
	path := filepath.Join(t.TempDir(), "scratch.log")
	writeLog(t, path, audit.Options{}, 1)
	line := fileLines(t, path)[0]
	return bytes.Replace(line, []byte(`"prev":""`), []byte(`"prev":"`+prev+`"`), 1)
}

func TestRotationKeepsChain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opt := audit.Options{MaxSize: 1500, Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	writeLog(t, path, opt, 30)
	files, err := audit.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 4 {
		t.Fatalf("files = %v, want several rotations", files)
	}
	var total int
	for i, f := range files {
		st, _ := os.Stat(f)
		if st.Size() > 1500 {
			t.Errorf("%s is %d bytes, over the 1500 limit", f, st.Size())
		}
		lines := fileLines(t, f)
		total += len(lines)
		if i > 0 {
			prevLines := fileLines(t, files[i-1])
			if !bytes.Contains(lines[0], []byte(`"prev":"`+hashOf(prevLines[len(prevLines)-1])+`"`)) {
				t.Errorf("%s does not chain to the end of %s", f, files[i-1])
			}
		}
	}
	if total != 60 { // each record and its checkpoint
		t.Errorf("%d lines in all files, want 60", total)
	}
	rep, err := Log(context.Background(), path)
	if err != nil || !rep.OK() || rep.Lines != 60 || len(rep.Files) != len(files) || rep.MidChain {
		t.Fatalf("rotated log: %+v, %v, %v", rep, rep.Break, err)
	}

	// Reopening continues the chain and the rotation.
	writeLog(t, path, opt, 5)
	if rep, _ := Log(context.Background(), path); !rep.OK() || rep.Lines != 70 {
		t.Fatalf("after reopen: %+v %v", rep, rep.Break)
	}

	t.Run("tampering across files", func(t *testing.T) {
		files, _ := audit.Files(path)
		second := files[1]
		for _, tc := range []struct {
			name   string
			tamper func()
			file   string
			line   int64
			msg    string
		}{
			{"last line of a rotated file deleted", func() {
				l := fileLines(t, second)
				writeLines(t, second, l[:len(l)-1])
			}, second, int64(len(fileLines(t, second)) - 1), "lines are missing after it"},
			{"a rotated file deleted", func() { os.Remove(second) }, files[0], int64(len(fileLines(t, files[0]))), "lines are missing after it"},
			{"live file deleted", func() { os.Remove(path) }, path, 0, "missing"},
			{"live file emptied", func() { os.WriteFile(path, nil, 0o640) }, path, 1, "missing: the seal records"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				backup := snapshot(t, dir)
				defer restore(t, dir, backup)
				tc.tamper()
				rep, err := Log(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				if rep.OK() || rep.Break.File != tc.file || rep.Break.Line != tc.line || !strings.Contains(rep.Break.Msg, tc.msg) {
					t.Errorf("break = %v, want %s:%d %q", rep.Break, tc.file, tc.line, tc.msg)
				}
			})
		}
	})

	t.Run("oldest files removed by retention", func(t *testing.T) {
		backup := snapshot(t, dir)
		defer restore(t, dir, backup)
		files, _ := audit.Files(path)
		os.Remove(files[0])
		os.Remove(files[1])
		rep, err := Log(context.Background(), path)
		if err != nil || !rep.OK() || !rep.MidChain {
			t.Fatalf("after retention: %+v %v %v", rep, rep.Break, err)
		}
	})

	t.Run("a rotated file alone", func(t *testing.T) {
		files, _ := audit.Files(path)
		rep, err := Path(context.Background(), files[2])
		if err != nil || !rep.OK() || !rep.MidChain || len(rep.Files) != 1 {
			t.Fatalf("%+v %v %v", rep, rep.Break, err)
		}
	})
}

func TestRotationByAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	opt := audit.Options{MaxAge: time.Hour, Now: func() time.Time { return clock }}
	l, err := audit.OpenWith(path, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		r := rec(i)
		r.Time = clock
		if err := l.Write(r); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(25 * time.Minute)
	}
	l.Close()
	files, _ := audit.Files(path)
	// Records at 0, 25, 50 min | 75, 100, 125 | 150, 175, 200 | 225: a
	// new file before the first record written an hour after the file's
	// first; the rotated file is named by the time it was rotated.
	if len(files) != 4 {
		t.Fatalf("files = %v", files)
	}
	if want := path + ".20260102T041905.000Z"; files[0] != want {
		t.Errorf("first rotated name %s, want %s", files[0], want)
	}
	if rep, _ := Log(context.Background(), path); !rep.OK() || rep.Lines != 20 {
		t.Fatalf("%+v %v", rep, rep.Break)
	}
}

// TestConcurrentWritersWithRotation: the chain holds across rotations
// while many goroutines write batches, as the relay's deliveries do.
func TestConcurrentWritersWithRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.OpenWith(path, audit.Options{MaxSize: 4096}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 40 {
				if err := l.Write(rec(g*100+i), rec(g*100+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	files, _ := audit.Files(path)
	rep, err := Log(context.Background(), path)
	if err != nil || !rep.OK() || rep.Lines != 720 || len(files) < 10 {
		t.Fatalf("%d files: %+v %v %v", len(files), rep, rep.Break, err)
	}
}

// TestSealMismatchKeptAsEvidence: lines cut from the end while the relay
// was down, then a restart. The relay keeps running and keeps the old
// seal; verify still fails.
func TestSealMismatchKeptAsEvidence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	writeLog(t, path, audit.Options{}, 6)
	writeLines(t, path, fileLines(t, path)[:4]) // two records, two checkpoints
	writeLog(t, path, audit.Options{}, 2)       // the relay restarts and writes on
	kept, _ := filepath.Glob(audit.MismatchPrefix(path) + "*")
	if len(kept) != 1 {
		t.Fatalf("kept seals: %v", kept)
	}
	rep, err := Log(context.Background(), path)
	if err != nil || rep.OK() || rep.Break.File != kept[0] || !strings.Contains(rep.Break.Msg, `"lines":12`) {
		t.Fatalf("%+v %v %v", rep, rep.Break, err)
	}
	// The chain itself is intact from the writer's view: only the
	// evidence fails it.
	os.Remove(kept[0])
	if rep, _ := Log(context.Background(), path); !rep.OK() || rep.Lines != 8 {
		t.Fatalf("%+v %v", rep, rep.Break)
	}
}

// TestInterruptedRotation: a crash after the rename but before the new
// seal leaves a seal describing the rotated file; that is not tampering.
func TestInterruptedRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	writeLog(t, path, audit.Options{}, 3)
	if err := os.Rename(path, path+".20260102T030405.000Z"); err != nil {
		t.Fatal(err)
	}
	writeLog(t, path, audit.Options{}, 2)
	if kept, _ := filepath.Glob(audit.MismatchPrefix(path) + "*"); len(kept) != 0 {
		t.Fatalf("an interrupted rotation was taken for tampering: %v", kept)
	}
	if rep, _ := Log(context.Background(), path); !rep.OK() || rep.Lines != 10 {
		t.Fatalf("%+v %v", rep, rep.Break)
	}
}

func TestJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	s := &store.Store{Path: path}
	for _, d := range []string{"a.example", "b.example", "c.example", "d.example"} {
		tg, err := policy.ParseTarget(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Add(context.Background(), "tester", tg, nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	j := s.JournalPath()
	if Detect(j) != Journal {
		t.Fatal("journal not detected")
	}
	// Each change is a record and its checkpoint: 8 lines.
	rep, err := Path(context.Background(), j)
	if err != nil || !rep.OK() || rep.Lines != 8 || rep.Count != 8 || rep.Kind != Journal || rep.Legacy {
		t.Fatalf("%+v %v %v", rep, rep.Break, err)
	}
	anchor, _ := ParseAnchor(rep.Head())
	lines := fileLines(t, j)
	for _, tc := range []struct {
		name   string
		tamper []byte
		anchor bool
		line   int64
		msg    string
	}{
		{"edited record", bytes.Join(replaced(lines, 2, bytes.Replace(lines[2], []byte(`"tester"`), []byte(`"nobody"`), 1)), nil), false, 3, "altered"},
		{"deleted record", bytes.Join(without(lines, 2), nil), false, 2, "missing"},
		// Issue 10: these passed before checkpoints.
		{"last change edited", bytes.Join(replaced(lines, 6, bytes.Replace(lines[6], []byte(`"tester"`), []byte(`"nobody"`), 1)), nil), false, 7, "altered"},
		{"last line cut", bytes.Join(lines[:7], nil), false, 7, "1 lines after the last checkpoint"},
		{"emptied", nil, false, 1, "the journal is empty"},
		{"last change cut, against an anchor", bytes.Join(lines[:6], nil), true, 6, "lines were cut"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(j, tc.tamper, 0o644); err != nil {
				t.Fatal(err)
			}
			var opt Options
			if tc.anchor {
				opt.Anchor = &anchor
			}
			rep, err := PathWith(context.Background(), j, opt)
			if err != nil || rep.OK() || rep.Break.Line != tc.line || !strings.Contains(rep.Break.Msg, tc.msg) {
				t.Fatalf("break = %v (%v), want line %d %q", rep.Break, err, tc.line, tc.msg)
			}
		})
	}
}

// TestLegacyJournal: a journal from before checkpoints verifies with a
// note, and its next change covers it with a first checkpoint.
func TestLegacyJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	j := path + ".journal"
	var b []byte
	prev := ""
	for _, d := range []string{"a.example", "b.example"} {
		line := fmt.Sprintf(`{"time":"2026-01-01T00:00:00Z","actor":"old","action":"add","target":%q,"before":null,"after":{},"prev":%q}`, d, prev)
		b = append(b, line+"\n"...)
		prev = hashOf([]byte(line))
	}
	os.WriteFile(j, b, 0o644)
	rep, err := Path(context.Background(), j)
	if err != nil || !rep.OK() || !rep.Legacy {
		t.Fatalf("legacy journal: %+v %v %v", rep, rep.Break, err)
	}
	s := &store.Store{Path: path}
	tg, _ := policy.ParseTarget("c.example")
	if _, err := s.Add(context.Background(), "tester", tg, nil, ""); err != nil {
		t.Fatal(err)
	}
	rep, err = Path(context.Background(), j)
	if err != nil || !rep.OK() || rep.Legacy || rep.Count != 4 || len(rep.Notes) != 1 {
		t.Fatalf("after a change: %+v %v %v", rep, rep.Break, err)
	}
}

func TestNothingToVerify(t *testing.T) {
	if _, err := Log(context.Background(), filepath.Join(t.TempDir(), "none.log")); err == nil {
		t.Fatal("a missing log verified")
	}
}

type files map[string][]byte

func snapshot(t *testing.T, dir string) files {
	out := files{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func restore(t *testing.T, dir string, fs files) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		os.Remove(filepath.Join(dir, e.Name()))
	}
	for name, b := range fs {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzLog: whatever the bytes, verify answers without panicking, and a
// chain it accepts is one pkg/audit accepts too.
func FuzzLog(f *testing.F) {
	f.Add([]byte(`{"prev":""}` + "\n"))
	f.Add([]byte("{}\n\n{"))
	f.Add([]byte(`{"prev":""}` + "\n" + `{"prev":"x"}` + "\n" + `{"prev":""}` + "\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "audit.log")
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		rep, err := Log(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			if n, err := audit.Verify(bytes.NewReader(data)); err != nil || int64(n) != rep.Lines {
				t.Fatalf("verify accepted what audit.Verify rejects: %d %v", n, err)
			}
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	path := filepath.Join(b.TempDir(), "audit.log")
	l, err := audit.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]audit.Record, 1000)
	for i := range recs {
		recs[i] = rec(i)
	}
	for range 10 {
		l.Write(recs...)
	}
	l.Close()
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	for b.Loop() {
		if rep, err := Log(context.Background(), path); err != nil || !rep.OK() {
			b.Fatal(rep.Break, err)
		}
	}
}

// FuzzParseAnchor: never panics, and what it takes prints back the same.
func FuzzParseAnchor(f *testing.F) {
	f.Add("12:" + strings.Repeat("ab", 32))
	f.Add("0:x")
	f.Add(" 7:" + strings.Repeat("AB", 32) + "\n")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAnchor(s)
		if err != nil {
			return
		}
		if b, err := ParseAnchor(a.String()); err != nil || b != a || a.Count < 1 {
			t.Fatalf("%q -> %v -> %v %v", s, a, b, err)
		}
	})
}
