package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func rec(i int) Record {
	return Record{
		Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Event: Delivered,
		QueueID: fmt.Sprintf("Q%d", i), Sender: "a@corp.example", Recipient: "b@partner.example",
		PolicyTarget: "partner.example", PolicyLine: 3,
		Requirement: &Requirement{Bits: 112, MinTLS: "TLSv1.0", Verify: "none", Mode: "enforce", OnFail: "bounce"},
		MX:          "mx.partner.example", IP: "127.0.0.1", TLS: true, TLSVersion: "TLSv1.3",
		Cipher: "TLS_AES_128_GCM_SHA256", Bits: 128, Reply: "250 2.0.0 Ok", Attempt: 1,
	}
}

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func TestChainAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "audit.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec(1), rec(2)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Write(rec(3)); err != nil {
		t.Fatal(err)
	}
	l.Close()

	// rec 1, rec 2, checkpoint; rec 3, checkpoint.
	lines := readLines(t, path)
	if len(lines) != 5 {
		t.Fatalf("%d lines", len(lines))
	}
	var first, third Record
	json.Unmarshal(lines[0], &first)
	json.Unmarshal(lines[3], &third)
	if first.Prev != "" {
		t.Errorf("first line prev = %q, want empty", first.Prev)
	}
	if third.Prev != hashLine(lines[2]) || third.QueueID != "Q3" {
		t.Errorf("chain not continued after reopen")
	}
	for i, want := range map[int]int64{2: 2, 4: 4} {
		if m, ok := ParseMark(lines[i]); !ok || Event(m.Event) != Checkpoint || m.Seq != want || m.Prev != hashLine(lines[i-1]) {
			t.Errorf("line %d = %s, want a checkpoint with seq %d", i+1, lines[i], want)
		}
	}
	f, _ := os.Open(path)
	defer f.Close()
	if n, err := Verify(f); err != nil || n != 5 {
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestRecordFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := Open(path, nil)
	l.Write(rec(1))
	l.Close()
	var m map[string]any
	if err := json.Unmarshal(readLines(t, path)[0], &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "event", "queue_id", "sender", "recipient", "policy_target", "policy_line",
		"requirement", "mx", "ip", "tls", "tls_version", "cipher", "bits", "cert_verified", "reply", "attempt", "prev"} {
		if _, ok := m[k]; !ok {
			t.Errorf("field %q missing: %v", k, m)
		}
	}
	req := m["requirement"].(map[string]any)
	for _, k := range []string{"bits", "min_tls", "verify", "mode", "on_fail"} {
		if _, ok := req[k]; !ok {
			t.Errorf("requirement.%s missing", k)
		}
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := Open(path, nil)
	l.Write(rec(0), rec(1), rec(2), rec(3), rec(4))
	l.Close()
	lines := readLines(t, path)
	for name, tc := range map[string]struct {
		lines [][]byte
		at    int
	}{
		"removed line": {append(append([][]byte{}, lines[:2]...), lines[3:]...), 3},
		"edited line":  {[][]byte{lines[0], bytes.Replace(lines[1], []byte("Q1"), []byte("QX"), 1), lines[2], lines[3], lines[4]}, 3},
		"swapped":      {[][]byte{lines[1], lines[0]}, 1},
		"garbage":      {[][]byte{lines[0], []byte("{oops")}, 2},
	} {
		_, err := Verify(bytes.NewReader(append(bytes.Join(tc.lines, []byte("\n")), '\n')))
		var ce *ChainError
		if !errors.As(err, &ce) || ce.Line != tc.at {
			t.Errorf("%s: Verify = %v, want a break at line %d", name, err, tc.at)
		}
	}
}

// TestTornLastLine: the incomplete line a crash left is cut off at the
// next start, the cut is recorded, and the chain runs on intact.
func TestTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := Open(path, nil)
	l.Write(rec(1))
	l.Close()
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte(`{"time":"2025-`)) // a crash mid-write
	f.Close()

	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Write(rec(2))
	l.Close()
	// rec 1, checkpoint, the cut, checkpoint, rec 2, checkpoint.
	lines := readLines(t, path)
	if len(lines) != 6 {
		t.Fatalf("lines = %q", lines)
	}
	if m, ok := ParseMark(lines[2]); !ok || Event(m.Event) != Repaired || m.CutBytes != 14 {
		t.Errorf("line 3 = %s, want the record of a 14-byte cut", lines[2])
	}
	f, _ = os.Open(path)
	defer f.Close()
	if n, err := Verify(f); err != nil || n != 6 {
		t.Errorf("Verify = %d, %v; want the whole chain intact", n, err)
	}
}

func TestConcurrentWritersKeepChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := Open(path, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if err := l.Write(rec(g*100+i), rec(g*100+i)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	f, _ := os.Open(path)
	defer f.Close()
	if n, err := Verify(f); err != nil || n != 1200 { // 400 batches of 2 and a checkpoint
		t.Fatalf("Verify = %d, %v", n, err)
	}
}

func TestScan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := Open(path, nil)
	l.Write(rec(1), rec(2))
	l.Close()
	f, _ := os.Open(path)
	defer f.Close()
	var ids []string
	if err := Scan(f, func(r Record) error { ids = append(ids, r.QueueID); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "Q1,Q2" {
		t.Errorf("ids = %v", ids)
	}
}

func BenchmarkWrite(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.log"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := rec(1)
	b.ReportAllocs()
	for b.Loop() {
		if err := l.Write(r); err != nil {
			b.Fatal(err)
		}
	}
}
