package spool

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked is returned by TryLock while another holder (the relay's
// queue runner delivering the message, or a `smgctl queue` command in any
// process) has the message.
var ErrLocked = errors.New("spool: message is locked")

// Lock takes the per-message lock of id, waiting for it. The lock is an
// exclusive flock(2) on the message body, the one file of a message that
// is never replaced (Update renames a new envelope into place, so a lock
// on the envelope's inode would be lost at the first update). Whoever
// changes an envelope on behalf of an operator, and the queue runner for
// the whole of an attempt, hold it, so their read-modify-write cycles never
// interleave and a message deleted by the operator is not rewritten by a
// delivery that started before. A missing message gives an error matching
// fs.ErrNotExist.
func (s *Spool) Lock(id string) (unlock func(), err error) {
	return s.lockMessage(id, 0)
}

// TryLock is Lock without waiting: ErrLocked when someone else holds it.
func (s *Spool) TryLock(id string) (unlock func(), err error) {
	return s.lockMessage(id, syscall.LOCK_NB)
}

func (s *Spool) lockMessage(id string, flags int) (func(), error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	f, err := os.Open(s.bodyPath(id))
	if err != nil {
		return nil, fmt.Errorf("spool: lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|flags)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, id)
		}
		return nil, fmt.Errorf("spool: lock: %w", err)
	}
	// The body may have been removed while we waited: the lock is then on
	// an orphaned inode and the message is gone.
	if _, err := os.Lstat(s.envPath(id)); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: lock: %w", err)
	}
	return func() { f.Close() }, nil
}
