package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func openRelaySpool(t testing.TB, dir string) *Spool {
	t.Helper()
	s, err := OpenRelay(dir, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	var segs []string
	for _, n := range dirNames(t, filepath.Join(dir, journalDirName)) {
		if strings.HasSuffix(n, segmentExt) {
			segs = append(segs, n)
		}
	}
	return segs
}

func readBody(t testing.TB, s *Spool, id string) string {
	t.Helper()
	rc, err := s.Body(id)
	if err != nil {
		t.Fatalf("Body(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func put(t testing.TB, s *Spool, body string) *Envelope {
	t.Helper()
	env := sampleEnvelope()
	if err := s.Put(env, strings.NewReader(body)); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return env
}

// A small message in the relay goes to the journal, not to files, and both
// the relay and another process (`smgctl queue`) see it; the other process
// sees it locked by the relay.
func TestJournalPutIsSeenEverywhere(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	env := put(t, s, "Subject: hi\r\n\r\nbody\r\n")
	if n := dirNames(t, s.queueDir); len(n) != 0 {
		t.Fatalf("queue/ holds %v; a small message belongs in the journal", n)
	}
	if n := segments(t, dir); len(n) != 1 {
		t.Fatalf("journal segments: %v", n)
	}
	if _, err := OpenRelay(dir, nil); !errors.Is(err, ErrRelayRunning) {
		t.Fatalf("second OpenRelay: %v, want ErrRelayRunning", err)
	}

	other := openSpool(t, dir) // another process's view: no journal of its own
	for name, sp := range map[string]*Spool{"relay": s, "other": other} {
		ids, err := sp.List()
		if err != nil || !slices.Equal(ids, []string{env.ID}) {
			t.Fatalf("%s: List = %v, %v", name, ids, err)
		}
		got, err := sp.Envelope(env.ID)
		if err != nil {
			t.Fatalf("%s: Envelope: %v", name, err)
		}
		if got.From != env.From || got.Size != int64(len("Subject: hi\r\n\r\nbody\r\n")) || len(got.Recipients) != 2 {
			t.Errorf("%s: envelope %+v", name, got)
		}
		if b := readBody(t, sp, env.ID); b != "Subject: hi\r\n\r\nbody\r\n" {
			t.Errorf("%s: body %q", name, b)
		}
	}
	// The relay's copy is not the caller's to change.
	got, _ := s.Envelope(env.ID)
	got.Recipients[0].State = Delivered
	if again, _ := s.Envelope(env.ID); again.Recipients[0].State != Pending {
		t.Error("changing a returned envelope changed the spool")
	}

	if _, err := other.TryLock(env.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("other process TryLock on a journal message: %v, want ErrLocked", err)
	}
	unlock, err := s.TryLock(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.TryLock(env.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("second TryLock in the relay: %v, want ErrLocked", err)
	}
	unlock()

	if err := s.Remove(env.ID); err != nil {
		t.Fatal(err)
	}
	for name, sp := range map[string]*Spool{"relay": s, "other": other} {
		if ids, _ := sp.List(); len(ids) != 0 {
			t.Errorf("%s: List after Remove = %v", name, ids)
		}
		if _, err := sp.Envelope(env.ID); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: Envelope after Remove: %v", name, err)
		}
		if _, err := sp.TryLock(env.ID); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: TryLock after Remove: %v", name, err)
		}
	}
}

func TestJournalLargeBodyGetsFiles(t *testing.T) {
	s := openRelaySpool(t, t.TempDir())
	body := strings.Repeat("z", DefaultMaxJournalBody+1)
	env := put(t, s, body)
	if n := dirNames(t, s.queueDir); !slices.Equal(n, []string{env.ID + ".eml", env.ID + ".json"}) {
		t.Fatalf("queue/ = %v", n)
	}
	if b := readBody(t, s, env.ID); b != body {
		t.Errorf("body of %d bytes back, want %d", len(b), len(body))
	}
	if got, _ := s.Envelope(env.ID); got.Size != int64(len(body)) {
		t.Errorf("Size %d", got.Size)
	}
}

// Update moves a journal message to its own files, under the lock the
// caller holds: another process cannot take the message until the caller
// lets go, and a waiter in the relay gets the files' lock.
func TestJournalUpdateMovesToFiles(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	other := openSpool(t, dir)
	env := put(t, s, "deferred body\r\n")

	unlock, err := s.Lock(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error)
	go func() {
		u, err := s.Lock(env.ID) // waits for the holder
		if err == nil {
			u()
		}
		waiter <- err
	}()
	env.Recipients[0].State = Delivered
	env.Recipients[1].Attempts = 1
	env.Recipients[1].NextAttempt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	if n := dirNames(t, s.queueDir); !slices.Equal(n, []string{env.ID + ".eml", env.ID + ".json"}) {
		t.Fatalf("queue/ after Update = %v", n)
	}
	if u, err := other.TryLock(env.ID); !errors.Is(err, ErrLocked) {
		t.Errorf("other process TryLock while the relay holds the moved message: %v", err)
		if err == nil {
			u()
		}
	}
	select {
	case err := <-waiter:
		t.Fatalf("waiter got the lock while it was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	if err := <-waiter; err != nil {
		t.Fatalf("waiter: %v", err)
	}

	for name, sp := range map[string]*Spool{"relay": s, "other": other} {
		got, err := sp.Envelope(env.ID)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Recipients[0].State != Delivered || got.Recipients[1].Attempts != 1 {
			t.Errorf("%s: envelope after Update: %+v", name, got.Recipients)
		}
		if b := readBody(t, sp, env.ID); b != "deferred body\r\n" {
			t.Errorf("%s: body %q", name, b)
		}
		if ids, _ := sp.List(); !slices.Equal(ids, []string{env.ID}) {
			t.Errorf("%s: List = %v", name, ids)
		}
	}
	u, err := other.TryLock(env.ID)
	if err != nil {
		t.Fatalf("other process after the relay let go: %v", err)
	}
	u()
	// Released in the journal: a restart must not bring the old envelope back.
	s.Close()
	s2 := openRelaySpool(t, dir)
	if got, _ := s2.Envelope(env.ID); got == nil || got.Recipients[0].State != Delivered {
		t.Errorf("after restart: %+v", got)
	}
	if n := segments(t, dir); len(n) != 0 {
		t.Errorf("segments after recovery: %v", n)
	}
}

// Whatever the relay left in its journal — live, removed, moved — comes
// back exactly once when the spool is next opened, by the next relay or
// by another process that has the spool to itself.
func TestJournalRecovery(t *testing.T) {
	for _, reopen := range []string{"relay", "other"} {
		t.Run(reopen, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenRelay(dir, testLog(t))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			var lostRelease *journalEntry // a move whose release a crash undid
			for i := range 50 {
				body := fmt.Sprintf("message %d\r\n%s", i, strings.Repeat("b", i*97))
				env := put(t, s, body)
				switch {
				case i%5 == 0:
					if err := s.Remove(env.ID); err != nil {
						t.Fatal(err)
					}
				case i%7 == 0:
					env.Recipients[0].Attempts = 3
					if lostRelease == nil {
						lostRelease = s.journal.lookup(env.ID)
					}
					if err := s.Update(env); err != nil {
						t.Fatal(err)
					}
					want[env.ID] = body
				default:
					want[env.ID] = body
				}
			}
			s.Close() // like a crash: live records stay in the journal
			f, err := os.OpenFile(filepath.Join(dir, journalDirName, lostRelease.seg.name+segmentExt), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt([]byte{kindLive}, lostRelease.off+recKindOff)
			f.Close()

			var s2 *Spool
			if reopen == "relay" {
				s2 = openRelaySpool(t, dir)
			} else {
				s2 = openSpool(t, dir)
			}
			ids, err := s2.List()
			if err != nil {
				t.Fatal(err)
			}
			if len(ids) != len(want) {
				t.Fatalf("%d messages after recovery, want %d", len(ids), len(want))
			}
			for id, body := range want {
				if b := readBody(t, s2, id); b != body {
					t.Errorf("%s: body %q", id, b)
				}
				env, err := s2.Envelope(id)
				if err != nil {
					t.Fatal(err)
				}
				if env.Size != int64(len(body)) {
					t.Errorf("%s: size %d", id, env.Size)
				}
				if id == lostRelease.env.ID && env.Recipients[0].Attempts != 3 {
					t.Errorf("%s: the journal's old envelope replaced the moved one", id)
				}
			}
			if n := segments(t, dir); len(n) != 0 {
				t.Errorf("segments after recovery: %v", n)
			}
			if q := dirNames(t, s2.queueDir); len(q) != 2*len(want) {
				t.Errorf("queue/ holds %d files for %d messages", len(q), len(want))
			}
		})
	}
}

// damageLab fills one segment with acknowledged messages, "crashes" (the
// relay goes away without releasing anything), lets harm change the
// segment file, and reopens the spool as the next relay, with its log.
type damageLab struct {
	dir     string
	envs    []*Envelope
	entries []*journalEntry
	seg     string // the segment's path
	size    int64  // its acknowledged length
	log     bytes.Buffer
	s       *Spool // the spool reopened after harm
}

func newDamageLab(t *testing.T, n int, harm func(l *damageLab, f *os.File)) *damageLab {
	t.Helper()
	l := &damageLab{dir: t.TempDir()}
	s, err := OpenRelay(l.dir, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		env := put(t, s, fmt.Sprintf("body %d %s", i, strings.Repeat("q", 500)))
		l.envs = append(l.envs, env)
		l.entries = append(l.entries, s.journal.lookup(env.ID))
	}
	sg := l.entries[0].seg
	l.seg, l.size = filepath.Join(l.dir, journalDirName, sg.name+segmentExt), sg.size
	s.Close()
	f, err := os.OpenFile(l.seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	harm(l, f)
	f.Close()
	log := slog.New(slog.NewTextHandler(&l.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if l.s, err = OpenRelay(l.dir, log); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.s.Close() })
	t.Logf("log after reopening:\n%s", l.log.String())
	return l
}

// queued is the IDs in the reopened spool.
func (l *damageLab) queued(t *testing.T) []string {
	t.Helper()
	ids, err := l.s.List()
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkReported checks that the loss is reported everywhere: an ERROR with
// the counts, the segment in corrupt/ (not deleted), RecoveredDamage and
// Damage (what `smgctl queue list` shows) saying the same.
func (l *damageLab) checkReported(t *testing.T, records int, unaccounted int64) {
	t.Helper()
	name := filepath.Base(l.seg)
	if c := dirNames(t, filepath.Join(l.dir, corruptDirName)); !slices.Equal(c, []string{name}) {
		t.Errorf("corrupt/ = %v, want the segment %s", c, name)
	}
	if n := segments(t, l.dir); len(n) != 0 {
		t.Errorf("journal/ still holds %v", n)
	}
	logs := l.log.String()
	for _, want := range []string{"level=ERROR", "lost acknowledged mail",
		fmt.Sprintf("records_recovered=%d", records), fmt.Sprintf("bytes_unaccounted=%d", unaccounted)} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	want := JournalDamage{Segment: filepath.Join(l.dir, corruptDirName, name), RecordsRecovered: records, BytesUnaccounted: unaccounted}
	got := l.s.RecoveredDamage()
	if len(got) != 1 || got[0].Segment != want.Segment || got[0].RecordsRecovered != records || got[0].BytesUnaccounted != unaccounted {
		t.Errorf("RecoveredDamage = %+v, want %+v", got, want)
	}
	other := openSpool(t, l.dir) // `smgctl queue`, later
	d, err := other.Damage()
	if err != nil || len(d) != 1 || d[0].Segment != want.Segment || d[0].BytesUnaccounted != unaccounted || d[0].Reason == "" {
		t.Errorf("Damage = %+v, %v; want %+v", d, err, want)
	}
}

// A segment cut in the middle after a crash (the hostile test: 12,000 of
// 25,198 bytes) lost messages that got a 250: what is left is recovered,
// and the loss is an error, counted, and the segment kept.
func TestJournalTruncatedInTheMiddle(t *testing.T) {
	var cut int64
	l := newDamageLab(t, 40, func(l *damageLab, f *os.File) {
		cut = l.size / 2
		if err := f.Truncate(cut); err != nil {
			t.Fatal(err)
		}
	})
	// Records wholly below the cut survive.
	var want []string
	var end int64
	for i, e := range l.entries {
		if recEnd := e.bodyOff + e.bodyLen; recEnd <= cut {
			want = append(want, l.envs[i].ID)
			end = recEnd
		}
	}
	if got := l.queued(t); !slices.Equal(got, want) {
		t.Fatalf("after recovery %d messages, want the %d before the cut", len(got), len(want))
	}
	l.checkReported(t, len(want), l.size-end)
	if !strings.Contains(l.log.String(), fmt.Sprintf("cut short: %d bytes, %d were acknowledged", cut, l.size)) {
		t.Error("the log does not say the segment was cut short")
	}
}

// A record damaged in place (a bad disk) costs only itself: the records
// after it are recovered, and the damaged bytes are reported.
func TestJournalDamagedRecordInTheMiddle(t *testing.T) {
	l := newDamageLab(t, 4, func(l *damageLab, f *os.File) {
		if _, err := f.WriteAt([]byte("#"), l.entries[1].bodyOff+3); err != nil {
			t.Fatal(err)
		}
	})
	if got, want := l.queued(t), []string{l.envs[0].ID, l.envs[2].ID, l.envs[3].ID}; !slices.Equal(got, want) {
		t.Fatalf("after recovery %v, want %v", got, want)
	}
	if b := readBody(t, l.s, l.envs[2].ID); !strings.HasPrefix(b, "body 2 ") {
		t.Errorf("record after the damaged one: %q", b)
	}
	e1 := l.entries[1]
	l.checkReported(t, 3, e1.bodyOff+e1.bodyLen-e1.off)
}

// A torn tail — a record being appended when the relay died, never
// synced, so never acknowledged — is normal after a crash: dropped
// quietly, every acknowledged message recovered, nothing kept or reported.
func TestJournalTornTailIsQuiet(t *testing.T) {
	l := newDamageLab(t, 4, func(l *damageLab, f *os.File) {
		var rec bytes.Buffer
		env := sampleEnvelope()
		env.ID = "0PGLB2HLRD957MFG"
		envJSON, _ := marshalEnvelope(env)
		appendRecord(&rec, env.ID, envJSON, []byte(strings.Repeat("t", 900)))
		if _, err := f.WriteAt(rec.Bytes()[:rec.Len()/2], l.size); err != nil {
			t.Fatal(err)
		}
	})
	var want []string
	for _, env := range l.envs {
		want = append(want, env.ID)
	}
	if got := l.queued(t); !slices.Equal(got, want) {
		t.Fatalf("after recovery %v, want %v", got, want)
	}
	if c := dirNames(t, filepath.Join(l.dir, corruptDirName)); len(c) != 0 {
		t.Errorf("corrupt/ = %v after a torn tail", c)
	}
	if n := segments(t, l.dir); len(n) != 0 {
		t.Errorf("segments after recovery: %v", n)
	}
	if d := l.s.RecoveredDamage(); len(d) != 0 {
		t.Errorf("RecoveredDamage = %+v", d)
	}
	if logs := l.log.String(); strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "level=WARN") {
		t.Errorf("a torn tail was reported:\n%s", logs)
	}
}

// The header's acknowledged length follows the syncs on its own (no
// Close), at most ackNoteInterval behind: what a kill -9 leaves on disk.
func TestJournalHeaderFollowsSyncs(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	env := put(t, s, "one")
	put(t, s, "two")
	sg := s.journal.lookup(env.ID).seg
	path := filepath.Join(dir, journalDirName, sg.name+segmentExt)
	s.journal.mu.Lock()
	size := sg.size
	s.journal.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		sc, err := scanSegment(path, func(journalRecord) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if sc.acked == size {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("header says %d acknowledged, %d were", sc.acked, size)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A segment whose header is unreadable (here: overwritten with zeros, as
// a bad block reads) cannot be accounted for, even with no intact record
// left: it is kept and reported, not deleted.
func TestJournalUnreadableHeaderIsKept(t *testing.T) {
	l := newDamageLab(t, 3, func(l *damageLab, f *os.File) {
		if _, err := f.WriteAt(make([]byte, l.size), 0); err != nil {
			t.Fatal(err)
		}
	})
	if got := l.queued(t); len(got) != 0 {
		t.Fatalf("after recovery %v", got)
	}
	if c := dirNames(t, filepath.Join(l.dir, corruptDirName)); !slices.Equal(c, []string{filepath.Base(l.seg)}) {
		t.Errorf("corrupt/ = %v", c)
	}
	if d := l.s.RecoveredDamage(); len(d) != 1 || !strings.Contains(d[0].Reason, "header damaged") || d[0].BytesUnaccounted != l.size {
		t.Errorf("RecoveredDamage = %+v", d)
	}
	if !strings.Contains(l.log.String(), "level=ERROR") {
		t.Errorf("not an error:\n%s", l.log.String())
	}
}

// A segment written before the header existed (it starts with a record)
// is still recovered.
func TestJournalSegmentWithoutHeader(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, journalDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	var seg bytes.Buffer
	env := sampleEnvelope()
	env.ID = "0PGLB2HLRD957MFG"
	envJSON, _ := marshalEnvelope(env)
	appendRecord(&seg, env.ID, envJSON, []byte("old format\r\n"))
	if err := os.WriteFile(filepath.Join(dir, journalDirName, "00000000000000000001"+segmentExt), seg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openRelaySpool(t, dir)
	if b := readBody(t, s, env.ID); b != "old format\r\n" {
		t.Errorf("body %q", b)
	}
	if d := s.RecoveredDamage(); len(d) != 0 {
		t.Errorf("RecoveredDamage = %+v", d)
	}
}

// Segments are deleted once nothing in them is live; a full one rotates.
func TestJournalSegmentsAreReclaimed(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	s.journal.segSize = 8 << 10
	var ids []string
	for range 40 {
		ids = append(ids, put(t, s, strings.Repeat("r", 1000)).ID)
	}
	if n := segments(t, dir); len(n) < 4 {
		t.Fatalf("40 KB in 8 KB segments made %d segments", len(n))
	}
	for _, id := range ids {
		if err := s.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	if n := segments(t, dir); len(n) != 1 {
		t.Errorf("after removing everything: %v, want only the current segment", n)
	}
	if err := CheckJournal(dir); err != nil {
		t.Error(err)
	}
}

// Many sessions at once: every Put is durable and readable, and they share
// syncs.
func TestJournalConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	var rounds int
	var mu sync.Mutex
	run := s.journal.commit.Run
	s.journal.commit.Run = func(none []struct{}) error {
		mu.Lock()
		rounds++
		mu.Unlock()
		return run(none)
	}
	const sessions, each = 16, 50
	var wg sync.WaitGroup
	ids := make([][]string, sessions)
	for i := range sessions {
		wg.Go(func() {
			for k := range each {
				env := sampleEnvelope()
				if err := s.Put(env, strings.NewReader(fmt.Sprintf("%d/%d", i, k))); err != nil {
					t.Error(err)
					return
				}
				ids[i] = append(ids[i], env.ID)
			}
		})
	}
	wg.Wait()
	for i := range sessions {
		for k, id := range ids[i] {
			if b := readBody(t, s, id); b != fmt.Sprintf("%d/%d", i, k) {
				t.Fatalf("%s: %q", id, b)
			}
		}
	}
	t.Logf("%d Puts, %d sync rounds", sessions*each, rounds)
	if rounds >= sessions*each {
		t.Errorf("%d sync rounds for %d Puts: no group commit", rounds, sessions*each)
	}
}

// FuzzScanSegment: whatever a segment file holds (a torn write, a bad
// disk, a hostile edit), the scan neither panics nor reports a record
// outside the file, and a valid record before the garbage is still found.
func FuzzScanSegment(f *testing.F) {
	var good bytes.Buffer
	env := sampleEnvelope()
	env.ID = "0PGLB2HLRD957MFG"
	envJSON, _ := marshalEnvelope(env)
	appendRecord(&good, env.ID, envJSON, []byte("hello\r\n"))
	f.Add([]byte{})
	f.Add([]byte(recMagic))
	f.Add(good.Bytes()[:40])
	f.Add(append(append([]byte{}, good.Bytes()...), good.Bytes()[:50]...))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, tail []byte) {
		p := filepath.Join(dir, "x"+segmentExt)
		data := append(append([]byte{}, good.Bytes()...), tail...)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		found := false
		_, err := scanSegment(p, func(r journalRecord) error {
			if r.bodyOff < recHeaderLen || r.bodyOff+r.bodyLen > int64(len(data)) {
				t.Fatalf("record body %d+%d outside a %d-byte file", r.bodyOff, r.bodyLen, len(data))
			}
			if r.off == 0 && r.env.ID == env.ID && string(data[r.bodyOff:r.bodyOff+r.bodyLen]) == "hello\r\n" {
				found = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			t.Fatal("the intact first record was not found")
		}
	})
}

// A segment abandoned after a failed write or fdatasync is not appended to
// again, and is deleted once nothing in it is live (at once if nothing
// is), not left behind until the next start.
func TestJournalAbandonedSegmentGoes(t *testing.T) {
	dir := t.TempDir()
	s := openRelaySpool(t, dir)
	j := s.journal
	abandon := func() *segment {
		j.mu.Lock()
		defer j.mu.Unlock()
		sg := j.cur
		j.abandon(sg)
		return sg
	}

	// Nothing live: it goes at once.
	if err := s.Remove(put(t, s, "zero").ID); err != nil {
		t.Fatal(err)
	}
	abandon()
	if n := segments(t, dir); len(n) != 0 {
		t.Fatalf("segments %v after abandoning an idle one", n)
	}

	// Live records: it stays until they are released.
	a, b := put(t, s, "first"), put(t, s, "second")
	old := abandon()
	c := put(t, s, "third")
	if j.lookup(c.ID).seg == old {
		t.Fatal("appended to the abandoned segment")
	}
	if n := segments(t, dir); len(n) != 2 {
		t.Fatalf("segments %v, want the abandoned one (2 live) and the new one", n)
	}
	for _, env := range []*Envelope{a, b} {
		if err := s.Remove(env.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := segments(t, dir); len(n) != 1 || n[0] != j.cur.name+segmentExt {
		t.Errorf("segments %v, want only the current %s", n, j.cur.name)
	}
	if b := readBody(t, s, c.ID); b != "third" {
		t.Errorf("body %q", b)
	}
}
