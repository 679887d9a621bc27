package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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
// be listed; and Open must clean up the rest.
func TestKill9(t *testing.T) {
	if os.Getenv("SPOOL_KILL9_CHILD") != "" {
		t.Skip("child")
	}
	for round := range 5 {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$")
		cmd.Env = append(os.Environ(), "SPOOL_KILL9_CHILD="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		acked := map[string]int{}
		killAt := 20 + round*37
		// Lines the child wrote before the kill landed are acks too, so
		// read on to EOF.
		for sc.Scan() {
			id, size, ok := strings.Cut(sc.Text(), " ")
			if !ok || len(id) != idLen {
				continue
			}
			n, _ := strconv.Atoi(size)
			acked[id] = n
			if len(acked) == killAt {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if len(acked) < killAt {
			t.Fatalf("child stopped after %d Puts", len(acked))
		}

		s := openSpool(t, dir)
		ids, err := s.List()
		if err != nil {
			t.Fatal(err)
		}
		for id, size := range acked {
			env, err := s.Envelope(id)
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
		// At most the Put in flight at the kill may be committed but not acked.
		if extra := len(ids) - len(acked); extra < 0 || extra > 1 {
			t.Errorf("round %d: %d listed, %d acknowledged", round, len(ids), len(acked))
		}
		if n := dirNames(t, s.tmpDir); len(n) != 0 {
			t.Errorf("tmp/ after recovery: %v", n)
		}
		q := dirNames(t, s.queueDir)
		if len(q) != 2*len(ids) {
			t.Errorf("round %d: queue/ holds %d files for %d messages", round, len(q), len(ids))
		}
		s.Close()
	}
}

func childBody(size int) string { return strings.Repeat("m", size) }

// TestKill9Child is the child of TestKill9: it Puts until killed.
func TestKill9Child(t *testing.T) {
	dir := os.Getenv("SPOOL_KILL9_CHILD")
	if dir == "" {
		t.Skip("only run as TestKill9's child")
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
