package audit

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/smgctl/smgctl/internal/testpeer"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	testpeer.RequireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		if testpeer.InCI() {
			t.Fatalf("mount tmpfs: %v (CI=true)", err)
		}
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestFailedWriteIsCutAndRecorded fills the log's filesystem so that a
// batch is written part-way: the write fails, the torn bytes are cut off
// at once (nothing for the next record to be glued to), and when space
// returns the next batch records the cut and the chain verifies.
func TestFailedWriteIsCutAndRecorded(t *testing.T) {
	dir := mountTmpfs(t, "256k")
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Write(rec(1)); err != nil {
		t.Fatal(err)
	}
	// Take all the space but a few KB: a batch of 40 records (~20 KB)
	// then fits only in part.
	filler := filepath.Join(dir, "filler")
	f, _ := os.Create(filler)
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	os.Truncate(filler, mustSize(t, filler)-8192)
	before := mustSize(t, path)
	batch := make([]Record, 40)
	for i := range batch {
		batch[i] = rec(100 + i)
	}
	err = l.Write(batch...)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write on a full disk = %v, want ENOSPC", err)
	}
	if got := mustSize(t, path); got != before {
		t.Fatalf("after the failed write the log is %d bytes, was %d: the torn batch stayed", got, before)
	}
	os.Remove(filler)
	if err := l.Write(batch...); err != nil {
		t.Fatalf("Write after space returned: %v", err)
	}
	lines := readLines(t, path)
	m, ok := ParseMark(lines[2])
	if !ok || Event(m.Event) != Repaired || m.CutBytes <= 0 {
		t.Fatalf("line 3 = %s, want the record of the cut", lines[2])
	}
	t.Logf("cut %d bytes", m.CutBytes)
	vf, _ := os.Open(path)
	defer vf.Close()
	if n, err := Verify(vf); err != nil || n != 2+1+40+1 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func mustSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
