package regularfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestOnlyBoundedRegularFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	zero := filepath.Join(dir, "zero")
	os.Symlink("/dev/zero", zero)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 2<<20+1), 0o644)
	small := filepath.Join(dir, "small")
	os.WriteFile(small, []byte("ok\n"), 0o644)

	for _, tc := range []struct{ path, want string }{
		{fifo, "not a regular file (a FIFO)"},
		{zero, "not a regular file (a character device)"},
		{dir, "not a regular file (a directory)"},
		{big, "2097153 bytes or more, larger than the 2 MiB allowed"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(tc.path, 2<<20); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", filepath.Base(tc.path), err, tc.want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: ReadFile blocked", filepath.Base(tc.path))
		}
	}
	if data, err := ReadFile(small, 3); err != nil || string(data) != "ok\n" {
		t.Errorf("a file of exactly the limit: %q, %v", data, err)
	}
}
