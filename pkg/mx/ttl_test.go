package mx

import (
	"context"
	"testing"
	"time"
)

// TestTLSATTL: the TTL a TLSA answer may be cached for is the smallest of
// the RRset's and of the CNAMEs followed to it; a denial's is the SOA's
// negative TTL, min(TTL, MINIMUM) (RFC 2308 §3), and 0 without an SOA (§5).
func TestTLSATTL(t *testing.T) {
	d, r := newTest(t)
	const h = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	d.AddRR("_25._tcp.mx.a.test. 300 IN TLSA 3 1 1 " + h)
	d.AddRR("_25._tcp.mx.a.test. 120 IN TLSA 2 1 1 " + h)
	d.AddRR("_25._tcp.alias.a.test. 40 IN CNAME _25._tcp.mx.a.test.")
	d.AddA("nodata.a.test", "127.64.0.1")
	d.AddRR("a.test. 900 IN SOA ns.a.test. admin.a.test. 1 3600 600 86400 75")
	d.AddRR("b.test. 30 IN SOA ns.b.test. admin.b.test. 1 3600 600 86400 75")
	d.AddA("nodata.nosoa.test", "127.64.0.2")
	d.AddTXT("_25._tcp.txt.a.test", "not a TLSA record")

	for _, tc := range []struct {
		host string
		recs int
		want time.Duration
	}{
		{"mx.a.test", 2, 120 * time.Second},
		{"alias.a.test", 2, 40 * time.Second},
		{"nodata.a.test", 0, 75 * time.Second}, // NXDOMAIN below an existing name
		{"txt.a.test", 0, 75 * time.Second},    // NODATA
		{"gone.b.test", 0, 30 * time.Second},   // the SOA's own TTL is smaller
		{"nodata.nosoa.test", 0, 0},            // no SOA: not to be cached
	} {
		got, err := r.LookupTLSA(context.Background(), tc.host, 25)
		if err != nil || len(got.Records) != tc.recs || got.TTL != tc.want {
			t.Errorf("%s: %d records, TTL %v, err %v; want %d records, TTL %v", tc.host, len(got.Records), got.TTL, err, tc.recs, tc.want)
		}
	}
}
