package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLocked is returned when another edit held the policy's lock for
// longer than the Store's LockTimeout.
var ErrLocked = errors.New("policy is locked by another edit")

// lockPollMax bounds the back-off between attempts on a busy lock, so a
// waiting edit notices a released lock quickly without spinning.
const lockPollMax = 50 * time.Millisecond

// lock takes the exclusive flock(2) on path, waiting up to timeout (0:
// until ctx ends). flock rather than fcntl locks: it is per open file, so
// goroutines and processes exclude each other alike, and an operator can
// hold it from a shell with flock(1) while editing by hand.
//
// The lock file is never removed: unlinking it would let one edit lock
// the old inode while the next creates and locks a new one.
func lock(ctx context.Context, path string, timeout time.Duration) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() {
				// Closing the descriptor releases the lock.
				f.Close()
			}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w (waited %s for %s)", ErrLocked, timeout, path)
			}
			return nil, ctx.Err()
		case <-t.C:
		}
		if wait *= 2; wait > lockPollMax {
			wait = lockPollMax
		}
	}
}
