package policywatch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay/health"
)

// inForce is B6's bound, which smgctl tightens to one second.
const inForce = time.Second

// replace writes data the way `smgctl policy` and most editors do: a temp
// file renamed over the old one.
func replace(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls until the policy in force gives want for rcpt, or fails
// after B6's bound.
func waitFor(t *testing.T, w *Watcher, rcpt, want string) {
	t.Helper()
	deadline := time.Now().Add(inForce)
	for {
		got := w.Policy().Lookup(rcpt).Requirement().Target
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %s matches %q, want %q", inForce, rcpt, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func start(t *testing.T, path string) *Watcher {
	t.Helper()
	w, err := New(Config{Path: path, MissingOK: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func TestMissingFileIsEmptyThenCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	w := start(t, path)
	if w.Policy().Len() != 0 {
		t.Fatalf("missing file: %d entries", w.Policy().Len())
	}
	replace(t, path, "partner.example\n")
	waitFor(t, w, "a@partner.example", "partner.example")
}

func TestEditsTakeEffect(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("partner.example\n"), 0o644)
	w := start(t, path)
	waitFor(t, w, "a@partner.example", "partner.example")

	// Atomic rename, as smgctl policy does.
	replace(t, path, "other.example bits=256\n")
	waitFor(t, w, "a@partner.example", "")
	waitFor(t, w, "a@other.example", "other.example")

	// In-place rewrite, as some editors do.
	if err := os.WriteFile(path, []byte("*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, w, "a@anything.example", "*")

	// Removal fails closed: the policy in force stays, the failure is
	// counted (an empty policy would send every partner's mail with
	// opportunistic TLS).
	failures := w.Stats().Failures
	os.Remove(path)
	deadline := time.Now().Add(2 * time.Second)
	for w.Stats().Failures == failures && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := w.Stats(); st.Failures == failures || !strings.Contains(st.LastError, "no such file") {
		t.Fatalf("removal not refused: %+v", st)
	}
	waitFor(t, w, "a@anything.example", "*")
}

// A policy path the operator named must exist: a typo must not start a
// relay that enforces nothing. Only the default path may be missing.
func TestNamedPathMustExist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.conf")
	if _, err := New(Config{Path: path}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("New on a missing named path: %v", err)
	}
}

func TestBrokenFileKeepsPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("partner.example\n"), 0o644)
	w := start(t, path)
	before := w.Stats()

	replace(t, path, "partner.example\nbank.example bits=9000\n")
	deadline := time.Now().Add(inForce)
	for w.Stats().Failures == before.Failures {
		if time.Now().After(deadline) {
			t.Fatalf("broken file not noticed within %v", inForce)
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := w.Stats()
	if !strings.Contains(st.LastError, "policy.conf:2:") {
		t.Errorf("LastError = %q, want file:line", st.LastError)
	}
	if got := w.Policy().Lookup("x@partner.example").Requirement().Target; got != "partner.example" {
		t.Errorf("previous policy not in force: %q", got)
	}
	if st.Generation != before.Generation {
		t.Errorf("generation moved on a refused file")
	}

	replace(t, path, "bank.example bits=256\n")
	waitFor(t, w, "x@bank.example", "bank.example")
	if w.Stats().LastError != "" {
		t.Errorf("LastError kept after a good load")
	}
}

func TestReloadOnDemand(t *testing.T) {
	// No Run: only the explicit Reload (what SIGHUP calls) may change it.
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("a.example\n"), 0o644)
	w, err := New(Config{Path: path, MissingOK: true})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("b.example\n"), 0o644)
	if got := w.Policy().Lookup("b.example").Requirement().Target; got != "" {
		t.Fatalf("changed without a reload: %q", got)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := w.Policy().Lookup("b.example").Requirement().Target; got != "b.example" {
		t.Fatalf("after Reload: %q", got)
	}
	gen := w.Stats().Generation
	w.Reload()
	if w.Stats().Generation != gen {
		t.Errorf("an unchanged file counted as a new policy")
	}
	os.WriteFile(path, []byte("bad target!\n"), 0o644)
	if err := w.Reload(); err == nil {
		t.Fatal("a broken file was accepted")
	}
	if got := w.Policy().Lookup("b.example").Requirement().Target; got != "b.example" {
		t.Fatalf("broken file replaced the policy: %q", got)
	}
}

func TestInvalidAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("x.example bits=0\n"), 0o644)
	if _, err := New(Config{Path: path, MissingOK: true}); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("New = %v, want a parse error with the line", err)
	}
}

func TestDirectoryCreatedLater(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "policy.conf")
	w := start(t, path)
	os.Mkdir(dir, 0o755)
	replace(t, path, "late.example\n")
	// The polling fallback takes up to two poll periods here.
	deadline := time.Now().Add(2*poll + inForce)
	for w.Policy().Lookup("late.example").Requirement().Target != "late.example" {
		if time.Now().After(deadline) {
			t.Fatal("policy in a directory created after start never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkPolicy(b *testing.B) {
	path := filepath.Join(b.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("partner.example\n"), 0o644)
	w, _ := New(Config{Path: path, MissingOK: true})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w.Policy().Lookup("a@sales.partner.example")
		}
	})
}

// A path that is not a regular file (a FIFO, which blocked the old
// reload for ever; /dev/zero, which grew it to GBs) or a file over
// MaxSize is refused at once: the previous policy stays in force, the
// refusal shows on the health board, and Stats answers meanwhile.
func TestOnlyRegularFilesOfBoundedSize(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		make       func(t *testing.T, path string)
	}{
		{"fifo", "FIFO", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Skip("mkfifo:", err)
			}
		}},
		{"dev-zero", "character device", func(t *testing.T, path string) {
			if err := os.Symlink("/dev/zero", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"oversized", "larger than the 32 MiB", func(t *testing.T, path string) {
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			f.Truncate(MaxSize + 1) // sparse: costs no disk
			f.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.conf")
			os.WriteFile(path, []byte("partner.example\n"), 0o644)
			board := &health.Board{}
			w, err := New(Config{Path: path, Health: board})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { w.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			odd := filepath.Join(dir, "odd")
			tc.make(t, odd)
			if err := os.Rename(odd, path); err != nil {
				t.Fatal(err)
			}
			reloaded := make(chan error, 1)
			go func() { reloaded <- w.Reload() }()
			select {
			case err := <-reloaded:
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("Reload = %v, want %q", err, tc.want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("Reload blocked")
			}
			stats := make(chan Stats, 1)
			go func() { stats <- w.Stats() }()
			select {
			case st := <-stats:
				if !strings.Contains(st.LastError, tc.want) || st.Entries != 1 {
					t.Errorf("stats: %+v", st)
				}
			case <-time.After(time.Second):
				t.Fatal("Stats blocked")
			}
			if lvl, conds := board.Snapshot(); lvl != health.Degraded || len(conds) != 1 || conds[0].Part != HealthPart || !strings.Contains(conds[0].Reason, tc.want) {
				t.Errorf("health: %v %+v", lvl, conds)
			}
			waitFor(t, w, "a@partner.example", "partner.example")

			// A good file after it is in force as usual, and clears
			// the refusal.
			os.Remove(path)
			replace(t, path, "partner.example\nlater.example\n")
			waitFor(t, w, "a@later.example", "later.example")
			if lvl, _ := board.Snapshot(); lvl != health.OK || w.Stats().LastError != "" {
				t.Errorf("refusal not cleared: %v %+v", lvl, w.Stats())
			}
		})
	}
}

// A refused file marks the policy degraded on the health board; putting
// back the very content in force clears it, though no new policy is
// loaded (the old watcher skipped identical content before clearing the
// error, so a fixed file stayed "refused" for ever).
func TestRestoredFileClearsRefusal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	const good = "partner.example\nbank.example bits=256\n"
	os.WriteFile(path, []byte(good), 0o644)
	board := &health.Board{}
	w, err := New(Config{Path: path, Health: board})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	replace(t, path, "partner.example\nbank.example bits=9000\n")
	deadline := time.Now().Add(inForce)
	for board.Level(HealthPart) != health.Degraded {
		if time.Now().After(deadline) {
			t.Fatalf("refused file not on the health board: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, conds := board.Snapshot(); !strings.Contains(conds[0].Reason, "policy.conf:2:") {
		t.Errorf("reason %q does not say where", conds[0].Reason)
	}
	gen := w.Stats().Generation

	replace(t, path, good)
	deadline = time.Now().Add(inForce)
	for board.Level(HealthPart) != health.OK || w.Stats().LastError != "" {
		if time.Now().After(deadline) {
			t.Fatalf("restored file still refused: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w.Stats().Generation != gen {
		t.Errorf("identical content counted as a new policy")
	}
}

// A write in place that is never finished stays out of force; SIGHUP
// (Reload) does not read it either.
func TestReloadWaitsForTheWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("a.example\nb.example\n"), 0o644)
	w := start(t, path)
	time.Sleep(poll) // Run is watching
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a.exa")
	deadline := time.Now().Add(time.Second)
	for !w.Stats().Writing {
		if time.Now().After(deadline) {
			t.Fatal("write in place not noticed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Reload(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * poll)
	if n := w.Policy().Len(); n != 2 {
		t.Fatalf("%d entries in force while the file is being written", n)
	}
	f.WriteString("mple\nb.example\nc.example\n")
	f.Close()
	waitFor(t, w, "x@c.example", "c.example")
}

// A write in place that is not finished for a while shows on the health
// board, and its end clears it.
func TestStalledWriteOnHealth(t *testing.T) {
	writingReport = 300 * time.Millisecond
	t.Cleanup(func() { writingReport = 5 * time.Second })
	path := filepath.Join(t.TempDir(), "policy.conf")
	os.WriteFile(path, []byte("a.example\n"), 0o644)
	board := &health.Board{}
	w, err := New(Config{Path: path, Health: board})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("a.example\nb.ex")
	deadline := time.Now().Add(2 * time.Second)
	for board.Level(HealthPart) != health.Degraded {
		if time.Now().After(deadline) {
			t.Fatal("a stalled write is not on the health board")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, conds := board.Snapshot(); !strings.Contains(conds[0].Reason, "being written in place since") {
		t.Errorf("reason: %q", conds[0].Reason)
	}
	if w.Policy().Len() != 1 {
		t.Errorf("%d entries in force during the write", w.Policy().Len())
	}
	f.WriteString("ample\n")
	f.Close()
	waitFor(t, w, "x@b.example", "b.example")
	if board.Level(HealthPart) != health.OK {
		t.Error("the finished write did not clear the board")
	}
}

// An empty file is refused only as a change: a relay that started with
// an empty (or missing) policy reloads the same empty file without error.
func TestEmptyFileInForceReloads(t *testing.T) {
	dir := t.TempDir()
	for name, create := range map[string]bool{"empty": true, "missing": false} {
		path := filepath.Join(dir, name+".conf")
		if create {
			os.WriteFile(path, nil, 0o644)
		}
		w, err := New(Config{Path: path, MissingOK: true})
		if err != nil {
			t.Fatal(err)
		}
		if !create {
			os.WriteFile(path, nil, 0o644)
		}
		if err := w.Reload(); err != nil || w.Stats().LastError != "" {
			t.Errorf("%s: reloading the empty file in force: %v %+v", name, err, w.Stats())
		}
	}
}
