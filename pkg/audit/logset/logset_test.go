package logset

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
)

// relayLine is a line exactly as audit.Log writes it.
func relayLine(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	l, err := audit.Open(filepath.Join(dir, "a.log"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(audit.Record{
		Time: time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC), Event: audit.Bounced,
		QueueID: "0PGL79KC2VKGDR15", MessageID: "<m1&x@corp.example>", Sender: "alice@corp.example",
		Recipient: "bob@partner.com", PolicyTarget: "partner.com", PolicyLine: 3,
		Requirement: &audit.Requirement{Bits: 112, MinTLS: "1.0", Verify: "none", Mode: "enforce", OnFail: "bounce"},
		MX:          "mx1.partner.com", IP: "192.0.2.25", Reply: "503 5.7.0 encryption too weak 0 less than 112",
		Diagnostic: "503 5.7.0 encryption too weak 0 less than 112", Attempt: 1,
	}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	b, err := os.ReadFile(filepath.Join(dir, "a.log"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := bytes.Cut(b, []byte("\n")) // the record, not its checkpoint
	return line
}

// same checks that Decode agrees with encoding/json on line, and
// reports whether the fast path took it.
func same(t *testing.T, line []byte) bool {
	t.Helper()
	var want, got audit.Record
	werr := json.Unmarshal(line, &want)
	gerr := Decode(line, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: encoding/json err %v, Decode err %v", line, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%q:\nencoding/json %+v\nDecode        %+v", line, want, got)
	}
	// Twice through one Decoder: interned values must not leak between lines.
	var x Decoder
	for range 2 {
		var got2 audit.Record
		if err := x.Decode(line, &got2); (err == nil) != (werr == nil) || (werr == nil && !reflect.DeepEqual(want, got2)) {
			t.Fatalf("%q: Decoder %+v %v", line, got2, err)
		}
	}
	var d decoder
	d.b = line
	var r audit.Record
	return d.record(&r)
}

func TestDecodeFastPath(t *testing.T) {
	line := relayLine(t)
	if !bytes.Contains(line, []byte(`\u003c`)) {
		t.Fatalf("expected encoding/json's HTML escapes in %s", line)
	}
	if !same(t, line) {
		t.Errorf("a relay line missed the fast path: %s", line)
	}
	var rec audit.Record
	if err := Decode(line, &rec); err != nil || rec.MessageID != "<m1&x@corp.example>" || rec.Requirement.Bits != 112 {
		t.Errorf("Decode: %v %+v", err, rec)
	}
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, tc := range []struct {
		line string
		fast bool
	}{
		{`{}`, true},
		{` { "event" : "delivered" , "bits" : 256 } `, true},
		{`{"requirement":null}`, true},
		{`{"requirement":{"bits":1},"requirement":{"mode":"testing"}}`, true}, // merged, as encoding/json does
		{`{"Event":"delivered"}`, false},                                      // case-insensitive key
		{`{"unknown":1}`, false},
		{`{"bits":1.5}`, false},
		{`{"bits":01}`, false},
		{`{"bits":-0}`, true},
		{`{"bits":99999999999999999999}`, false},
		{`{"tls":null}`, false},
		{`{"reply":"a\u00e9\n\"b\""}`, true},
		{`{"reply":"\ud83d\ude00"}`, false},
		{`{"reply":"\ud800"}`, false},
		{"{\"reply\":\"\xff\"}", false},
		{`{"time":"2026-01-02T03:04:05Z"}`, true},
		{`{"auth":"dane","tlsa":"3 1 1 ab","sts_policy_id":"1","sts_mode":"testing","policy_type":"sts","result_type":"validation-failure","published_ignored":true,"sending_ip":"127.0.0.1"}`, true},
		{`{"sources":[{"kind":"list","detail":"partner.com line 3"}],"sts_mx":["*.x"],"policy_strings":["version: STSv1"]}`, false},
		{`{"time":"yesterday"}`, false},
		{`{"event":"x"} x`, false},
		{`{"event":"x",}`, false},
		{`not json`, false},
		{`{"mx":"a"`, false},
		{`{"tls":truex}`, false},
		// The log's own lines, about half of its lines, stay fast.
		{`{"time":"2026-01-02T03:04:05Z","event":"checkpoint","seq":12,"prev":"ab"}`, true},
		{`{"time":"2026-01-02T03:04:05Z","event":"log-repaired","seq":3,"cut_bytes":99,"reason":"a \"b\"","prev":""}`, true},
		{`{"event":"checkpoint","seq":1.5}`, false},
		{`{"Seq":1}`, false},
	} {
		if fast := same(t, []byte(tc.line)); fast != tc.fast {
			t.Errorf("%s: fast path %v, want %v", tc.line, fast, tc.fast)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(relayLine(f))
	for _, s := range []string{`{}`, `{"requirement":{"bits":1}}`, `{"reply":"\u003c\ud83d\ude00"}`, `{"bits":-0}`, `{"time":"2026-01-02T03:04:05.1+01:00"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) { same(t, line) })
}

func BenchmarkDecode(b *testing.B) {
	line := relayLine(b)
	b.SetBytes(int64(len(line)))
	var rec audit.Record
	for b.Loop() {
		if err := Decode(line, &rec); err != nil {
			b.Fatal(err)
		}
	}
}

func writeLog(t *testing.T, path string, gz bool, times ...string) {
	t.Helper()
	var buf bytes.Buffer
	for _, tm := range times {
		buf.WriteString(`{"time":"` + tm + `","event":"delivered","recipient":"a@b.test"}` + "\n")
	}
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(data)
		w.Close()
		data = z.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFilesOldestFirst(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "audit.log")
	writeLog(t, p, false, "2026-01-04T00:00:00Z")
	writeLog(t, p+".1", false, "2026-01-03T00:00:00Z")
	writeLog(t, p+".2.gz", true, "2026-01-02T00:00:00Z", "2026-01-02T01:00:00Z")
	writeLog(t, p+"-20260101", false, "2026-01-01T00:00:00Z")
	writeLog(t, p+".lock", false, "2025-01-01T00:00:00Z")
	writeLog(t, p+"ger", false, "2025-01-01T00:00:00Z")
	writeLog(t, p+".seal", false, "2025-01-01T00:00:00Z")
	writeLog(t, p+".seal.mismatch-20250101T000000Z", false, "2025-01-01T00:00:00Z")
	files, err := Files(p)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f.Path))
	}
	if got, want := strings.Join(names, " "), "audit.log-20260101 audit.log.2.gz audit.log.1 audit.log"; got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	var lines []string
	err = Lines(context.Background(), files, func(file string, n int, line []byte) error {
		var r audit.Record
		if err := Decode(line, &r); err != nil {
			t.Errorf("%s:%d: %v", file, n, err)
		}
		lines = append(lines, r.Time.Format("02T15"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(lines, " "); got != "01T00 02T00 02T01 03T00 04T00" {
		t.Errorf("lines in order %q", got)
	}
	if _, err := Files(filepath.Join(dir, "nothing.log")); err == nil {
		t.Error("no error for a log that does not exist")
	}
}

func BenchmarkDecoder(b *testing.B) {
	line := relayLine(b)
	b.SetBytes(int64(len(line)))
	var rec audit.Record
	var x Decoder
	for b.Loop() {
		if err := x.Decode(line, &rec); err != nil {
			b.Fatal(err)
		}
	}
}

// A fleet's logs: one set per relay; a log named twice, or one whose
// name extends another's in the same directory, would count records twice.
func TestLogs(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a", "audit.log")
	b := filepath.Join(dir, "b", "audit.log")
	for _, p := range []string{a, b} {
		os.MkdirAll(filepath.Dir(p), 0o755)
	}
	writeLog(t, a, false, "2026-01-02T00:00:00Z")
	writeLog(t, a+".1", false, "2026-01-01T00:00:00Z")
	writeLog(t, b, false, "2026-01-03T00:00:00Z")
	logs, err := Logs([]string{a, b})
	if err != nil || len(logs) != 2 || logs[0].Path != a || len(logs[0].Files) != 2 || logs[1].Path != b || len(logs[1].Files) != 1 {
		t.Fatalf("Logs: %+v %v", logs, err)
	}
	if all := AllFiles(logs); len(all) != 3 || all[0].Path != a+".1" || all[2].Path != b {
		t.Errorf("AllFiles: %+v", all)
	}
	if _, err := Logs([]string{a, a}); err == nil || !strings.Contains(err.Error(), "both hold") {
		t.Errorf("a log named twice: %v", err)
	}
	writeLog(t, a+"-b", false, "2026-01-03T00:00:00Z")
	if _, err := Logs([]string{a, a + "-b"}); err == nil || !strings.Contains(err.Error(), "both hold "+a+"-b") {
		t.Errorf("overlapping names: %v", err)
	}
	if _, err := Logs([]string{a, filepath.Join(dir, "c", "audit.log")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing log: %v", err)
	}
}
