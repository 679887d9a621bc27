package relay

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smgctl/smgctl/pkg/audit"
)

type discardRecorder struct{}

func (discardRecorder) Write(...audit.Record) error { return nil }

// BenchmarkObserve is the per-outcome cost the metrics add to the
// delivery path (one audit batch of one recipient).
func BenchmarkObserve(b *testing.B) {
	m := newMetrics(&Relay{})
	rec := m.observe(discardRecorder{})
	r := audit.Record{Event: audit.Delivered, TLS: true, TLSVersion: "TLSv1.3", Bits: 256}
	b.ReportAllocs()
	for b.Loop() {
		rec.Write(r)
	}
}

// The outcome counter agrees with what was written, and only deliveries
// are counted by TLS version and bits. A hop-failed record (an MX passed
// over) is no outcome: it is counted apart.
func TestObserveCounts(t *testing.T) {
	m := newMetrics(&Relay{})
	rec := m.observe(discardRecorder{})
	rec.Write(audit.Record{Event: audit.Delivered, TLS: true, TLSVersion: "TLSv1.2", Bits: 128},
		audit.Record{Event: audit.Delivered},
		audit.Record{Event: audit.Bounced, Bits: 0},
		audit.Record{Event: audit.WouldBounce, TLS: true, TLSVersion: "TLSv1.0", Bits: 256},
		audit.Record{Event: audit.HopFailed, TLS: true, TLSVersion: "TLSv1.3", Bits: 128})
	// Only the observer's collectors: the others read a running relay.
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.outcomes, m.versions, m.bits, m.hopsFailed)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += "," + l.GetValue()
			}
			switch {
			case mt.Counter != nil:
				got[key] = mt.Counter.GetValue()
			case mt.Histogram != nil:
				got[key+",count"] = float64(mt.Histogram.GetSampleCount())
				got[key+",sum"] = mt.Histogram.GetSampleSum()
			}
		}
	}
	for k, v := range map[string]float64{
		"smgctl_relay_recipient_outcomes_total,delivered":    2,
		"smgctl_relay_recipient_outcomes_total,bounced":      1,
		"smgctl_relay_recipient_outcomes_total,would-bounce": 1,
		"smgctl_relay_recipient_outcomes_total,deferred":     0,
		"smgctl_relay_recipient_outcomes_total,hop-failed":   0,
		"smgctl_relay_hops_failed_total":                     1,
		"smgctl_relay_delivered_tls_total,TLSv1.2":           1,
		"smgctl_relay_delivered_tls_total,TLSv1.0":           1,
		"smgctl_relay_delivered_tls_total,none":              1,
		"smgctl_relay_delivered_cipher_bits,count":           3,
		"smgctl_relay_delivered_cipher_bits,sum":             384,
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
