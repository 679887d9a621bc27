package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The journal is the relay's fast path into the spool. A message of up to
// MaxJournalBody bytes is appended, envelope and body in one record, to a
// shared segment file under journal/, and many messages share one
// fdatasync (group commit): the per-message files, inode creations and
// fsyncs of the classic layout were what held the relay at Postfix's
// speed. A message leaves the journal in one of two ways, both marked by
// overwriting its record's kind byte in place (no space needed, so it
// works on a full disk too):
//
//   - Remove, once every recipient is final (most messages: delivered at
//     the first attempt);
//   - Update, when it must wait: it is first written out as classic
//     queue/ID.eml + queue/ID.json ("materialised"), the layout `smgctl
//     queue` and retries work on, like Postfix moving a message from its
//     active to its deferred queue.
//
// A segment is deleted once none of its records is live. Only the relay
// (OpenRelay) writes the journal; other processes read it (List, Envelope,
// Body) and see its messages as locked by the relay. After a crash, the
// next process to open the spool alone, or the next relay, materialises
// every live record and deletes the segments.
//
// Record layout, little-endian:
//
//	0  magic "SMGJ"
//	4  kind: 'P' live, 'X' released
//	5  version 1
//	6  two zero bytes
//	8  envelope length (uint32)
//	12 body length (uint32)
//	16 CRC-32C of bytes 5..15, the ID, the envelope and the body
//	20 queue ID (16 bytes)
//	36 envelope JSON, then the body
//
// The kind byte is outside the CRC so that releasing a record is a one-byte
// write. A record is acknowledged only after an fdatasync that began after
// it was written, which also covers every record before it; so after a
// crash only a segment's tail can be torn. A record damaged in the middle
// (a bad disk) is skipped, the scan resumes at the next intact one, and
// the segment is kept in corrupt/ for the operator.

const (
	journalDirName = "journal"
	segmentExt     = ".seg"
	recMagic       = "SMGJ"
	recHeaderLen   = 36
	recKindOff     = 4
	kindLive       = 'P'
	kindReleased   = 'X'
	recVersion     = 1

	// DefaultMaxJournalBody is the largest body the journal takes; larger
	// messages are streamed to their own files instead of being held in
	// memory while they arrive.
	DefaultMaxJournalBody = 256 << 10
	// DefaultSegmentSize is where the relay starts a new segment.
	DefaultSegmentSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrRelayRunning is returned by OpenRelay when another relay has the
// spool's journal.
var ErrRelayRunning = errors.New("spool: another relay is using this spool")

// segment is one journal file, open in the relay.
type segment struct {
	name string
	f    *os.File
	size int64 // append offset
	live int   // records not yet released
	pins int   // open Body readers and sync rounds using f
	dead bool  // unlinked; f is closed when the last pin goes
	// dirty: written since the last sync round began.
	dirty bool
}

// journalEntry is a live journal message in the relay's index.
type journalEntry struct {
	seg     *segment
	off     int64 // record start
	bodyOff int64
	bodyLen int64
	env     *Envelope
	// lock is the message's lock (spool.Lock) while it is in the journal:
	// a one-slot channel, full while held.
	lock chan struct{}
	// held is the flock on the classic body taken by materialise, given
	// up with lock by the holder's unlock.
	held *os.File
}

// journal is the relay's writer side.
type journal struct {
	dir     string
	lockf   *os.File
	log     *slog.Logger
	maxBody int64
	segSize int64

	mu   sync.Mutex
	cur  *segment
	segs []*segment
	idx  map[string]*journalEntry
	last int64 // stamp of the newest segment created
	// starved: an append failed for want of space; the current segment
	// is retired as soon as nothing in it is live, to give the space back.
	starved bool

	commit *groupCommit
	bufs   sync.Pool
}

// OpenRelay opens the spool for the relay: Open, plus the journal, which
// only one process may write. Whatever live records a crash left in the
// journal are materialised first.
func OpenRelay(dir string, log *slog.Logger) (*Spool, error) {
	s, err := Open(dir, log)
	if err != nil {
		return nil, err
	}
	j := &journal{
		dir:     filepath.Join(dir, journalDirName),
		log:     s.log,
		maxBody: DefaultMaxJournalBody,
		segSize: DefaultSegmentSize,
		idx:     map[string]*journalEntry{},
	}
	j.commit = &groupCommit{run: j.syncDirty}
	lf, err := os.OpenFile(filepath.Join(j.dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("spool: journal: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		s.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrRelayRunning, dir)
		}
		return nil, fmt.Errorf("spool: journal lock: %w", err)
	}
	j.lockf = lf
	if err := s.recoverJournal(); err != nil {
		lf.Close()
		s.Close()
		return nil, err
	}
	s.journal = j
	return s, nil
}

// close closes the segments and gives up the journal. Live records
// stay on disk for the next start.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, sg := range j.segs {
		sg.f.Close()
	}
	j.segs, j.cur = nil, nil
	return j.lockf.Close()
}

// put appends a message whose body is at most maxBody bytes, and returns
// once the record is durable.
func (j *journal) put(env *Envelope, body []byte) error {
	envJSON, err := marshalEnvelope(env)
	if err != nil {
		return fmt.Errorf("spool: envelope: %w", err)
	}
	rec := j.getBuf()
	defer j.putBuf(rec)
	appendRecord(rec, env.ID, envJSON, body)

	e := &journalEntry{env: env.clone(), lock: make(chan struct{}, 1), bodyLen: int64(len(body))}
	if err := j.append(e, rec.Bytes()); err != nil {
		return classify(fmt.Errorf("spool: journal: %w", err))
	}
	if err := j.commit.Sync(); err != nil {
		// Unknown whether the record reached the disk: release it so a
		// restart does not deliver a message the client was told failed.
		j.release(e)
		return classify(fmt.Errorf("spool: journal: commit: %w", err))
	}
	j.mu.Lock()
	j.idx[env.ID] = e
	j.mu.Unlock()
	return nil
}

func appendRecord(b *bytes.Buffer, id string, envJSON, body []byte) {
	var h [recHeaderLen]byte
	copy(h[0:], recMagic)
	h[4] = kindLive
	h[5] = recVersion
	binary.LittleEndian.PutUint32(h[8:], uint32(len(envJSON)))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(body)))
	copy(h[20:], id)
	crc := crc32.Update(0, castagnoli, h[5:16])
	crc = crc32.Update(crc, castagnoli, h[20:36])
	crc = crc32.Update(crc, castagnoli, envJSON)
	crc = crc32.Update(crc, castagnoli, body)
	binary.LittleEndian.PutUint32(h[16:], crc)
	b.Write(h[:])
	b.Write(envJSON)
	b.Write(body)
}

// append writes rec at the end of the current segment and fills in e's
// place; the record is not yet durable.
func (j *journal) append(e *journalEntry, rec []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cur == nil || (j.cur.size > 0 && j.cur.size+int64(len(rec)) > j.segSize) {
		if err := j.rotate(); err != nil {
			return err
		}
	}
	sg := j.cur
	if _, err := sg.f.WriteAt(rec, sg.size); err != nil {
		// A short write (ENOSPC) must not leave a torn record in the
		// middle of the segment, where it would hide the records after
		// it from a recovery scan.
		if terr := sg.f.Truncate(sg.size); terr != nil {
			j.log.Error("spool: journal: cannot cut a failed write; starting a new segment", "segment", sg.name, "err", terr)
			j.abandon(sg)
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			j.starved = true
		}
		return err
	}
	e.seg, e.off = sg, sg.size
	e.bodyOff = sg.size + int64(len(rec)) - e.bodyLen
	sg.size += int64(len(rec))
	sg.live++
	sg.dirty = true
	return nil
}

// rotate starts a new segment. Called with j.mu held.
func (j *journal) rotate() error {
	// Names are zero-padded nanosecond stamps, so they sort by age.
	j.last = max(time.Now().UnixNano(), j.last+1)
	name := fmt.Sprintf("%020d", j.last)
	f, err := os.OpenFile(filepath.Join(j.dir, name+segmentExt), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	// The segment's name must be durable before any record in it is
	// acknowledged; fdatasync on the file does not promise that.
	if err := syncDir(j.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	old := j.cur
	sg := &segment{name: name, f: f}
	j.segs = append(j.segs, sg)
	j.cur = sg
	if old != nil {
		j.maybeDrop(old)
	}
	return nil
}

// syncDirty is a group commit round: fdatasync every segment written to
// since the last round began.
func (j *journal) syncDirty() error {
	j.mu.Lock()
	var segs []*segment
	for _, sg := range j.segs {
		if sg.dirty {
			sg.dirty = false
			sg.pins++
			segs = append(segs, sg)
		}
	}
	j.mu.Unlock()
	var err error
	for _, sg := range segs {
		if serr := fdatasync(sg.f); serr != nil && err == nil {
			err = fmt.Errorf("%s: %w", sg.name, serr)
		}
	}
	j.mu.Lock()
	for _, sg := range segs {
		if err != nil && sg == j.cur {
			// After a failed fsync Linux may have dropped the dirty
			// pages: nothing more is trusted to this file.
			j.abandon(sg)
		}
		j.unpin(sg)
	}
	j.mu.Unlock()
	return err
}

func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// release marks e's record released and, once that is durable, drops it
// from the index. The error is the sync's; the entry is dropped anyway
// (the record is released in memory, and a restart delivers it at worst
// once more, never loses it).
func (j *journal) release(e *journalEntry) error {
	j.mu.Lock()
	_, err := e.seg.f.WriteAt([]byte{kindReleased}, e.off+recKindOff)
	e.seg.dirty = true
	j.mu.Unlock()
	if err == nil {
		err = j.commit.Sync()
	}
	j.mu.Lock()
	if j.idx[e.env.ID] == e {
		delete(j.idx, e.env.ID)
	}
	e.seg.live--
	j.maybeDrop(e.seg)
	j.mu.Unlock()
	return err
}

// idleRetireSize: a current segment this big with nothing live is retired
// rather than grown to the full segment size, so a quiet relay gives back
// its disk space soon.
const idleRetireSize = 1 << 20

// maybeDrop deletes a segment with nothing live that is no longer being
// appended to (or is idle and big enough to retire). Called with j.mu held.
func (j *journal) maybeDrop(sg *segment) {
	if sg.live > 0 || sg.dead {
		return
	}
	if sg == j.cur {
		if sg.size < idleRetireSize && !j.starved {
			return
		}
		j.cur, j.starved = nil, false // the next append starts a new one
	}
	if err := os.Remove(filepath.Join(j.dir, sg.name+segmentExt)); err != nil {
		j.log.Error("spool: journal: cannot delete a finished segment", "segment", sg.name, "err", err)
		return
	}
	sg.dead = true
	j.segs = slices.DeleteFunc(j.segs, func(x *segment) bool { return x == sg })
	if sg.pins == 0 {
		sg.f.Close()
	}
}

// abandon stops appending to the current segment sg; the next append
// starts a new one. sg goes once nothing in it is live (at once if
// nothing is). Called with j.mu held.
func (j *journal) abandon(sg *segment) {
	if j.cur == sg {
		j.cur = nil
	}
	j.maybeDrop(sg)
}

func (j *journal) unpin(sg *segment) {
	sg.pins--
	if sg.dead && sg.pins == 0 {
		sg.f.Close()
	}
}

func (j *journal) lookup(id string) *journalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.idx[id]
}

// body returns a reader over e's body that keeps the segment open.
func (j *journal) body(e *journalEntry) io.ReadCloser {
	j.mu.Lock()
	e.seg.pins++
	j.mu.Unlock()
	return &segmentReader{SectionReader: io.NewSectionReader(e.seg.f, e.bodyOff, e.bodyLen), done: func() {
		j.mu.Lock()
		j.unpin(e.seg)
		j.mu.Unlock()
	}}
}

type segmentReader struct {
	*io.SectionReader
	once sync.Once
	done func()
}

func (r *segmentReader) Close() error {
	r.once.Do(r.done)
	return nil
}

func (j *journal) getBuf() *bytes.Buffer {
	if b, ok := j.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

func (j *journal) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 2*int(j.maxBody) {
		j.bufs.Put(b)
	}
}

// lockEntry takes e's in-memory lock; wait says whether to wait for it.
func lockEntry(e *journalEntry, wait bool) bool {
	if wait {
		e.lock <- struct{}{}
		return true
	}
	select {
	case e.lock <- struct{}{}:
		return true
	default:
		return false
	}
}

func unlockEntry(e *journalEntry) {
	if e.held != nil {
		e.held.Close()
		e.held = nil
	}
	<-e.lock
}

// --- reading the journal from disk: other processes and recovery ---

// journalRecord is a record found by scanJournal.
type journalRecord struct {
	segment string // file path
	off     int64
	live    bool
	env     *Envelope
	bodyOff int64
	bodyLen int64
}

// scanJournal reads every segment in dir, oldest first, and calls fn for
// each intact record. Bytes that are not an intact record at a segment's
// end are a torn tail (never acknowledged) or a record the relay is still
// writing, and are skipped; bad lists the segments with a damaged record
// before intact ones.
func scanJournal(dir string, fn func(journalRecord) error) (bad []string, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), segmentExt); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(dir, n+segmentExt)
		damaged, err := scanSegment(p, fn)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by the relay meanwhile
		}
		if err != nil {
			return bad, err
		}
		if damaged {
			bad = append(bad, p)
		}
	}
	return bad, nil
}

// scanSegment scans one segment. At a record that does not check out it
// looks for the next one that does: nothing is found after a torn tail,
// but if a record in the middle was damaged on disk, the acknowledged
// records after it are still found, and damaged reports it.
func scanSegment(path string, fn func(journalRecord) error) (damaged bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	size := st.Size()
	var buf []byte
	for off := int64(0); off < size; {
		r, end, ok, err := readRecord(f, off, size, &buf)
		if err != nil {
			return damaged, err
		}
		if !ok {
			next, err := resync(f, off, size, &buf)
			if err != nil || next < 0 {
				return damaged, err
			}
			damaged, off = true, next
			continue
		}
		r.segment = path
		if err := fn(r); err != nil {
			return damaged, err
		}
		off = end
	}
	return damaged, nil
}

// readRecord reads and checks the record at off; ok is false if there is
// no whole, intact record there.
func readRecord(f *os.File, off, size int64, buf *[]byte) (r journalRecord, end int64, ok bool, err error) {
	var h [recHeaderLen]byte
	if size-off < recHeaderLen {
		return r, 0, false, nil
	}
	if _, err := f.ReadAt(h[:], off); err != nil {
		return r, 0, false, err
	}
	envLen := int64(binary.LittleEndian.Uint32(h[8:]))
	bodyLen := int64(binary.LittleEndian.Uint32(h[12:]))
	end = off + recHeaderLen + envLen + bodyLen
	if string(h[:4]) != recMagic || h[5] != recVersion || (h[4] != kindLive && h[4] != kindReleased) || end > size {
		return r, 0, false, nil
	}
	n := int(envLen + bodyLen)
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err := f.ReadAt(b, off+recHeaderLen); err != nil {
		return r, 0, false, err
	}
	crc := crc32.Update(0, castagnoli, h[5:16])
	crc = crc32.Update(crc, castagnoli, h[20:36])
	crc = crc32.Update(crc, castagnoli, b)
	if crc != binary.LittleEndian.Uint32(h[16:]) {
		return r, 0, false, nil
	}
	env, err := unmarshalEnvelope(b[:envLen])
	if err != nil || env.ID != string(h[20:36]) {
		return r, 0, false, nil
	}
	return journalRecord{off: off, live: h[4] == kindLive, env: env,
		bodyOff: off + recHeaderLen + envLen, bodyLen: bodyLen}, end, true, nil
}

// resync returns the offset of the first intact record after off, or -1.
func resync(f *os.File, off, size int64, buf *[]byte) (int64, error) {
	rest := make([]byte, size-off-1)
	if _, err := f.ReadAt(rest, off+1); err != nil {
		return -1, err
	}
	for i := 0; ; {
		k := bytes.Index(rest[i:], []byte(recMagic))
		if k < 0 {
			return -1, nil
		}
		at := off + 1 + int64(i+k)
		if _, _, ok, err := readRecord(f, at, size, buf); err != nil || ok {
			return at, err
		}
		i += k + 1
	}
}

// findInJournal looks for id's live record; nil if there is none.
func (s *Spool) findInJournal(id string) (*journalRecord, error) {
	var found *journalRecord
	_, err := scanJournal(filepath.Join(s.dir, journalDirName), func(r journalRecord) error {
		if r.env.ID == id {
			if r.live {
				found = &r
			} else {
				found = nil
			}
		}
		return nil
	})
	return found, err
}

// recordBody opens the body of a record found on disk.
func recordBody(r *journalRecord) (io.ReadCloser, error) {
	f, err := os.Open(r.segment)
	if err != nil {
		return nil, err
	}
	return &segmentReader{SectionReader: io.NewSectionReader(f, r.bodyOff, r.bodyLen), done: func() { f.Close() }}, nil
}

// recoverJournal materialises every live record that has no classic copy
// yet and deletes the segments: run by the journal's owner before it
// writes, or by a process that has the spool to itself. A crash in the
// middle leaves the segments, and the next run skips what it already did.
func (s *Spool) recoverJournal() error {
	dir := filepath.Join(s.dir, journalDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	n := 0
	bad, err := scanJournal(dir, func(r journalRecord) error {
		if !r.live {
			return nil
		}
		if _, err := os.Lstat(s.envPath(r.env.ID)); err == nil {
			return nil // materialised before the crash, release not durable
		}
		body, err := recordBody(&r)
		if err != nil {
			return err
		}
		defer body.Close()
		if _, err := s.putClassic(r.env, body, false); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool: journal recovery: %w", err)
	}
	if n > 0 {
		s.log.Info("moved messages left in the journal by a crash to the queue", "messages", n)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), segmentExt) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if slices.Contains(bad, p) {
			// Its intact records are materialised above; the damaged
			// one may have been acknowledged. Keep it for the operator.
			dst := filepath.Join(s.dir, "corrupt", e.Name())
			s.log.Warn("journal segment with a damaged record kept for inspection", "path", dst)
			if err := os.Rename(p, dst); err != nil {
				return fmt.Errorf("spool: journal recovery: %w", err)
			}
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("spool: journal recovery: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	return nil
}

// CheckJournal reports the first journal segment of the spool at dir that
// holds anything but intact records: a torn or damaged record, or bytes
// after the last record. Meant for a spool no message is being written to.
func CheckJournal(dir string) error {
	jdir := filepath.Join(dir, journalDirName)
	ents, err := os.ReadDir(jdir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), segmentExt) {
			continue
		}
		p := filepath.Join(jdir, e.Name())
		var end int64
		damaged, err := scanSegment(p, func(r journalRecord) error {
			end = r.bodyOff + r.bodyLen
			return nil
		})
		if err != nil {
			return err
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		if damaged || end != st.Size() {
			return fmt.Errorf("%s: %d bytes, intact records up to %d (damaged: %v)", p, st.Size(), end, damaged)
		}
	}
	return nil
}
