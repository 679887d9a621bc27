package audit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRotatedNamesStayInChainOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	clock := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	steps := []time.Duration{0, time.Hour, -3 * time.Hour, 0, time.Millisecond}
	i := 0
	l, err := OpenWith(path, Options{MaxSize: 1, Now: func() time.Time { return clock }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range steps {
		clock = clock.Add(d) // the clock steps back once
		if err := l.Write(rec(i)); err != nil {
			t.Fatal(err)
		}
		i++
	}
	l.Close()
	rot, err := Rotated(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"audit.log.20260304T060607.000Z",
		"audit.log.20260304T060607.001Z", // clock went back: just after the newest
		"audit.log.20260304T060607.002Z",
		"audit.log.20260304T060607.003Z",
	}
	if len(rot) != len(want) {
		t.Fatalf("rotated = %v", rot)
	}
	for i, r := range rot {
		if filepath.Base(r) != want[i] {
			t.Errorf("rotated[%d] = %s, want %s", i, filepath.Base(r), want[i])
		}
		if !IsRotated(r) {
			t.Errorf("IsRotated(%s) = false", r)
		}
	}
	for _, p := range []string{path, path + ".seal", path + ".1", path + ".20260304T060607Z", "x.20260304T060607.000Z.gz"} {
		if IsRotated(p) {
			t.Errorf("IsRotated(%s) = true", p)
		}
	}
}

func TestSealFollowsEveryBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, ok, err := ReadSeal(path)
	if err != nil || !ok || s.Lines != 0 || s.Last != "" || s.FirstPrev != "" || s.File != "audit.log" {
		t.Fatalf("seal of a new log: %+v %v %v", s, ok, err)
	}
	l.Write(rec(1), rec(2))
	l.Write(rec(3))
	lines := readLines(t, path)
	s, _, _ = ReadSeal(path)
	if s.Lines != 5 || s.Last != hashLine(lines[4]) { // two batches, each with its checkpoint
		t.Errorf("seal %+v, want 5 lines ending %s", s, hashLine(lines[4]))
	}
	l.Close()
	if _, err := os.Stat(SealPath(path) + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary seal left behind: %v", err)
	}
}

// TestOpenAfterRotationChainsToRotatedFile: a live file that is empty
// after a rotation continues the chain from the rotated file, not from "".
func TestOpenAfterRotationChainsToRotatedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := OpenWith(path, Options{MaxSize: 1}, nil)
	l.Write(rec(1))
	l.Write(rec(2)) // rotates; rec(2) is the live file's first line
	l.Close()
	// As if the crash came right after the rename: no live file. (The
	// seal then names a line that is gone, which Open keeps as evidence.)
	os.Remove(path)
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(rec(3))
	l.Close()
	rot, _ := Rotated(path)
	old := readLines(t, rot[len(rot)-1])
	var r Record
	if err := json.Unmarshal(readLines(t, path)[0], &r); err != nil || r.Prev != hashLine(old[len(old)-1]) {
		t.Errorf("first line after reopen chains to %q, want the rotated file's end", r.Prev)
	}
}

// FuzzSealOnOpen: whatever the seal file holds, the relay's log opens (a
// seal that does not match is kept as evidence, never fatal) and the next
// seal describes the file.
func FuzzSealOnOpen(f *testing.F) {
	f.Add([]byte(`{"file":"audit.log","lines":1,"last":"x","first_prev":"","time":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"lines":-1}`))
	f.Add([]byte("   \n"))
	f.Add([]byte(`{"lines":0,"first_prev":"abc"}`))
	f.Fuzz(func(t *testing.T, seal []byte) {
		path := filepath.Join(t.TempDir(), "audit.log")
		l, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Write(rec(1))
		l.Close()
		if err := os.WriteFile(SealPath(path), seal, 0o640); err != nil {
			t.Fatal(err)
		}
		l, err = Open(path, nil)
		if err != nil {
			t.Fatalf("Open with seal %q: %v", seal, err)
		}
		l.Close()
		s, ok, err := ReadSeal(path)
		lines := readLines(t, path)
		if err != nil || !ok || s.Lines != int64(len(lines)) || s.Last != hashLine(lines[len(lines)-1]) {
			t.Fatalf("seal after reopen: %+v %v %v", s, ok, err)
		}
	})
}
