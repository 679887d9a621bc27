package spool

import (
	"strings"
	"testing"
)

// BenchmarkPut measures durable Puts of a 4 KiB message, one at a time:
// three fsyncs each (body, envelope, directory).
func BenchmarkPut(b *testing.B) {
	s := openSpool(b, b.TempDir())
	body := strings.Repeat("x", 4096)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := s.Put(sampleEnvelope(), strings.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkPutParallel is the SMTP server's case: many connections putting
// at once, sharing directory fsyncs (group commit).
func BenchmarkPutParallel(b *testing.B) {
	s := openSpool(b, b.TempDir())
	body := strings.Repeat("x", 4096)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(sampleEnvelope(), strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkJournalPutParallel is the relay's case: small messages into the
// journal from many sessions at once, sharing fdatasyncs.
func BenchmarkJournalPutParallel(b *testing.B) {
	s := openRelaySpool(b, b.TempDir())
	body := strings.Repeat("x", 1000)
	b.SetBytes(int64(len(body)))
	b.SetParallelism(10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Put(sampleEnvelope(), strings.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
