package queuectl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// The wake-up trigger is Postfix's: a FIFO in the spool directory
// (Postfix: public/qmgr) that the running relay reads and the queue
// commands write one byte to after they changed the spool (postqueue -f,
// postsuper). Writing never blocks and needs no relay: with no reader the
// open fails with ENXIO and the change waits for the relay's next start,
// which is a queue run anyway. The relay also rescans on its own every
// scan interval, so a lost trigger only delays, never loses, a retry.
const wakeName = "wake"

// WakePath is the trigger FIFO of the spool at dir.
func WakePath(dir string) string { return filepath.Join(dir, wakeName) }

// Wake tells a relay running on the spool at dir to rescan it now. It
// reports whether a relay was listening.
func Wake(dir string) (bool, error) {
	f, err := os.OpenFile(WakePath(dir), os.O_WRONLY|syscall.O_NONBLOCK, 0)
	switch {
	case errors.Is(err, syscall.ENXIO), errors.Is(err, fs.ErrNotExist):
		return false, nil // no relay running
	case err != nil:
		return false, fmt.Errorf("queue: wake the relay: %w", err)
	}
	defer f.Close()
	// A full pipe means wake-ups are already pending: as good as ours.
	if _, err := f.Write([]byte{'W'}); err != nil && !errors.Is(err, syscall.EAGAIN) {
		return true, fmt.Errorf("queue: wake the relay: %w", err)
	}
	return true, nil
}

// ListenWake creates the trigger FIFO of the spool at dir if needed and
// calls rescan once per burst of wake-ups until ctx ends. The relay runs it.
func ListenWake(ctx context.Context, dir string, rescan func()) error {
	path := WakePath(dir)
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("queue: wake trigger: %w", err)
	}
	if fi, err := os.Lstat(path); err != nil {
		return fmt.Errorf("queue: wake trigger: %w", err)
	} else if fi.Mode()&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("queue: wake trigger %s is not a FIFO", path)
	}
	// O_RDWR keeps a writer open ourselves, so the FIFO never reports EOF
	// between commands (Linux defines this; Postfix's qmgr does the same).
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("queue: wake trigger: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	buf := make([]byte, 512)
	for {
		if _, err := f.Read(buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.Close()
			return fmt.Errorf("queue: wake trigger: %w", err)
		}
		rescan()
	}
}
