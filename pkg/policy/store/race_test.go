package store

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/smgctl/smgctl/pkg/policy"
)

// Environment of a child process started by TestConcurrentProcesses: it
// adds one target to one policy file and exits.
const (
	envChildPolicy = "SMGCTL_STORE_TEST_POLICY"
	envChildTarget = "SMGCTL_STORE_TEST_TARGET"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envChildPolicy); path != "" {
		os.Exit(childAdd(path, os.Getenv(envChildTarget)))
	}
	os.Exit(m.Run())
}

func childAdd(path, tg string) int {
	t, err := policy.ParseTarget(tg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s := &Store{Path: path}
	if _, err := s.Add(context.Background(), "child-"+tg, t, map[string]string{"bits": "128"}, ""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// checkRace verifies the outcome of n concurrent adds of t0..t(n-1).
func checkRace(t *testing.T, s *Store, n int) {
	t.Helper()
	f, err := policy.ReadFile(s.Path)
	if err != nil {
		t.Fatalf("file does not parse after racing edits: %v", err)
	}
	if got := len(f.Entries()); got != n {
		t.Errorf("%d entries, want %d", got, n)
	}
	for i := 0; i < n; i++ {
		tg, _ := policy.ParseTarget(fmt.Sprintf("t%d.example", i))
		if e := f.Get(tg); e == nil || e.Options.Bits != 128 {
			t.Errorf("t%d.example missing or wrong: %+v", i, e)
		}
	}
	fj, err := os.Open(s.JournalPath())
	if err != nil {
		t.Fatal(err)
	}
	defer fj.Close()
	lines, err := VerifyChain(fj)
	if err != nil || lines != 2*n { // each change and its checkpoint
		t.Errorf("journal: %d chained lines, %v; want %d intact", lines, err, 2*n)
	}
}

// TestConcurrentProcesses: twenty processes add distinct targets to one
// file at once; every edit lands, the file parses, and the journal holds
// twenty lines with an intact hash chain (SPEC §2 "Safe").
func TestConcurrentProcesses(t *testing.T) {
	const n = 20
	s := &Store{Path: filepath.Join(t.TempDir(), "policy.conf")}
	cmds := make([]*exec.Cmd, n)
	for i := range cmds {
		c := exec.Command(os.Args[0], "-test.run=^$")
		c.Env = append(os.Environ(), envChildPolicy+"="+s.Path, fmt.Sprintf("%s=t%d.example", envChildTarget, i))
		c.Stderr = os.Stderr
		cmds[i] = c
	}
	// Start them all before waiting for any, so they overlap.
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("child %d: %v", i, err)
		}
	}
	checkRace(t, s, n)
}

// TestConcurrentGoroutines: the same within one process, where the race
// detector can watch; each goroutine has its own Store, as separate
// commands would.
func TestConcurrentGoroutines(t *testing.T) {
	const n = 20
	path := filepath.Join(t.TempDir(), "policy.conf")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &Store{Path: path}
			tg, _ := policy.ParseTarget(fmt.Sprintf("t%d.example", i))
			_, err := s.Add(context.Background(), "g", tg, map[string]string{"bits": "128"}, "")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	checkRace(t, &Store{Path: path}, n)
}
