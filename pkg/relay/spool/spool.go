// Package spool is the relay's durable queue, written so that a crash at
// any instant leaves either the whole message or nothing.
//
// Layout under the spool directory:
//
//	lock            flock(2) target: shared while open, exclusive for crash cleanup
//	journal/        the relay's fast path: small messages appended to shared
//	                segment files, many per fdatasync (journal.go)
//	tmp/            files being written; anything here after a crash is garbage
//	queue/ID.eml    the message as received (CRLF lines, Received: prepended)
//	queue/ID.json   the envelope (see Envelope); its presence commits the message
//	corrupt/        envelopes found without a body, damaged journal segments
//
// A message gets its own two files when it is too big for the journal,
// when a process other than the relay stores it, or when it must wait for
// a retry (Update moves it out of the journal). Put writes the body to
// tmp/, fsyncs it and renames it to queue/ID.eml, then does the same for
// the envelope, then fsyncs queue/. The envelope's rename is the commit
// point: List, the queue runner and `smgctl queue` see only IDs with an
// envelope. Either way, only after Put returns may the SMTP server say 250
// (RFC 5321 §6.1: once the server accepts, it must not lose the message).
package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/smgctl/smgctl/pkg/safeio"
)

// ErrNoSpace wraps ENOSPC and EDQUOT from any spool write; the SMTP server
// answers it with 452 4.3.1 (RFC 3463 "mail system full").
var ErrNoSpace = errors.New("spool: insufficient storage")

// ErrExists is returned by Put when the ID is already queued.
var ErrExists = errors.New("spool: queue ID already in use")

const (
	bodyExt        = ".eml"
	envExt         = ".json"
	corruptDirName = "corrupt"
)

// Spool is an open spool directory. It is safe for concurrent use, and
// several processes (the relay and `smgctl queue`) may have it open at once.
type Spool struct {
	dir      string
	tmpDir   string
	queueDir string
	log      *slog.Logger
	lock     *os.File
	ids      idClock
	commit   *safeio.GroupCommit[struct{}] // queue/ directory fsyncs
	now      func() time.Time
	// journal is the relay's fast path (journal.go); nil in a process
	// that opened the spool with Open.
	journal *journal

	// recovered: the damaged journal segments this process's recovery
	// moved to corrupt/.
	recovered []JournalDamage

	// create opens a new file for writing; tests inject failing writers.
	create func(path string) (spoolFile, error)
}

// spoolFile is what Put needs from an *os.File.
type spoolFile interface {
	io.Writer
	Sync() error
	Close() error
}

func createFile(path string) (spoolFile, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// Open opens (creating if needed) the spool at dir. If no other process
// has the spool open, it first removes what a crash left behind: files in
// tmp/ and bodies without an envelope (never acknowledged), and moves
// envelopes without a body to corrupt/. Call Close when done.
func Open(dir string, log *slog.Logger) (*Spool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Spool{
		dir:      dir,
		tmpDir:   filepath.Join(dir, "tmp"),
		queueDir: filepath.Join(dir, "queue"),
		log:      log,
		now:      time.Now,
		create:   createFile,
	}
	s.commit = &safeio.GroupCommit[struct{}]{Run: s.syncQueue}
	for _, d := range []string{dir, s.tmpDir, s.queueDir, filepath.Join(dir, corruptDirName), filepath.Join(dir, journalDirName)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	s.lock = lock
	// Cleanup must not race a live Put in another process, whose body may
	// sit in queue/ without its envelope yet: only a process that gets the
	// lock exclusively knows nobody else is writing.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		cerr := s.recover()
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
			lock.Close()
			return nil, fmt.Errorf("spool: lock: %w", err)
		}
		if cerr != nil {
			lock.Close()
			return nil, cerr
		}
	} else if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: lock: %w", err)
	} else {
		log.Debug("spool in use by another process; skipping crash cleanup", "dir", dir)
	}
	return s, nil
}

// Close releases the spool's lock (and the journal). Puts must have
// returned.
func (s *Spool) Close() error {
	if s.journal != nil {
		s.journal.close()
	}
	return s.lock.Close()
}

// Dir is the spool directory.
func (s *Spool) Dir() string { return s.dir }

// recover removes the remains of interrupted Puts and Updates.
func (s *Spool) recover() error {
	tmp, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range tmp {
		p := filepath.Join(s.tmpDir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("spool: cleanup: %w", err)
		}
		s.log.Info("removed temporary file left by a crash", "path", p)
	}
	q, err := os.ReadDir(s.queueDir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	names := make(map[string]bool, len(q))
	for _, e := range q {
		names[e.Name()] = true
	}
	changed := false
	for _, e := range q {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, bodyExt):
			id := strings.TrimSuffix(name, bodyExt)
			if names[id+envExt] {
				continue
			}
			// Body renamed, envelope not: the crash hit before the commit
			// point, so no 250 was given and the client will retry.
			if err := os.Remove(filepath.Join(s.queueDir, name)); err != nil {
				return fmt.Errorf("spool: cleanup: %w", err)
			}
			s.log.Info("removed uncommitted message body left by a crash", "id", id)
			changed = true
		case strings.HasSuffix(name, envExt):
			id := strings.TrimSuffix(name, envExt)
			if names[id+bodyExt] {
				continue
			}
			// Possible only if the crash hit between the two renames
			// reaching disk out of order, before the directory fsync, so no
			// 250 was given either; but an operator may have deleted the
			// body by hand. Keep the envelope where it can be looked at.
			dst := filepath.Join(s.dir, corruptDirName, name)
			if err := os.Rename(filepath.Join(s.queueDir, name), dst); err != nil {
				return fmt.Errorf("spool: cleanup: %w", err)
			}
			s.log.Warn("envelope without message body moved aside", "id", id, "path", dst)
			changed = true
		}
	}
	if changed {
		if err := safeio.SyncDir(s.queueDir); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	// Nobody else has the spool open, so no relay writes the journal.
	return s.recoverJournal()
}

// NewID returns a fresh queue ID: 16 characters, unique, sorting by arrival.
func (s *Spool) NewID() string { return newID(&s.ids, s.now()) }

func (s *Spool) bodyPath(id string) string { return filepath.Join(s.queueDir, id+bodyExt) }
func (s *Spool) envPath(id string) string  { return filepath.Join(s.queueDir, id+envExt) }

func checkID(id string) error {
	if !ValidID(id) {
		return fmt.Errorf("spool: invalid queue ID %q", id)
	}
	return nil
}

// Put stores a new message durably: when it returns nil, body and envelope
// are on disk and survive a crash or power loss, and the caller may reply
// 250. If env.ID is empty Put assigns NewID(); env.Size is set to the body
// length stored; a zero env.Arrival is set to now. On error nothing of the
// message remains in the spool, and errors.Is(err, ErrNoSpace) tells a full
// disk (reply 452 4.3.1) from other failures (451 4.3.0).
//
// Put reads body to its end before it writes the envelope, so the reader
// may still fill in envelope fields it learns from the content (the SMTP
// server sets Body8Bit that way).
//
// In the relay (OpenRelay) a body of up to DefaultMaxJournalBody bytes
// goes to the journal; larger ones, and every Put in other processes, get
// their own files.
func (s *Spool) Put(env *Envelope, body io.Reader) error {
	if env.ID == "" {
		env.ID = s.NewID()
	}
	if err := checkID(env.ID); err != nil {
		return err
	}
	if env.Arrival.IsZero() {
		env.Arrival = s.now().UTC()
	}
	if _, err := os.Lstat(s.envPath(env.ID)); err == nil {
		return fmt.Errorf("%w: %s", ErrExists, env.ID)
	}
	j := s.journal
	if j == nil {
		_, err := s.putClassic(env, body, false)
		return err
	}
	if j.lookup(env.ID) != nil {
		return fmt.Errorf("%w: %s", ErrExists, env.ID)
	}
	buf := j.getBuf()
	defer j.putBuf(buf)
	n, err := buf.ReadFrom(io.LimitReader(body, j.maxBody+1))
	if err != nil {
		return fmt.Errorf("spool: write body: %w", err)
	}
	if n > j.maxBody {
		_, err := s.putClassic(env, io.MultiReader(bytes.NewReader(buf.Bytes()), body), false)
		return err
	}
	env.Size = n
	return j.put(env, buf.Bytes())
}

// putClassic writes a message as queue/ID.eml and queue/ID.json. With hold
// it returns the body's flock (see Lock), taken before the message is
// visible, for the caller to close.
func (s *Spool) putClassic(env *Envelope, body io.Reader, hold bool) (held *os.File, err error) {
	id := env.ID
	// Every failure path below undoes what was renamed into queue/. The
	// body's final name is harmless without an envelope, but leaving it
	// would be a "partial file" and would waste the space a 452 is about.
	var placed []string
	defer func() {
		if err == nil {
			return
		}
		if held != nil {
			held.Close()
			held = nil
		}
		for _, p := range placed {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				s.log.Error("spool: cannot remove partial file", "path", p, "err", rerr)
			}
		}
		err = classify(err)
	}()

	// The body is written first; its fsync then runs while the envelope
	// is written and fsynced, so a message costs two fsync latencies in a
	// row (files in parallel, then the directory), not three. Both renames
	// wait for both fsyncs: the envelope still only appears once the body
	// it names is on disk.
	bodyTmp, bodyFile, size, err := s.writeTmp(id+bodyExt, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 64<<10)
		n, err := bw.ReadFrom(body)
		env.Size = n
		if err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
		return nil, fmt.Errorf("spool: write body: %w", err)
	}
	bodySynced := make(chan error, 1)
	go func() { bodySynced <- syncClose(bodyFile) }()
	env.Size = size

	b, err := marshalEnvelope(env)
	if err == nil {
		var envTmp string
		envTmp, err = s.writeFileTmp(id+envExt, func(w io.Writer) error {
			_, err := w.Write(b)
			return err
		})
		if berr := <-bodySynced; err == nil && berr != nil {
			err = berr
		}
		if err == nil {
			if err = os.Rename(bodyTmp, s.bodyPath(id)); err == nil {
				placed = append(placed, s.bodyPath(id))
				if hold {
					// Before the envelope makes the message visible,
					// so nobody else can take the lock first.
					held, err = s.flockBody(id, 0)
				}
				if err == nil {
					if err = os.Rename(envTmp, s.envPath(id)); err == nil {
						placed = append(placed, s.envPath(id))
					}
				}
			}
		}
		if err != nil {
			os.Remove(envTmp)
		}
	} else {
		<-bodySynced
	}
	if err != nil {
		os.Remove(bodyTmp)
		return nil, fmt.Errorf("spool: write: %w", err)
	}

	if err := s.commit.Do(); err != nil {
		return nil, fmt.Errorf("spool: commit: %w", err)
	}
	return held, nil
}

// countingWriter counts what reaches the file.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// syncQueue is a group commit round: fsync queue/, making durable every
// rename into it and removal from it done before the round began.
func (s *Spool) syncQueue([]struct{}) error {
	return safeio.SyncDir(s.queueDir)
}

// writeFile writes tmp/<name> with fill, fsyncs and closes it, then renames
// it to dst. The rename is not yet durable: the caller syncs the directory.
// On error the temporary file is gone and dst untouched.
func (s *Spool) writeFile(name, dst string, fill func(io.Writer) error) (int64, error) {
	// A random suffix keeps two processes updating one envelope (the relay
	// and `smgctl queue retry`) from colliding on the temporary name.
	tmp := filepath.Join(s.tmpDir, name+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := s.create(tmp)
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: f}
	err = fill(cw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr // NFS and some FUSE file systems report write errors only here
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return cw.n, nil
}

// writeTmp writes tmp/<name> with fill and returns the still open file
// for the caller to sync and close (syncClose), and rename. On error
// nothing is left.
func (s *Spool) writeTmp(name string, fill func(io.Writer) error) (string, spoolFile, int64, error) {
	tmp := filepath.Join(s.tmpDir, name+"."+strconv.FormatUint(rand.Uint64(), 36))
	f, err := s.create(tmp)
	if err != nil {
		return "", nil, 0, err
	}
	cw := &countingWriter{w: f}
	if err := fill(cw); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", nil, 0, err
	}
	return tmp, f, cw.n, nil
}

// writeFileTmp writes, fsyncs and closes tmp/<name> and returns its path,
// not yet renamed. On error nothing is left.
func (s *Spool) writeFileTmp(name string, fill func(io.Writer) error) (string, error) {
	tmp, f, _, err := s.writeTmp(name, fill)
	if err != nil {
		return "", err
	}
	if err := syncClose(f); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// syncClose fsyncs and closes f; NFS and some FUSE file systems report
// write errors only at close.
func syncClose(f spoolFile) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// classify wraps disk-full errors in ErrNoSpace.
func classify(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		if errors.Is(err, ErrNoSpace) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// Body opens the stored message of id.
func (s *Spool) Body(id string) (io.ReadCloser, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if j := s.journal; j != nil {
		if e := j.lookup(id); e != nil {
			return j.body(e), nil
		}
	}
	f, err := os.Open(s.bodyPath(id))
	if err == nil {
		return f, nil
	}
	if r, ok, jerr := s.fromJournal(id, err); ok {
		return recordBody(r)
	} else if jerr != nil {
		return nil, fmt.Errorf("spool: %w", jerr)
	}
	if f, err = os.Open(s.bodyPath(id)); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}

// fromJournal is the second place another process looks for a message
// missing from queue/: the relay's journal. Called with the error of the
// first look; a caller that gets ok false looks in queue/ once more, where
// the message may have moved during the scan.
func (s *Spool) fromJournal(id string, err error) (*journalRecord, bool, error) {
	if s.journal != nil || !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	r, jerr := s.findInJournal(id)
	if jerr != nil {
		return nil, false, jerr
	}
	return r, r != nil, nil
}

// Envelope reads the envelope of id. A missing message gives an error
// matching fs.ErrNotExist.
func (s *Spool) Envelope(id string) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if j := s.journal; j != nil {
		if e := j.lookup(id); e != nil {
			return e.env.clone(), nil
		}
	}
	b, err := os.ReadFile(s.envPath(id))
	if err != nil {
		if r, ok, jerr := s.fromJournal(id, err); ok {
			return r.env, nil
		} else if jerr != nil {
			return nil, fmt.Errorf("spool: %w", jerr)
		}
		if b, err = os.ReadFile(s.envPath(id)); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	env, err := unmarshalEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("spool: %s: %w", s.envPath(id), err)
	}
	if env.ID != id {
		return nil, fmt.Errorf("spool: %s: envelope names ID %q", s.envPath(id), env.ID)
	}
	return env, nil
}

// Update replaces the envelope of a queued message atomically and durably:
// after a crash the old or the new envelope is there, never a mix. A
// message in the journal moves to its own files with the new envelope;
// the caller must hold its lock (Lock), which then covers those files.
func (s *Spool) Update(env *Envelope) (err error) {
	if err := checkID(env.ID); err != nil {
		return err
	}
	if j := s.journal; j != nil {
		if e := j.lookup(env.ID); e != nil {
			return s.materialise(e, env)
		}
	}
	// Without this an Update racing a Remove would resurrect an envelope
	// whose body is gone.
	if _, err := os.Lstat(s.envPath(env.ID)); err != nil {
		return fmt.Errorf("spool: update: %w", err)
	}
	b, err := marshalEnvelope(env)
	if err != nil {
		return fmt.Errorf("spool: envelope: %w", err)
	}
	if _, err := s.writeFile(env.ID+envExt+".upd", s.envPath(env.ID), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return classify(fmt.Errorf("spool: update: %w", err))
	}
	if err := s.commit.Do(); err != nil {
		return classify(fmt.Errorf("spool: update: commit: %w", err))
	}
	return nil
}

// Remove deletes a message whose recipients are all final. The envelope
// goes first, so a crash in between leaves a body that the next Open
// collects, never an envelope without a body.
func (s *Spool) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if j := s.journal; j != nil {
		if e := j.lookup(id); e != nil {
			if err := j.release(e); err != nil {
				return fmt.Errorf("spool: remove: %w", err)
			}
			return nil
		}
	}
	if err := os.Remove(s.envPath(id)); err != nil {
		return fmt.Errorf("spool: remove: %w", err)
	}
	if err := os.Remove(s.bodyPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: remove: %w", err)
	}
	// Durable removal keeps a restart from delivering the message twice.
	if err := s.commit.Do(); err != nil {
		return fmt.Errorf("spool: remove: commit: %w", err)
	}
	return nil
}

// List returns the IDs of all committed messages, oldest first (for IDs
// made by NewID).
func (s *Spool) List() ([]string, error) {
	var ids []string
	if j := s.journal; j != nil {
		j.mu.Lock()
		for id := range j.idx {
			ids = append(ids, id)
		}
		j.mu.Unlock()
	} else {
		// The journal first: a message it releases meanwhile was moved
		// to queue/ before, and is found there next.
		_, err := scanJournal(filepath.Join(s.dir, journalDirName), func(r journalRecord) error {
			if r.live {
				ids = append(ids, r.env.ID)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("spool: journal: %w", err)
		}
	}
	ents, err := os.ReadDir(s.queueDir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if id, ok := strings.CutSuffix(name, envExt); ok && ValidID(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// materialise moves a journal message to its own files with env as its
// envelope, and releases its record.
func (s *Spool) materialise(e *journalEntry, env *Envelope) error {
	j := s.journal
	body := j.body(e)
	defer body.Close()
	held, err := s.putClassic(env, body, true)
	if err != nil {
		return fmt.Errorf("spool: update: %w", err)
	}
	if len(e.lock) == 1 {
		e.held = held // the lock holder's unlock gives it up
	} else {
		held.Close()
	}
	// The files are the message now; a release lost in a crash is
	// noticed by recovery, which skips messages that have files.
	if err := j.release(e); err != nil {
		s.log.Error("spool: journal: releasing a moved message", "id", env.ID, "err", err)
	}
	return nil
}
