package safeio

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.conf")
	link := filepath.Join(dir, "link.conf")
	if err := os.WriteFile(real, []byte("old\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink replaced: %v %v", fi, err)
	}
	if got := readFile(t, real); got != "new\n" {
		t.Errorf("target has %q", got)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", fi.Mode().Perm())
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(sub, []byte("x"), 0o644); err == nil {
		t.Error("replaced a directory")
	}
	if err := WriteFile(filepath.Join(dir, "fresh.conf"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "fresh.conf")); fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}
	assertNoTemp(t, dir)
}

// Prepare leaves the old file in place until Commit; Abort discards the
// new version without a trace.
func TestPrepareAbortCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.conf")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(path, []byte("new"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("before Commit the file has %q", got)
	}
	p.Abort()
	if got := readFile(t, path); got != "old" {
		t.Errorf("after Abort the file has %q", got)
	}
	assertNoTemp(t, dir)

	if p, err = Prepare(path, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "new" {
		t.Errorf("after Commit the file has %q", got)
	}
	assertNoTemp(t, dir)
}

// A write that fails for want of space (a real ENOSPC on a small tmpfs)
// leaves the old file whole and no temporary file.
func TestWriteFileNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for a real ENOSPC")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "state.json")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteFile(path, make([]byte, 1<<20), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("writing 1 MiB on 64 KiB: %v, want ENOSPC", err)
	}
	if got := readFile(t, path); got != "old" {
		t.Errorf("after a failed write the file has %d bytes, want the old 3", len(got))
	}
	assertNoTemp(t, dir)
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Errorf("once space is free again: %v", err)
	}
}

func TestDirectorySync(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SyncDir of a missing directory: %v", err)
	}
}

func TestDatasync(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("record")); err != nil {
		t.Fatal(err)
	}
	if err := Datasync(f); err != nil {
		t.Error(err)
	}
	f.Close()
	if err := Datasync(f); err == nil {
		t.Error("Datasync of a closed file succeeded")
	}
}
