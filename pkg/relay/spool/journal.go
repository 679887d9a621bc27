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

	"github.com/smgctl/smgctl/pkg/safeio"
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
// A segment starts with a header, little-endian:
//
//	0  magic "SMGS"
//	4  version 1
//	5  three zero bytes
//	8  acknowledged length (uint64)
//	16 CRC-32C of bytes 4..15
//	20 twelve zero bytes; the first record follows at 32
//
// The acknowledged length is the segment's length when a completed
// fdatasync began: every byte below it was acknowledged to someone. It is
// rewritten in place after sync rounds, at most every ackNoteInterval
// (no sync of its own: the next round makes it durable, and a kill -9
// does not lose it from the page cache), so recovery can tell a torn tail
// (bytes past it: never acknowledged, dropped quietly) from a segment cut
// or damaged below it (acknowledged mail lost: kept in corrupt/ and
// reported). It may lag the newest ackNoteInterval of mail, whose loss
// recovery cannot see. Segments written before the header existed start
// with a record and are read as before.
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
// the segment is kept in corrupt/ for the operator, as is a segment
// shorter than its acknowledged length.

const (
	journalDirName = "journal"
	segmentExt     = ".seg"
	recMagic       = "SMGJ"
	recHeaderLen   = 36
	recKindOff     = 4
	kindLive       = 'P'
	kindReleased   = 'X'
	recVersion     = 1
	segMagic       = "SMGS"
	segVersion     = 1
	segHeaderLen   = 32
	segAckedOff    = 8 // the acknowledged length and its CRC

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
	// synced is the length covered by the last completed fdatasync;
	// acked is what the header says (noteAcked).
	synced, acked int64
	live          int  // records not yet released
	pins          int  // open Body readers and sync rounds using f
	dead          bool // unlinked; f is closed when the last pin goes
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

	commit *safeio.GroupCommit[struct{}] // fdatasyncs of the segments
	bufs   sync.Pool

	// noted is when noteAcked last wrote headers; noteTimer is set while
	// a later write is scheduled.
	noted     time.Time
	noteTimer bool
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
	j.commit = &safeio.GroupCommit[struct{}]{Run: j.syncWrittenSegments}
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
	j.noted = time.Time{}
	j.noteAcked()
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
	if err := j.commit.Do(); err != nil {
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
	if j.cur == nil || (j.cur.size > segHeaderLen && j.cur.size+int64(len(rec)) > j.segSize) {
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
	// The header is durable with the first record's fdatasync.
	if _, err := f.WriteAt(segmentHeader(segHeaderLen), 0); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	// The segment's name must be durable before any record in it is
	// acknowledged; fdatasync on the file does not promise that.
	if err := safeio.SyncDir(j.dir); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	old := j.cur
	sg := &segment{name: name, f: f, size: segHeaderLen, synced: segHeaderLen, acked: segHeaderLen}
	j.segs = append(j.segs, sg)
	j.cur = sg
	if old != nil {
		j.maybeDrop(old)
	}
	return nil
}

// syncWrittenSegments is a group commit round: fdatasync every segment
// written to since the last round began.
func (j *journal) syncWrittenSegments([]struct{}) error {
	j.mu.Lock()
	var segs []*segment
	var sizes []int64
	for _, sg := range j.segs {
		if sg.dirty {
			sg.dirty = false
			sg.pins++
			segs = append(segs, sg)
			sizes = append(sizes, sg.size)
		}
	}
	j.mu.Unlock()
	var err error
	synced := make([]bool, len(segs))
	for i, sg := range segs {
		if serr := safeio.Datasync(sg.f); serr != nil {
			if err == nil {
				err = fmt.Errorf("%s: %w", sg.name, serr)
			}
			continue
		}
		synced[i] = true
	}
	j.mu.Lock()
	for i, sg := range segs {
		if synced[i] {
			sg.synced = max(sg.synced, sizes[i])
		}
		if err != nil && sg == j.cur {
			// After a failed fsync Linux may have dropped the dirty
			// pages: nothing more is trusted to this file.
			j.abandon(sg)
		}
		j.unpin(sg)
	}
	j.noteAcked()
	j.mu.Unlock()
	return err
}

// ackNoteInterval bounds how often the headers' acknowledged lengths are
// rewritten. Rewriting after every sync round would add a page to every
// fdatasync; this way it costs at most a few page writes a second, and
// the header lags the acknowledged end by at most this much traffic.
const ackNoteInterval = 50 * time.Millisecond

// noteAcked writes each segment's synced length to its header, at most
// once per ackNoteInterval, scheduling a later write for what it skips.
// The write has no fdatasync of its own: the next round makes it durable,
// and a killed process does not lose it from the page cache. Called with
// j.mu held.
func (j *journal) noteAcked() {
	if wait := ackNoteInterval - time.Since(j.noted); wait > 0 {
		if !j.noteTimer {
			j.noteTimer = true
			time.AfterFunc(wait, func() {
				j.mu.Lock()
				j.noteTimer = false
				j.noteAcked()
				j.mu.Unlock()
			})
		}
		return
	}
	j.noted = time.Now()
	for _, sg := range j.segs {
		if sg.synced <= sg.acked {
			continue
		}
		if _, err := sg.f.WriteAt(segmentHeader(sg.synced)[segAckedOff:segAckedOff+12], segAckedOff); err != nil {
			// The records are durable; only recovery's check of this
			// segment is weaker.
			j.log.Warn("spool: journal: cannot note the acknowledged length", "segment", sg.name, "err", err)
			continue
		}
		sg.acked = sg.synced
	}
}

// segmentHeader is a segment's header saying acked bytes are acknowledged.
func segmentHeader(acked int64) []byte {
	h := make([]byte, segHeaderLen)
	copy(h, segMagic)
	h[4] = segVersion
	binary.LittleEndian.PutUint64(h[segAckedOff:], uint64(acked))
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[4:16], castagnoli))
	return h
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
		err = j.commit.Do()
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
// writing, and are skipped; bad lists the segments that lost acknowledged
// bytes (see segmentScan.Lost).
func scanJournal(dir string, fn func(journalRecord) error) (bad []segmentScan, err error) {
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
		sc, err := scanSegment(p, fn)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted by the relay meanwhile
		}
		if err != nil {
			return bad, err
		}
		if sc.Lost() {
			bad = append(bad, sc)
		}
	}
	return bad, nil
}

// segmentScan is what a scan found in one segment file.
type segmentScan struct {
	path string
	size int64
	// acked is the header's acknowledged length; -1 when unknown (a
	// segment from before the header, or a damaged header).
	acked int64
	// badHeader: the file is longer than a header but has no readable
	// one, so what it held cannot be accounted for.
	badHeader bool
	// records and live count the intact records.
	records, live int
	// end is where the last intact record ends.
	end int64
	// unaccounted counts acknowledged bytes that are not part of an
	// intact record: cut off, or damaged in place.
	unaccounted int64
}

// Lost reports whether acknowledged records may be missing. A torn tail
// past the acknowledged length (a crash before the sync) is not a loss.
func (sc segmentScan) Lost() bool { return sc.unaccounted > 0 || sc.badHeader }

// reason says in words what is wrong with a segment that Lost.
func (sc segmentScan) reason() string {
	switch {
	case sc.badHeader:
		return "segment header damaged; its acknowledged length is unknown"
	case sc.acked >= 0 && sc.size < sc.acked:
		return fmt.Sprintf("segment cut short: %d bytes, %d were acknowledged", sc.size, sc.acked)
	default:
		return fmt.Sprintf("damaged records: %d acknowledged bytes are not intact records", sc.unaccounted)
	}
}

// scanSegment scans one segment. At a record that does not check out it
// looks for the next one that does: nothing is found after a torn tail,
// but if a record in the middle was damaged on disk, the acknowledged
// records after it are still found. The bytes in between, and a tail
// short of the acknowledged length, are counted as unaccounted.
func scanSegment(path string, fn func(journalRecord) error) (sc segmentScan, err error) {
	sc = segmentScan{path: path, acked: -1}
	f, err := os.Open(path)
	if err != nil {
		return sc, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return sc, err
	}
	size := st.Size()
	sc.size = size
	start, headerOK, err := readSegmentHeader(f, size, &sc.acked)
	if err != nil {
		return sc, err
	}
	sc.end = start
	// gap notes bytes from sc.end to to that are not an intact record.
	// Below the acknowledged length they were acknowledged; without a
	// header, only a gap followed by an intact record (not a torn tail)
	// is known to be damage.
	gap := func(to int64, tail bool) {
		switch {
		case sc.acked >= 0:
			sc.unaccounted += max(0, min(to, sc.acked)-sc.end)
		case !tail:
			sc.unaccounted += to - sc.end
		}
	}
	var buf []byte
	var covered int64 // bytes in intact records
	for off := start; off < size; {
		r, end, ok, err := readRecord(f, off, size, &buf)
		if err != nil {
			return sc, err
		}
		if !ok {
			next, err := resync(f, off, size, &buf)
			if err != nil {
				return sc, err
			}
			if next < 0 {
				break
			}
			off = next
			continue
		}
		if off > sc.end {
			gap(off, false)
		}
		r.segment = path
		if err := fn(r); err != nil {
			return sc, err
		}
		sc.records++
		if r.live {
			sc.live++
		}
		covered += end - off
		off, sc.end = end, end
	}
	gap(max(size, sc.acked), true)
	if sc.badHeader = !headerOK; sc.badHeader {
		// Nothing says where acknowledged bytes end: all but the
		// intact records are unaccounted for.
		sc.unaccounted = size - covered
	}
	return sc, nil
}

// readSegmentHeader reads a segment's header: start is where its records
// begin. A segment from before the header starts with a record; one no
// longer than a header was created but nothing in it acknowledged. ok is
// false when a longer file has neither: its header is damaged.
func readSegmentHeader(f *os.File, size int64, acked *int64) (start int64, ok bool, err error) {
	var h [segHeaderLen]byte
	n, err := f.ReadAt(h[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return 0, false, err
	}
	switch {
	case n >= 4 && string(h[:4]) == recMagic:
		return 0, true, nil
	case n == segHeaderLen && string(h[:4]) == segMagic && h[4] == segVersion &&
		crc32.Checksum(h[4:16], castagnoli) == binary.LittleEndian.Uint32(h[16:]):
		*acked = int64(binary.LittleEndian.Uint64(h[segAckedOff:]))
		return segHeaderLen, true, nil
	case size <= segHeaderLen:
		return size, true, nil // created, header not yet written
	}
	return 0, false, nil
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
// A segment that lost acknowledged bytes is never deleted: it goes to
// corrupt/, with an error in the log, and is reported (Damage) until an
// operator removes it.
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
		if i := slices.IndexFunc(bad, func(sc segmentScan) bool { return sc.path == p }); i >= 0 {
			// Its intact records are materialised above; what is
			// missing was acknowledged. Keep it for the operator.
			sc := bad[i]
			dst := filepath.Join(s.dir, corruptDirName, e.Name())
			if err := os.Rename(p, dst); err != nil {
				return fmt.Errorf("spool: journal recovery: %w", err)
			}
			sc.path = dst
			s.log.Error("journal segment lost acknowledged mail; kept for inspection",
				"path", dst, "reason", sc.reason(), "records_recovered", sc.records,
				"live_recovered", sc.live, "bytes_unaccounted", sc.unaccounted)
			s.recovered = append(s.recovered, sc.damage())
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("spool: journal recovery: %w", err)
		}
	}
	if err := safeio.SyncDir(dir); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if len(bad) > 0 {
		if err := safeio.SyncDir(filepath.Join(s.dir, corruptDirName)); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	return nil
}

// JournalDamage describes a journal segment kept in corrupt/ because it
// held less than was acknowledged: mail that got a 250 may be missing.
// Its JSON form is part of `smgctl queue list --output json`.
type JournalDamage struct {
	// Segment is the file's path in corrupt/.
	Segment string `json:"segment"`
	Reason  string `json:"reason"`
	// RecordsRecovered counts the intact records found (their live
	// messages are back in the queue).
	RecordsRecovered int `json:"records_recovered"`
	// BytesUnaccounted counts acknowledged bytes that are not part of an
	// intact record; when the header itself is damaged, every byte that
	// is not.
	BytesUnaccounted int64 `json:"bytes_unaccounted"`
}

func (sc segmentScan) damage() JournalDamage {
	return JournalDamage{Segment: sc.path, Reason: sc.reason(), RecordsRecovered: sc.records, BytesUnaccounted: sc.unaccounted}
}

// RecoveredDamage is what this process's recovery moved to corrupt/ when
// it opened the spool (nil when it found nothing, or did not recover).
func (s *Spool) RecoveredDamage() []JournalDamage { return slices.Clone(s.recovered) }

// Damage inspects the journal segments in corrupt/: every one is reported
// (a segment put there by hand, or whose loss cannot be measured, with
// what can be said), until the operator removes it.
func (s *Spool) Damage() ([]JournalDamage, error) {
	dir := filepath.Join(s.dir, corruptDirName)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var out []JournalDamage
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), segmentExt) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		sc, err := scanSegment(p, func(journalRecord) error { return nil })
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// Still there, and still to be dealt with.
			out = append(out, JournalDamage{Segment: p, Reason: "cannot be read: " + err.Error()})
			continue
		}
		d := sc.damage()
		if !sc.Lost() {
			d.Reason = "kept in corrupt/; no loss measured"
		}
		out = append(out, d)
	}
	return out, nil
}

// CheckJournal reports the first journal segment of the spool at dir that
// holds anything but its header and intact records: a torn or damaged
// record, or bytes after the last record. Meant for a spool no message is
// being written to.
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
		sc, err := scanSegment(p, func(journalRecord) error { return nil })
		if err != nil {
			return err
		}
		if sc.Lost() || sc.end != sc.size {
			return fmt.Errorf("%s: %d bytes, intact records up to %d, acknowledged %d (%d bytes unaccounted)",
				p, sc.size, sc.end, sc.acked, sc.unaccounted)
		}
	}
	return nil
}
