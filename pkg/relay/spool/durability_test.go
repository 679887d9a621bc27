package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestNoSpaceOnTmpfs fills a real 256 KiB tmpfs: the kernel's ENOSPC must
// come out as ErrNoSpace, leave nothing behind, and free space must make
// the spool usable again.
func TestNoSpaceOnTmpfs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for a real ENOSPC")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); ENOSPC is covered by injected faults only", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	s := openSpool(t, dir)

	small := sampleEnvelope()
	if err := s.Put(small, strings.NewReader(strings.Repeat("x", 40<<10))); err != nil {
		t.Fatalf("a 40 KiB message on an empty 256 KiB spool: %v", err)
	}
	big := sampleEnvelope()
	err := s.Put(big, &errReader{n: 1 << 20, err: io.EOF})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Put of 1 MiB on 256 KiB: %v, want ErrNoSpace", err)
	}
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ after ENOSPC: %v", n)
	}
	if got := dirNames(t, s.queueDir); !slices.Equal(got, []string{small.ID + ".eml", small.ID + ".json"}) {
		t.Errorf("queue/ after ENOSPC: %v", got)
	}
	// The space the failed Put used is free again: another 40 KiB fits.
	if err := s.Put(sampleEnvelope(), strings.NewReader(strings.Repeat("y", 40<<10))); err != nil {
		t.Errorf("Put after ENOSPC: %v", err)
	}
}

// TestKill9 runs Puts in a child process and SIGKILLs it mid-stream. Every
// ID the child printed after Put returned (the moment the relay would say
// 250) must be in the spool with its body intact; nothing half-written may
// be listed; and Open must clean up the rest. In the journal round the
// child is a relay (OpenRelay) with 8 sessions at once, and also removes
// every third message it stored: a removal that returned must stay done.
func TestKill9(t *testing.T) {
	if os.Getenv("SPOOL_KILL9_CHILD") != "" {
		t.Skip("child")
	}
	for _, mode := range []string{"files", "journal"} {
		t.Run(mode, func(t *testing.T) {
			for round := range 5 {
				kill9Round(t, mode, round)
			}
		})
	}
}

func kill9Round(t *testing.T, mode string, round int) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$")
	cmd.Env = append(os.Environ(), "SPOOL_KILL9_CHILD="+dir, "SPOOL_KILL9_MODE="+mode)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	sc := bufio.NewScanner(stdout)
	puts := 0
	acked := map[string]int{}
	removed := map[string]bool{}
	removing := map[string]bool{} // acked, and the child goes on to remove it
	killAt := 20 + round*37
	if mode == "journal" {
		killAt *= 10
	}
	// Lines the child wrote before the kill landed are acks too, so
	// read on to EOF.
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "removed":
			removed[f[1]] = true
			delete(acked, f[1])
		case len(f) >= 2 && len(f[0]) == idLen:
			n, _ := strconv.Atoi(f[1])
			acked[f[0]] = n
			if len(f) == 3 {
				removing[f[0]] = true
			}
			if puts++; puts == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	}
	cmd.Wait()
	if puts < killAt {
		t.Fatalf("child stopped after %d Puts: %s", puts, stderr.String())
	}

	s := openSpool(t, dir)
	ids, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	inFlightRemovals := 0
	for id, size := range acked {
		env, err := s.Envelope(id)
		if errors.Is(err, fs.ErrNotExist) && removing[id] {
			inFlightRemovals++ // removed, but the kill came before it said so
			continue
		}
		if err != nil {
			t.Fatalf("round %d: acknowledged %s lost: %v", round, id, err)
		}
		rc, err := s.Body(id)
		if err != nil {
			t.Fatalf("round %d: body of acknowledged %s: %v", round, id, err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if len(b) != size || env.Size != int64(size) || string(b) != childBody(size) {
			t.Fatalf("round %d: %s body %d bytes (envelope %d), want %d", round, id, len(b), env.Size, size)
		}
	}
	for id := range removed {
		if slices.Contains(ids, id) {
			t.Errorf("round %d: %s is back after its removal returned", round, id)
		}
	}
	// At most the Puts in flight at the kill may be committed but not
	// acked (and removals in flight not yet done).
	inFlight := 1
	if mode == "journal" {
		inFlight = 2 * kill9Sessions
	}
	if inFlightRemovals > kill9Sessions {
		t.Errorf("round %d: %d acknowledged messages gone; only %d removals can have been in flight", round, inFlightRemovals, kill9Sessions)
	}
	if extra := len(ids) - (len(acked) - inFlightRemovals); extra < 0 || extra > inFlight {
		t.Errorf("round %d: %d listed, %d acknowledged", round, len(ids), len(acked))
	}
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ after recovery: %v", n)
	}
	q := dirNames(t, s.queueDir)
	if len(q) != 2*len(ids) {
		t.Errorf("round %d: queue/ holds %d files for %d messages", round, len(q), len(ids))
	}
	t.Logf("round %d: %d acknowledged, %d removed, %d recovered", round, len(acked), len(removed), len(ids))
	s.Close()
}

const kill9Sessions = 8

func childBody(size int) string { return strings.Repeat("m", size) }

// TestKill9Child is the child of TestKill9: it Puts until killed.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv("SPOOL_KILL9_CHILD")
	if dir == "" {
		t.Skip("only run as TestKill9's child")
	}
	if os.Getenv("SPOOL_KILL9_MODE") == "journal" {
		s, err := OpenRelay(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		for g := range kill9Sessions {
			go func() {
				for i := g; ; i += kill9Sessions {
					size := 1 + (i*7919)%(300<<10) // some beyond the journal's limit
					env := sampleEnvelope()
					if err := s.Put(env, strings.NewReader(childBody(size))); err != nil {
						panic(err)
					}
					if i%3 != 0 {
						fmt.Printf("%s %d\n", env.ID, size)
					} else {
						fmt.Printf("%s %d remove\n", env.ID, size)
						if err := s.Remove(env.ID); err != nil {
							panic(err)
						}
						fmt.Printf("removed %s\n", env.ID)
					}
				}
			}()
		}
		select {}
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		size := 1 + (i*7919)%(256<<10)
		env := sampleEnvelope()
		if err := s.Put(env, strings.NewReader(childBody(size))); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s %d\n", env.ID, size)
	}
}
