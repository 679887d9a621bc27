package report

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/audit"
	"github.com/smgctl/smgctl/pkg/audit/logset"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

var enforce = &audit.Requirement{Bits: 112, MinTLS: "1.0", Verify: "none", Mode: "enforce", OnFail: "bounce"}

// synthetic writes n records cycling through the outcomes a relay
// produces, over domains domains, and returns the path.
func synthetic(t testing.TB, dir string, n, domains int) string {
	t.Helper()
	path := filepath.Join(dir, "audit.log")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		d := fmt.Sprintf("d%d.test", i%domains)
		r := audit.Record{Time: t0.Add(time.Duration(i) * time.Second), QueueID: fmt.Sprintf("Q%08d", i),
			MessageID: fmt.Sprintf("<m%d@corp.test>", i), Sender: "alice@corp.test", Recipient: "bob@" + d,
			MX: "mx." + d, IP: "127.0.0.2", Attempt: 1, Prev: "9f2c0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"}
		switch i % 5 {
		case 0, 1: // listed, delivered over TLS 1.3
			r.Event, r.PolicyTarget, r.PolicyLine, r.Requirement = audit.Delivered, d, 1, enforce
			r.TLS, r.TLSVersion, r.Cipher, r.Bits, r.Reply = true, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, "250 2.0.0 Ok: queued as X"
		case 2: // listed, bounced
			r.Event, r.PolicyTarget, r.PolicyLine, r.Requirement = audit.Bounced, d, 1, enforce
			r.Diagnostic = "503 5.7.0 encryption too weak 0 less than 112"
			r.Reply = r.Diagnostic
		case 3: // listed, deferred (remote 4xx)
			r.Event, r.PolicyTarget, r.PolicyLine, r.Requirement = audit.Deferred, d, 1, enforce
			r.Reply = "451 4.3.0 try later"
		case 4: // an unlisted domain, TLS 1.2 AES-128
			r.Recipient = fmt.Sprintf("carol@u%d.test", i%domains)
			r.Event = audit.Delivered
			r.TLS, r.TLSVersion, r.Cipher, r.Bits, r.Reply = true, "TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 128, "250 ok"
		}
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(append(line, '\n'))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func TestWorkersAgree(t *testing.T) {
	path := synthetic(t, t.TempDir(), 5000, 7)
	// A torn last line, as a crash leaves it: skipped and named.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"time":"2026-01-01T`)
	f.Close()
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var reports []*Report
	for _, w := range []int{1, 2, 5} {
		r, err := Build(context.Background(), files, Options{Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		reports = append(reports, r)
	}
	for _, r := range reports[1:] {
		if !reflect.DeepEqual(r, reports[0]) {
			t.Errorf("reports differ by worker count:\n%+v\n%+v", r, reports[0])
		}
	}
	r := reports[0]
	if r.Records != 5000 || r.Unreadable != 1 || r.UnreadableAt[0] != path+":5001" {
		t.Errorf("records %d unreadable %d %v", r.Records, r.Unreadable, r.UnreadableAt)
	}
	tot := r.Total
	if tot.Messages != 4000 || tot.Delivered != 3000 || tot.Bounced != 1000 || tot.Deferrals != 1000 ||
		*tot.WeakestBits != 128 || *tot.StrongestBits != 256 || tot.Versions["TLSv1.3"] != 2000 || tot.Versions["TLSv1.2"] != 1000 {
		t.Errorf("totals %+v", tot)
	}
	if len(r.Domains) != 14 || len(r.ListedWithFailures) != 7 || len(r.Candidates) != 7 || len(r.Cleartext) != 0 {
		t.Errorf("domains %d, lists %v %v %v", len(r.Domains), r.ListedWithFailures, r.Candidates, r.Cleartext)
	}
	if !r.First.Equal(t0) || !r.Last.Equal(t0.Add(4999*time.Second)) {
		t.Errorf("span %v .. %v", r.First, r.Last)
	}
}

func TestWindowAndDomain(t *testing.T) {
	path := synthetic(t, t.TempDir(), 100, 3)
	files, _ := logset.Files(path)
	for _, tc := range []struct {
		name    string
		opt     Options
		records int
	}{
		{"all", Options{}, 100},
		{"from", Options{From: t0.Add(90 * time.Second)}, 10},
		{"to (exclusive)", Options{To: t0.Add(10 * time.Second)}, 10},
		{"window", Options{From: t0.Add(10 * time.Second), To: t0.Add(20 * time.Second)}, 10},
		{"domain", Options{Domain: "D1.test"}, 26}, // i%3 == 1, less i%5 == 4 (u1.test)
		{"parent domain", Options{Domain: "test"}, 100},
		{"other domain", Options{Domain: "d1.example"}, 0},
	} {
		r, err := Build(context.Background(), files, tc.opt)
		if err != nil || r.Records != tc.records {
			t.Errorf("%s: %v, %d records, want %d", tc.name, err, r.Records, tc.records)
		}
	}
	if _, err := Build(context.Background(), files, Options{Domain: "bad domain"}); err == nil {
		t.Error("a bad --domain was accepted")
	}
}

func TestDiagnosticsBounded(t *testing.T) {
	var g Group
	for i := range 1000 {
		g.count(&audit.Record{Event: audit.Bounced, Diagnostic: fmt.Sprintf("550 5.1.1 <u%d@x.test>: unknown", i)}, false)
	}
	if len(g.Bounces) != maxDiagnostics+1 || g.Bounces[OtherDiagnostics] != 1000-maxDiagnostics {
		t.Errorf("%d distinct diagnostics kept, other %d", len(g.Bounces), g.Bounces[OtherDiagnostics])
	}
}

// BenchmarkReport reports over a 1,000,000-line log (about 600 MB)
// generated once, and over a tenth of it: peak-heap-MB, sampled while
// Build runs, must not grow with the log.
func BenchmarkReport(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) { benchReport(b, n) })
	}
}

func benchReport(b *testing.B, lines int) {
	path := synthetic(b, b.TempDir(), lines, 500)
	files, err := logset.Files(path)
	if err != nil {
		b.Fatal(err)
	}
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	// CPU time as well as wall time: on a shared machine wall time
	// measures the neighbours.
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	cpu0 := cpu()
	b.ResetTimer()
	for b.Loop() {
		r, err := Build(context.Background(), files, Options{})
		if err != nil || r.Records != lines {
			b.Fatalf("%v %d", err, r.Records)
		}
	}
	b.StopTimer()
	b.ReportMetric((cpu()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	close(stop)
	<-done
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MB")
}

// An administrator's deletion or return is a final outcome of its own:
// counted as a message, neither delivered nor bounced, and it does not
// change which entry the domain shows nor belong to any entry. The
// relay's own events count nowhere; a hop-failed record only as
// hops_failed.
func TestRemovedByAdmin(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	recs := []audit.Record{
		{Time: t0, Event: audit.Delivered, QueueID: "Q1", Recipient: "a@p.test", PolicyTarget: "p.test", PolicyLine: 3,
			Requirement: enforce, TLS: true, TLSVersion: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", Bits: 256},
		{Time: t0.Add(time.Second), Event: audit.Deferred, QueueID: "Q2", Recipient: "b@p.test", PolicyTarget: "p.test", PolicyLine: 3, Requirement: enforce},
		{Time: t0.Add(2 * time.Second), Event: audit.Deleted, QueueID: "Q2", Recipient: "b@p.test", Actor: "carol"},
		{Time: t0.Add(3 * time.Second), Event: audit.Returned, QueueID: "Q3", Recipient: "c@p.test", Actor: "dave",
			Diagnostic: "550 5.0.0 delivery cancelled by the administrator"},
		// A relay event, no recipient's: in no count, no "" domain.
		{Time: t0.Add(4 * time.Second), Event: audit.PolicyOutsideJournal, PolicyFile: "/etc/smgctl/policy.conf", PolicySHA256: "ab"},
		{Time: t0.Add(5 * time.Second), Event: audit.TLSRPTSent, ReportDomain: "p.test", RUA: "mailto:r@p.test", ReportID: "x"},
		{Time: t0.Add(6 * time.Second), Event: audit.TLSRPTFailed, ReportDomain: "p.test", RUA: "https://r.p.test/", ReportID: "x", Diagnostic: "HTTP 500"},
		// An MX host an attempt passed over: one hop, no outcome —
		// counted only as hops_failed.
		{Time: t0.Add(7 * time.Second), Event: audit.HopFailed, QueueID: "Q1", Recipient: "a@p.test", PolicyTarget: "p.test", PolicyLine: 3,
			Requirement: enforce, MX: "mx1.p.test", IP: "192.0.2.9", Diagnostic: "503 5.7.0 encryption too weak 0 less than 112", Attempt: 1},
	}
	var lines []byte
	for _, r := range recs {
		b, _ := json.Marshal(r)
		lines = append(append(lines, b...), '\n')
	}
	if err := os.WriteFile(path, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 3} {
		r, err := Build(context.Background(), files, Options{Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		tot := r.Total
		if tot.Messages != 3 || tot.Delivered != 1 || tot.Bounced != 0 || tot.Dropped != 0 || tot.RemovedByAdmin != 2 || tot.Deferrals != 1 || tot.HopsFailed != 1 {
			t.Errorf("workers %d: total %+v", w, tot)
		}
		if len(r.Domains) != 1 || r.Domains[0].RemovedByAdmin != 2 || r.Domains[0].Entry != "p.test" || !r.Domains[0].Listed || r.Domains[0].HopsFailed != 1 {
			t.Errorf("workers %d: domains %+v", w, r.Domains)
		}
		if len(r.Entries) != 1 || r.Entries[0].Name != "p.test" || r.Entries[0].RemovedByAdmin != 0 || r.Entries[0].Messages != 1 || r.Entries[0].HopsFailed != 1 {
			t.Errorf("workers %d: entries %+v", w, r.Entries)
		}
	}
}

// Records written before the relay kept one canonical form may spell a
// domain several ways; the report groups them as the one domain they are.
func TestRecipientDomainCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"u@PLAIN.Test.":    "plain.test",
		"u@ｐｌａｉｎ.test":     "plain.test",
		"u@Bücher.example": "xn--bcher-kva.example",
		`"a@b"@plain.test`: "plain.test",
		"u@plain.test..":   "plain.test.",
		"no-domain":        "(no domain)",
	} {
		if got := RecipientDomain(in); got != want {
			t.Errorf("RecipientDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// A domain its own mode=off entry exempted is no candidate to list, even
// when every delivery met the default; one reached through "*" mode=off
// or no entry still is. Merging partial reports keeps the distinction.
func TestExemptedNoCandidate(t *testing.T) {
	off := &audit.Requirement{Bits: 112, MinTLS: "1.0", Verify: "none", Mode: "off", OnFail: "bounce"}
	strong := func(i int, rcpt, target string, q *audit.Requirement) audit.Record {
		return audit.Record{Time: t0.Add(time.Duration(i) * time.Second), Event: audit.Delivered, QueueID: fmt.Sprintf("Q%d", i),
			Recipient: rcpt, PolicyTarget: target, Requirement: q,
			TLS: true, TLSVersion: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", Bits: 256}
	}
	recs := []audit.Record{
		strong(0, "a@off.test", "off.test", off),
		strong(1, "b@mail.offparent.test", "offparent.test", off),
		strong(2, "c@star.test", "*", off),
		strong(3, "d@none.test", "", nil),
		strong(4, "e@off.test", "off.test", off),
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	var lines []byte
	for _, r := range recs {
		b, _ := json.Marshal(r)
		lines = append(append(lines, b...), '\n')
	}
	if err := os.WriteFile(path, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 4} {
		r, err := Build(context.Background(), files, Options{Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"none.test", "star.test"}; !reflect.DeepEqual(r.Candidates, want) {
			t.Errorf("workers %d: candidates %v, want %v", w, r.Candidates, want)
		}
	}
}

// A hand-off is a final outcome of its own: counted in messages and by
// route, never as a delivery to the domain (its TLS is the gateway's),
// and it puts a listed domain among those with failures.
func TestHandedOffCounted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	recs := []audit.Record{
		{Time: t0, Event: audit.HandedOff, QueueID: "Q1", Recipient: "a@p.test", PolicyTarget: "p.test", PolicyLine: 3,
			Requirement: enforce, MX: "gw.corp.test", Route: "gw.corp.test", TLS: true, TLSVersion: "TLSv1.3",
			Cipher: "TLS_AES_256_GCM_SHA384", Bits: 256, Diagnostic: "503 5.7.0 encryption too weak 0 less than 112"},
		{Time: t0.Add(time.Second), Event: audit.HandedOff, QueueID: "Q2", Recipient: "b@p.test", PolicyTarget: "p.test", PolicyLine: 3,
			Requirement: enforce, MX: "gw.corp.test", Route: "gw.corp.test:2525", TLS: true, TLSVersion: "TLSv1.3",
			Cipher: "TLS_AES_256_GCM_SHA384", Bits: 256},
	}
	var lines []byte
	for _, r := range recs {
		b, _ := json.Marshal(r)
		lines = append(append(lines, b...), '\n')
	}
	if err := os.WriteFile(path, lines, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := logset.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int{1, 2} {
		r, err := Build(context.Background(), files, Options{Workers: w})
		if err != nil {
			t.Fatal(err)
		}
		tot := r.Total
		if tot.Messages != 2 || tot.HandedOff != 2 || tot.Delivered != 0 || tot.HandOffs["gw.corp.test"] != 1 || tot.HandOffs["gw.corp.test:2525"] != 1 {
			t.Errorf("workers %d: total %+v", w, tot)
		}
		if len(r.ListedWithFailures) != 1 || r.ListedWithFailures[0] != "p.test" {
			t.Errorf("workers %d: listed with failures %v", w, r.ListedWithFailures)
		}
	}
}
