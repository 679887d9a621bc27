package policywatch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const (
	oldPolicy = "a.example\nb.example bits=256\nc.example verify=cert\nd.example\n"
	newPolicy = "a.example\nb.example bits=256\nc.example verify=cert\nd.example\ne.example min-tls=1.3\n"
)

// loads records every policy the watcher puts in force.
type loads struct {
	mu   sync.Mutex
	sums [][32]byte
	at   []time.Time
}

func (l *loads) add(ld Load) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sums = append(l.sums, ld.Sum)
	l.at = append(l.at, time.Now())
}

func (l *loads) snapshot() ([][32]byte, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][32]byte(nil), l.sums...), append([]time.Time(nil), l.at...)
}

// startRecorded starts a watcher on a file holding oldPolicy and records
// its loads.
func startRecorded(t *testing.T) (string, *Watcher, *loads) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.conf")
	if err := os.WriteFile(path, []byte(oldPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := &loads{}
	w, err := New(Config{Path: path, Loaded: rec.add})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(2 * poll) // the first polls have seen the file
	return path, w, rec
}

// A file rewritten in place, at several speeds and chunkings, is never
// the policy in force while it is being written: every policy put in
// force is the whole old file or the whole new one, and the new one is
// in force within a second of the writer closing the file.
func TestInPlaceWriteNeverHalfLoaded(t *testing.T) { testInPlace(t, false) }

// Without inotify the watcher polls: a file is read once two polls in a
// row found it unchanged. That covers every write that does not pause
// for longer than a poll with the file open (a file left open half
// written is the one case only IN_CLOSE_WRITE can tell).
func TestInPlaceWritePollingOnly(t *testing.T) {
	useInotify = false
	t.Cleanup(func() { useInotify = true })
	testInPlace(t, true)
}

func testInPlace(t *testing.T, polling bool) {
	type writer func(t *testing.T, path, data string)
	// chunked truncates, waits first, then writes data in chunks of n
	// bytes with pause between them, and waits hold before closing.
	chunked := func(first time.Duration, n int, pause, hold time.Duration) writer {
		return func(t *testing.T, path, data string) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(first)
			for i := 0; i < len(data); i += n {
				if _, err := f.WriteString(data[i:min(i+n, len(data))]); err != nil {
					t.Fatal(err)
				}
				if i+n < len(data) {
					time.Sleep(pause)
				}
			}
			time.Sleep(hold)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		write   writer
		inotify bool // only inotify can tell this one
	}{
		// `cat policy.orig > policy.conf` from a slow process.
		{"truncate, 30ms, write", chunked(30*time.Millisecond, 1<<20, 0, 0), false},
		{"truncate, write at once", chunked(0, 1<<20, 0, 0), false},
		{"8-byte chunks every 20ms", chunked(0, 8, 20*time.Millisecond, 0), false},
		{"line by line every 150ms", chunked(100*time.Millisecond, 20, 150*time.Millisecond, 0), false},
		// Longer than two polls: stable on disk, but not closed.
		{"half written, left open 1.5s", chunked(0, len(oldPolicy)/2, 1500*time.Millisecond, 0), true},
		{"written, left open 1.2s before close", chunked(0, 1<<20, 0, 1200*time.Millisecond), false},
		// A script: `: > f; sleep; cat new >> f` — a close after the
		// truncate, then appends from another open.
		{"truncate-close, 100ms, append", func(t *testing.T, path, data string) {
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(data); i += 16 {
				f.WriteString(data[i:min(i+16, len(data))])
				time.Sleep(30 * time.Millisecond)
			}
			f.Close()
		}, false},
	} {
		if polling && tc.inotify {
			continue
		}
		for _, data := range []string{oldPolicy, newPolicy} {
			name := tc.name + ", same content"
			if data == newPolicy {
				name = tc.name + ", new content"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel() // they mostly sleep
				path, w, rec := startRecorded(t)
				tc.write(t, path, data)
				closed := time.Now()
				want := sha256.Sum256([]byte(data))
				for w.Stats().SHA256 != hexSum(want) && time.Since(closed) < inForce {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(3 * poll) // anything late would show now
				sums, at := rec.snapshot()
				oldSum := sha256.Sum256([]byte(oldPolicy))
				for i, s := range sums {
					if s != oldSum && s != want {
						t.Errorf("load %d put in force a file that is neither the old nor the new one", i)
					}
					if i > 0 && s == want && at[i].Sub(closed) > inForce {
						t.Errorf("new policy in force %v after the writer closed the file", at[i].Sub(closed))
					}
				}
				if got := w.Stats(); got.SHA256 != hexSum(want) || got.LastError != "" || got.Writing {
					t.Errorf("in force after the write: %+v", got)
				}
				if n := w.Policy().Len(); n < 4 {
					t.Errorf("%d entries in force", n)
				}
			})
		}
	}
}

func hexSum(s [32]byte) string { return hex.EncodeToString(s[:]) }
