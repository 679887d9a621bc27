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
	"syscall"
	"testing"
	"time"
)

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func openSpool(t testing.TB, dir string) *Spool {
	t.Helper()
	s, err := Open(dir, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dirNames lists a directory, sorted.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertEmpty checks that neither tmp/ nor queue/ holds anything.
func assertEmpty(t testing.TB, s *Spool) {
	t.Helper()
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
	if n := dirNames(t, s.queueDir); len(n) != 0 {
		t.Errorf("queue/ not empty: %v", n)
	}
}

func sampleEnvelope() *Envelope {
	return &Envelope{
		From: "alice@example.com",
		Recipients: []Recipient{
			{Address: "bob@partner.com"},
			{Address: "carol@bank.example"},
		},
		MessageID:  "<1@example.com>",
		SMTPUTF8:   true,
		Body8Bit:   true,
		ClientAddr: "127.0.0.1",
		ClientHelo: "mx.example.com",
	}
}

func TestPutRoundTrip(t *testing.T) {
	s := openSpool(t, t.TempDir())
	body := "Subject: hi\r\n\r\nhello\r\n"
	env := sampleEnvelope()
	if err := s.Put(env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if len(env.ID) != idLen || !ValidID(env.ID) {
		t.Fatalf("Put assigned ID %q", env.ID)
	}
	if env.Size != int64(len(body)) {
		t.Errorf("Size = %d, want %d", env.Size, len(body))
	}
	if env.Arrival.IsZero() {
		t.Error("Arrival not set")
	}
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ not empty after Put: %v", n)
	}
	if got := dirNames(t, s.queueDir); !slices.Equal(got, []string{env.ID + ".eml", env.ID + ".json"}) {
		t.Errorf("queue/ = %v", got)
	}
	for _, name := range []string{env.ID + ".eml", env.ID + ".json"} {
		fi, err := os.Stat(filepath.Join(s.queueDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600: mail is private", name, fi.Mode().Perm())
		}
	}

	got, err := s.Envelope(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *env
	want.Arrival = env.Arrival.Round(0)
	got.Arrival = got.Arrival.Round(0)
	if fmt.Sprint(*got) != fmt.Sprint(want) || !got.Arrival.Equal(want.Arrival) {
		t.Errorf("Envelope = %+v\nwant %+v", *got, want)
	}
	rc, err := s.Body(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != body {
		t.Errorf("Body = %q", b)
	}

	ids, err := s.List()
	if err != nil || !slices.Equal(ids, []string{env.ID}) {
		t.Fatalf("List = %v, %v", ids, err)
	}

	got.Recipients[0].State = Delivered
	got.Recipients[0].Attempts = 1
	got.Recipients[0].LastReply = "250 2.0.0 Ok"
	got.Recipients[1].NextAttempt = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	got.DelayNotified = true
	if err := s.Update(got); err != nil {
		t.Fatal(err)
	}
	again, err := s.Envelope(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Recipients[0].State != Delivered || again.Recipients[0].LastReply != "250 2.0.0 Ok" ||
		!again.Recipients[1].NextAttempt.Equal(got.Recipients[1].NextAttempt) || !again.DelayNotified {
		t.Errorf("after Update: %+v", again)
	}
	if !again.Pending() {
		t.Error("Pending() = false with a pending recipient")
	}
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ not empty after Update: %v", n)
	}

	if err := s.Remove(env.ID); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, s)
	if _, err := s.Envelope(env.ID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Envelope after Remove: %v, want ErrNotExist", err)
	}
	if err := s.Update(got); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Update after Remove: %v, want ErrNotExist (no resurrection)", err)
	}
	if n := dirNames(t, s.queueDir); len(n) != 0 {
		t.Errorf("Update after Remove left %v", n)
	}
}

func TestPutRejects(t *testing.T) {
	s := openSpool(t, t.TempDir())
	env := sampleEnvelope()
	if err := s.Put(env, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	dup := sampleEnvelope()
	dup.ID = env.ID
	if err := s.Put(dup, strings.NewReader("y")); !errors.Is(err, ErrExists) {
		t.Errorf("Put with a used ID: %v, want ErrExists", err)
	}
	for _, id := range []string{"../x", "a/b", "a.json", strings.Repeat("A", 65), "é"} {
		e := sampleEnvelope()
		e.ID = id
		if err := s.Put(e, strings.NewReader("x")); err == nil {
			t.Errorf("Put(ID %q) succeeded", id)
		}
		if _, err := s.Envelope(id); err == nil || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Envelope(%q) = %v, want an invalid-ID error", id, err)
		}
		if _, err := s.Body(id); err == nil {
			t.Errorf("Body(%q) succeeded", id)
		}
		if err := s.Remove(id); err == nil {
			t.Errorf("Remove(%q) succeeded", id)
		}
	}
	rc, err := s.Body(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "x" {
		t.Errorf("the duplicate Put changed the body: %q", b)
	}
}

// failingFile fails its Write after limit bytes, or its Sync or Close.
type failingFile struct {
	f                       *os.File
	limit                   int
	written                 int
	writeErr, syncErr, cErr error
}

func (f *failingFile) Write(p []byte) (int, error) {
	if f.writeErr != nil && f.written+len(p) > f.limit {
		n := f.limit - f.written
		f.f.Write(p[:n])
		f.written += n
		return n, f.writeErr
	}
	n, err := f.f.Write(p)
	f.written += n
	return n, err
}

func (f *failingFile) Sync() error {
	if f.syncErr != nil {
		return f.syncErr
	}
	return f.f.Sync()
}

func (f *failingFile) Close() error {
	err := f.f.Close()
	if f.cErr != nil {
		return f.cErr
	}
	return err
}

// errReader returns n bytes, then err: a client connection dying mid-DATA.
type errReader struct {
	n   int
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	n := min(len(p), r.n)
	for i := range p[:n] {
		p[i] = 'a'
	}
	r.n -= n
	return n, nil
}

// TestPutFailureLeavesNothing injects a failure at every step of Put and
// checks that no file of the message is left anywhere and that the error
// is classified for the SMTP reply.
func TestPutFailureLeavesNothing(t *testing.T) {
	enospc := &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}
	edquot := &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}
	eio := &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}
	type fault struct {
		file      int // 0: body, 1: envelope
		limit     int
		write     error
		sync      error
		close     error
		createErr error
	}
	tests := []struct {
		name      string
		fault     fault
		bodyErr   error // the body reader fails
		dirSync   error
		wantSpace bool
	}{
		{name: "body write ENOSPC mid-way", fault: fault{file: 0, limit: 100 << 10, write: enospc}, wantSpace: true},
		{name: "body write EDQUOT at once", fault: fault{file: 0, limit: 0, write: edquot}, wantSpace: true},
		{name: "body write EIO", fault: fault{file: 0, limit: 70000, write: eio}},
		{name: "body fsync EIO", fault: fault{file: 0, sync: eio}},
		{name: "body fsync ENOSPC", fault: fault{file: 0, sync: enospc}, wantSpace: true},
		{name: "body close ENOSPC (NFS)", fault: fault{file: 0, close: enospc}, wantSpace: true},
		{name: "body create ENOSPC", fault: fault{file: 0, createErr: &os.PathError{Op: "open", Path: "x", Err: syscall.ENOSPC}}, wantSpace: true},
		{name: "envelope write ENOSPC", fault: fault{file: 1, limit: 10, write: enospc}, wantSpace: true},
		{name: "envelope fsync EIO", fault: fault{file: 1, sync: eio}},
		{name: "envelope create EMFILE", fault: fault{file: 1, createErr: &os.PathError{Op: "open", Path: "x", Err: syscall.EMFILE}}},
		{name: "client drops mid-DATA", bodyErr: io.ErrUnexpectedEOF},
		{name: "directory fsync EIO", dirSync: eio},
		{name: "directory fsync ENOSPC", dirSync: enospc, wantSpace: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openSpool(t, t.TempDir())
			n := 0
			s.create = func(path string) (spoolFile, error) {
				i := n
				n++
				if i != tc.fault.file {
					return createFile(path)
				}
				if tc.fault.createErr != nil {
					return nil, tc.fault.createErr
				}
				f, err := createFile(path)
				if err != nil {
					return nil, err
				}
				return &failingFile{f: f.(*os.File), limit: tc.fault.limit, writeErr: tc.fault.write, syncErr: tc.fault.sync, cErr: tc.fault.close}, nil
			}
			if tc.dirSync != nil {
				s.commit.Run = func([]struct{}) error { return tc.dirSync }
			}
			var body io.Reader = &errReader{n: 300 << 10, err: io.EOF}
			if tc.bodyErr != nil {
				body = &errReader{n: 200 << 10, err: tc.bodyErr}
			}
			if tc.fault == (fault{}) && tc.bodyErr == nil && tc.dirSync == nil {
				t.Fatal("test case injects nothing")
			}
			err := s.Put(sampleEnvelope(), body)
			if err == nil {
				t.Fatal("Put succeeded despite the fault")
			}
			if got := errors.Is(err, ErrNoSpace); got != tc.wantSpace {
				t.Errorf("errors.Is(%v, ErrNoSpace) = %v, want %v", err, got, tc.wantSpace)
			}
			assertEmpty(t, s)
			if ids, _ := s.List(); len(ids) != 0 {
				t.Errorf("List = %v after a failed Put", ids)
			}
			// The spool still works afterwards.
			s.create = createFile
			s.commit.Run = s.syncQueue
			if err := s.Put(sampleEnvelope(), strings.NewReader("ok")); err != nil {
				t.Fatalf("Put after the fault: %v", err)
			}
		})
	}
}

func TestUpdateFailureKeepsOld(t *testing.T) {
	s := openSpool(t, t.TempDir())
	env := sampleEnvelope()
	if err := s.Put(env, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	s.create = func(path string) (spoolFile, error) {
		f, err := createFile(path)
		if err != nil {
			return nil, err
		}
		return &failingFile{f: f.(*os.File), limit: 20, writeErr: &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}}, nil
	}
	upd := *env
	upd.Recipients = []Recipient{{Address: "bob@partner.com", State: Bounced}}
	if err := s.Update(&upd); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Update = %v, want ErrNoSpace", err)
	}
	got, err := s.Envelope(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Recipients) != 2 || got.Recipients[0].State != Pending {
		t.Errorf("a failed Update changed the envelope: %+v", got)
	}
	if n := dirNames(t, s.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ not empty: %v", n)
	}
}

// TestOpenRecovers lays out what a crash at each point of Put, Update and
// Remove leaves and checks Open keeps exactly the committed messages.
func TestOpenRecovers(t *testing.T) {
	dir := t.TempDir()
	s := openSpool(t, dir)
	keep := sampleEnvelope()
	if err := s.Put(keep, strings.NewReader("kept")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	write := func(path, data string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q := filepath.Join(dir, "queue")
	// Crash while writing the body, or the envelope, or an Update.
	write(filepath.Join(dir, "tmp", "0000000000000001.eml.x"), "half a bo")
	write(filepath.Join(dir, "tmp", "0000000000000002.json.y"), "{\"v\":")
	write(filepath.Join(dir, "tmp", keep.ID+".json.upd.z"), "{")
	// Crash between the body's rename and the envelope's (or mid-Remove).
	write(filepath.Join(q, "0000000000000003.eml"), "orphan body")
	// Envelope whose body is gone.
	write(filepath.Join(q, "0000000000000004.json"), `{"v":1,"id":"0000000000000004"}`)

	s2 := openSpool(t, dir)
	if n := dirNames(t, s2.tmpDir); len(n) != 0 {
		t.Errorf("tmp/ after recovery: %v", n)
	}
	if got, want := dirNames(t, q), []string{keep.ID + ".eml", keep.ID + ".json"}; !slices.Equal(got, want) {
		t.Errorf("queue/ after recovery: %v, want %v", got, want)
	}
	if got := dirNames(t, filepath.Join(dir, "corrupt")); !slices.Equal(got, []string{"0000000000000004.json"}) {
		t.Errorf("corrupt/ = %v", got)
	}
	ids, err := s2.List()
	if err != nil || !slices.Equal(ids, []string{keep.ID}) {
		t.Errorf("List = %v, %v", ids, err)
	}
}

// TestOpenSkipsCleanupWhileInUse: a second process opening the spool (say
// `smgctl queue list` next to a running relay) must not delete a body that
// a live Put has renamed but not yet committed.
func TestOpenSkipsCleanupWhileInUse(t *testing.T) {
	dir := t.TempDir()
	s1 := openSpool(t, dir)
	inflight := filepath.Join(s1.queueDir, "0000000000000003.eml")
	tmp := filepath.Join(s1.tmpDir, "0000000000000003.json.abc")
	for _, p := range []string{inflight, tmp} {
		if err := os.WriteFile(p, []byte("in flight"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s2 := openSpool(t, dir) // a separate open file description: flock conflicts
	for _, p := range []string{inflight, tmp} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("Open while the spool is in use removed %s", p)
		}
	}
	s2.Close()
	s1.Close()
	s3 := openSpool(t, dir)
	assertEmpty(t, s3)
}

func TestEnvelopeVersion(t *testing.T) {
	s := openSpool(t, t.TempDir())
	env := sampleEnvelope()
	if err := s.Put(env, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(s.envPath(env.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"v": 1`, `"state": "pending"`, `"from": "alice@example.com"`, `"message_id": "<1@example.com>"`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("envelope file lacks %s:\n%s", want, raw)
		}
	}
	if bytes.Contains(raw, []byte("next_attempt")) {
		t.Errorf("zero next_attempt written:\n%s", raw)
	}
	for name, data := range map[string]string{
		"future version": strings.Replace(string(raw), `"v": 1`, `"v": 2`, 1),
		"unknown state":  strings.Replace(string(raw), `"pending"`, `"lost"`, 1),
		"other ID":       strings.Replace(string(raw), env.ID, "0000000000000009", 1),
		"not JSON":       "garbage",
	} {
		if err := os.WriteFile(s.envPath(env.ID), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Envelope(env.ID); err == nil {
			t.Errorf("%s: Envelope accepted it", name)
		}
	}
}

func TestRecipientStateText(t *testing.T) {
	for _, st := range []RecipientState{Pending, Delivered, Bounced, Expired} {
		b, err := st.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back RecipientState
		if err := back.UnmarshalText(b); err != nil || back != st {
			t.Errorf("%v: round trip gave %v, %v", st, back, err)
		}
		if st.Final() == (st == Pending) {
			t.Errorf("%v.Final() = %v", st, st.Final())
		}
	}
	if _, err := RecipientState(9).MarshalText(); err == nil {
		t.Error("MarshalText of an unknown state succeeded")
	}
}

func FuzzEnvelope(f *testing.F) {
	env := sampleEnvelope()
	env.ID = "0CT4H1P9VGA2K3QF"
	b, _ := marshalEnvelope(env)
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"A","recipients":[{"address":"x","state":"bounced","next_attempt":"2030-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"v":1,"recipients":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := unmarshalEnvelope(data)
		if err != nil {
			return
		}
		out, err := marshalEnvelope(env)
		if err != nil {
			t.Fatalf("re-marshal: %v", err)
		}
		back, err := unmarshalEnvelope(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		out2, _ := marshalEnvelope(back)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
