package spool

import (
	"errors"
	"fmt"
	"io/fs"
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
	if j := s.journal; j != nil {
		// In the relay a journal message has an in-memory lock; once it
		// has moved to its own files (released while we waited), the
		// flock below is the one.
		for e := j.lookup(id); e != nil; e = j.lookup(id) {
			if !lockEntry(e, flags&syscall.LOCK_NB == 0) {
				return nil, fmt.Errorf("%w: %s", ErrLocked, id)
			}
			if j.lookup(id) == e {
				return func() { unlockEntry(e) }, nil
			}
			unlockEntry(e)
		}
	}
	f, err := s.lockClassic(id, flags)
	if err == nil {
		return func() { f.Close() }, nil
	}
	if errors.Is(err, fs.ErrNotExist) && s.journal == nil {
		// Another process's view of a message in the relay's journal:
		// the relay is working on it and holds it until it is delivered
		// or moved to its own files.
		r, jerr := s.findInJournal(id)
		if jerr != nil {
			return nil, fmt.Errorf("spool: lock: %w", jerr)
		}
		if r != nil {
			return nil, fmt.Errorf("%w: %s", ErrLocked, id)
		}
		if f, err = s.lockClassic(id, flags); err == nil {
			return func() { f.Close() }, nil
		}
	}
	return nil, err
}

// lockClassic flocks the body of id and checks the message is still there.
func (s *Spool) lockClassic(id string, flags int) (*os.File, error) {
	f, err := s.flockBody(id, flags)
	if err != nil {
		return nil, err
	}
	// The body may have been removed while we waited: the lock is then on
	// an orphaned inode and the message is gone. Or the message is being
	// written (putClassic holds the lock before its envelope exists).
	if _, err := os.Lstat(s.envPath(id)); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool: lock: %w", err)
	}
	return f, nil
}

// flockBody opens and flocks the body of id.
func (s *Spool) flockBody(id string, flags int) (*os.File, error) {
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
	return f, nil
}
