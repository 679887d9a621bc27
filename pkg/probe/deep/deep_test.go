package deep

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

func TestBuildClientHello(t *testing.T) {
	tests := []struct {
		name       string
		spec       helloSpec
		wantRecord uint16
		wantSNI    string
		wantExt    bool
		wantKeys   map[uint16]int
	}{
		{"ssl3 has no extensions", helloSpec{legacyVersion: VersionSSL30, suites: []uint16{0x002f}, serverName: "mx.example"}, VersionSSL30, "", false, nil},
		{"tls1.0 with sni", helloSpec{legacyVersion: VersionTLS10, suites: []uint16{0x002f, 0x0035}, serverName: "mx.example"}, VersionTLS10, "mx.example", true, nil},
		{"ip literal is not sent as sni", helloSpec{legacyVersion: VersionTLS12, suites: []uint16{0xc02f}, serverName: "192.0.2.1"}, VersionTLS10, "", true, nil},
		{"tls1.3 key shares", helloSpec{legacyVersion: VersionTLS12, versions: []uint16{VersionTLS13}, suites: []uint16{0x1301}, serverName: "mx.example"}, VersionTLS10, "mx.example", true, map[uint16]int{groupX25519: 32, groupSecp256r1: 65}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := buildClientHello(tt.spec, bytes.NewReader(bytes.Repeat([]byte{7}, 4096)))
			if err != nil {
				t.Fatal(err)
			}
			ch, err := parseClientHello(rec)
			if err != nil {
				t.Fatalf("parse own hello: %v", err)
			}
			if ch.recordVersion != tt.wantRecord || ch.legacyVersion != tt.spec.legacyVersion {
				t.Errorf("record %#x legacy %#x, want %#x %#x", ch.recordVersion, ch.legacyVersion, tt.wantRecord, tt.spec.legacyVersion)
			}
			if !slices.Equal(ch.suites, tt.spec.suites) {
				t.Errorf("suites %x, want %x", ch.suites, tt.spec.suites)
			}
			if ch.serverName != tt.wantSNI {
				t.Errorf("SNI %q, want %q", ch.serverName, tt.wantSNI)
			}
			if (len(ch.extensions) > 0) != tt.wantExt {
				t.Errorf("extensions %v, want present=%v", ch.extOrder, tt.wantExt)
			}
			if tt.wantExt {
				for _, e := range []uint16{extSupportedGroups, extECPointFormats, extSignatureAlgs} {
					if _, ok := ch.extensions[e]; !ok {
						t.Errorf("extension %d missing", e)
					}
				}
				if !bytes.Contains(ch.extensions[extSignatureAlgs], []byte{2, 1}) {
					t.Error("rsa_pkcs1_sha1 not offered")
				}
			}
			if !slices.Equal(ch.versions, tt.spec.versions) {
				t.Errorf("supported_versions %x, want %x", ch.versions, tt.spec.versions)
			}
			if tt.wantKeys != nil && !mapsEqual(ch.keyShares, tt.wantKeys) {
				t.Errorf("key shares %v, want %v", ch.keyShares, tt.wantKeys)
			}
			// RFC 7685: never 256..511 bytes.
			if ch.handshakeLen >= 256 && ch.handshakeLen < 512 {
				t.Errorf("hello is %d bytes, inside the F5 hang range", ch.handshakeLen)
			}
		})
	}
}

func mapsEqual(a, b map[uint16]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestPaddingAvoidsF5Range(t *testing.T) {
	for n := 1; n < 200; n++ {
		suites := candidates(VersionTLS12)[:min(n, len(candidates(VersionTLS12)))]
		for _, name := range []string{"", "mx.example", strings.Repeat("a", 60) + ".example"} {
			rec, err := buildClientHello(helloSpec{legacyVersion: VersionTLS12, suites: suites, serverName: name}, bytes.NewReader(make([]byte, 4096)))
			if err != nil {
				t.Fatal(err)
			}
			ch, err := parseClientHello(rec)
			if err != nil {
				t.Fatal(err)
			}
			if ch.handshakeLen >= 256 && ch.handshakeLen < 512 {
				t.Fatalf("%d suites, sni %q: hello %d bytes", len(suites), name, ch.handshakeLen)
			}
		}
	}
}

func TestParseServerHello(t *testing.T) {
	tests := []struct {
		name    string
		rec     []byte
		want    *ServerHello
		alert   uint8
		wantErr string
	}{
		{"tls1.2", serverHelloRecord(VersionTLS12, 0xc02f, false), &ServerHello{Version: VersionTLS12, LegacyVersion: VersionTLS12, CipherSuite: 0xc02f}, 0, ""},
		{"tls1.3 via supported_versions", serverHelloRecord(VersionTLS13, 0x1302, false), &ServerHello{Version: VersionTLS13, LegacyVersion: VersionTLS12, CipherSuite: 0x1302}, 0, ""},
		{"hello retry request", serverHelloRecord(VersionTLS13, 0x1301, true), &ServerHello{Version: VersionTLS13, LegacyVersion: VersionTLS12, CipherSuite: 0x1301, HelloRetry: true}, 0, ""},
		{"alert", alertRecord(40), nil, 40, ""},
		{"smtp text", []byte("554 5.7.0 go away\r\n"), nil, 0, "not TLS"},
		{"sslv2 reply", []byte{0x80, 0x2e, 0x04, 0x00, 0x01, 0x00, 0x02}, nil, 0, "not TLS"},
		{"truncated", serverHelloRecord(VersionTLS12, 0xc02f, false)[:20], nil, 0, "EOF"},
		{"oversized record", []byte{22, 3, 3, 0xff, 0xff}, nil, 0, "record length"},
		{"certificate first", []byte{22, 3, 3, 0, 4, 11, 0, 0, 0}, nil, 0, "not ServerHello"},
		{"session id too long", func() []byte {
			r := serverHelloRecord(VersionTLS12, 0xc02f, false)
			r[5+4+2+32] = 33
			return r
		}(), nil, 0, "session_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readReply(bytes.NewReader(tt.rec))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && (r.hello == nil || *r.hello != *tt.want) {
				t.Errorf("got %+v, want %+v", r.hello, tt.want)
			}
			if tt.alert != 0 && (r.alert == nil || r.alert.Description != tt.alert) {
				t.Errorf("got alert %+v, want %d", r.alert, tt.alert)
			}
		})
	}
}

// A ServerHello split over two records (legal, RFC 5246 §6.2.1) must be
// reassembled.
func TestFragmentedServerHello(t *testing.T) {
	rec := serverHelloRecord(VersionTLS12, 0x009f, false)
	msg := rec[5:]
	var split []byte
	split = append(split, 22, 3, 3, 0, 3)
	split = append(split, msg[:3]...)
	split = append(split, 22, 3, 3, 0, byte(len(msg)-3))
	split = append(split, msg[3:]...)
	r, err := readReply(bytes.NewReader(split))
	if err != nil || r.hello == nil || r.hello.CipherSuite != 0x009f {
		t.Fatalf("got %+v, %v", r.hello, err)
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add(serverHelloRecord(VersionTLS12, 0xc02f, false))
	f.Add(serverHelloRecord(VersionTLS13, 0x1301, true))
	f.Add(alertRecord(70))
	f.Add([]byte("220 mx ESMTP\r\n"))
	f.Add([]byte{22, 3, 3, 0, 3, 2, 0, 0, 22, 3, 3, 0, 1, 40})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := readReply(bytes.NewReader(data))
		if err == nil && (r.hello == nil) == (r.alert == nil) {
			t.Fatalf("no error but reply %+v", r)
		}
	})
}

func FuzzParseServerHello(f *testing.F) {
	f.Add(serverHelloRecord(VersionTLS13, 0x1302, false)[9:])
	f.Add(serverHelloRecord(VersionTLS12, 0x0001, false)[9:])
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseServerHello(data)
	})
}

func BenchmarkBuildClientHello(b *testing.B) {
	s := helloSpec{legacyVersion: VersionTLS12, suites: candidates(VersionTLS12), serverName: "mx.example"}
	rnd := bytes.NewReader(nil)
	for b.Loop() {
		rnd.Reset(make([]byte, 64))
		if _, err := buildClientHello(s, rnd); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadReply(b *testing.B) {
	rec := serverHelloRecord(VersionTLS13, 0x1302, false)
	r := bytes.NewReader(rec)
	for b.Loop() {
		r.Reset(rec)
		if _, err := readReply(r); err != nil {
			b.Fatal(err)
		}
	}
}

func quick(t *testing.T, dial Dial, opts Options) *Report {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Enumerate(ctx, dial, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// The enumeration algorithm against a scripted server: exact accepted
// sets per version, preference detection both ways, weakest/strongest,
// and the round-trip bound that justifies offer-and-remove.
func TestEnumerateScripted(t *testing.T) {
	accept := map[uint16][]uint16{
		VersionTLS10: {0x0039, 0x000a, 0x0045, 0x0003},         // DHE-AES256, 3DES, DHE-CAMELLIA, export RC4-40
		VersionTLS12: {0xc030, 0xc02f, 0x009f, 0xc050, 0x003b}, // ECDHE-GCM, DHE-GCM, ARIA, NULL-SHA256
		VersionTLS13: {0x1302, 0x1301},
	}
	for _, serverOrder := range []bool{true, false} {
		for _, groups := range []int{1, 4} {
			fs := startFake(t, policyServer(accept, serverOrder))
			rep := quick(t, fs.dial(), Options{ServerName: "mx.example", Groups: groups})
			if !rep.Complete() {
				t.Fatalf("errors: %v", rep.Errors)
			}
			for _, v := range allVersions {
				vr, _ := rep.Version(v)
				want := slices.Clone(accept[v])
				slices.Sort(want)
				if got := ids(vr.Suites); !slices.Equal(got, want) || vr.Accepted != (len(want) > 0) {
					t.Errorf("serverOrder=%v groups=%d %#x: accepted=%v %x, want %x", serverOrder, groups, v, vr.Accepted, got, want)
				}
			}
			if vr, _ := rep.Version(VersionTLS11); vr.Refusal != "server answered with TLSv1.0" {
				t.Errorf("TLS 1.1 refusal %q", vr.Refusal)
			}
			if serverOrder && groups == 1 {
				// One lane with server preference yields the server's order.
				vr, _ := rep.Version(VersionTLS12)
				var got []uint16
				for _, s := range vr.Suites {
					got = append(got, s.ID)
				}
				if !slices.Equal(got, accept[VersionTLS12]) {
					t.Errorf("server order %x, want %x", got, accept[VersionTLS12])
				}
			}
			wantPref := PreferClient
			if serverOrder {
				wantPref = PreferServer
			}
			if rep.Preference != wantPref || rep.PreferenceVersion != VersionTLS13 {
				t.Errorf("preference %s at %#x, want %s at TLS1.3", rep.Preference, rep.PreferenceVersion, wantPref)
			}
			if rep.Weakest == nil || rep.Weakest.ID != 0x003b || rep.Weakest.Bits != 0 {
				t.Errorf("weakest %v, want NULL-SHA256 0 bits", rep.Weakest)
			}
			if rep.Strongest == nil || rep.Strongest.ID != 0x1302 || rep.Strongest.Bits != 256 {
				t.Errorf("strongest %v, want TLS_AES_256_GCM_SHA384", rep.Strongest)
			}
			// Round trips: per version one first offer, then per lane
			// (accepted-in-lane + 1), plus 2 negotiations and 2
			// preference probes. Never one per suite.
			maxConns := 5 + 2 + 2
			for _, s := range accept {
				maxConns += len(s) + groups
			}
			if rep.Connections > maxConns {
				t.Errorf("%d connections, want <= %d", rep.Connections, maxConns)
			}
			if !rep.OpenSSLDefault.Accepted || rep.OpenSSLDefault.Suite.Version != VersionTLS13 {
				t.Errorf("openssl default %+v", rep.OpenSSLDefault)
			}
			// 0x1302 is first in OpenSSL's list and in the server's.
			if rep.OpenSSLDefault.Suite.ID != 0x1302 {
				t.Errorf("openssl default chose %v", rep.OpenSSLDefault.Suite)
			}
		}
	}
}

// Misbehaving servers are reported, never taken as acceptance, and never
// loop forever.
func TestEnumerateMisbehaving(t *testing.T) {
	tests := []struct {
		name    string
		respond func(clientHello) []byte
		wantErr string
	}{
		{"chooses an unoffered suite", func(ch clientHello) []byte {
			return serverHelloRecord(ch.maxOffered(), 0xfefe, false)
		}, "not offered"},
		{"answers in SMTP", func(clientHello) []byte { return []byte("500 5.5.1 what?\r\n") }, "not TLS"},
		{"answers a higher version", func(ch clientHello) []byte {
			if ch.maxOffered() == VersionTLS10 {
				return serverHelloRecord(VersionTLS12, ch.suites[0], false)
			}
			return alertRecord(70)
		}, "TLSv1.2 to a TLSv1.0 hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := startFake(t, tt.respond)
			rep := quick(t, fs.dial(), Options{})
			if rep.Complete() || !strings.Contains(strings.Join(rep.Errors, "\n"), tt.wantErr) {
				t.Fatalf("errors %q, want one containing %q", rep.Errors, tt.wantErr)
			}
			if len(rep.Accepted()) != 0 {
				t.Errorf("accepted %v from a misbehaving server", rep.Accepted())
			}
		})
	}
}

// A server that hangs up without a word refuses; one that never answers
// is an error (the enumeration is then incomplete, not "nothing
// accepted").
func TestEnumerateSilence(t *testing.T) {
	t.Run("hang up", func(t *testing.T) {
		fs := startFake(t, func(clientHello) []byte { return nil })
		rep := quick(t, fs.dial(), Options{})
		if !rep.Complete() || len(rep.Accepted()) != 0 {
			t.Fatalf("errors %v accepted %v", rep.Errors, rep.Accepted())
		}
		if vr, _ := rep.Version(VersionTLS12); vr.Refusal != "connection closed" {
			t.Errorf("refusal %q", vr.Refusal)
		}
	})
	t.Run("stall", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		fs := startFake(t, func(clientHello) []byte { <-release; return nil })
		rep := quick(t, fs.dial(), Options{Timeout: 300 * time.Millisecond})
		if rep.Complete() || !strings.Contains(rep.Errors[0], "deadline") && !strings.Contains(rep.Errors[0], "timeout") {
			t.Fatalf("errors %v, want timeouts", rep.Errors)
		}
	})
}

func TestEnumerateCancelled(t *testing.T) {
	fs := startFake(t, policyServer(map[uint16][]uint16{VersionTLS12: {0xc02f}}, false))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Enumerate(ctx, fs.dial(), Options{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// The relay offer is Go's own hello: what crypto/tls sends for the config.
func TestRelayHelloIsGos(t *testing.T) {
	rec, err := goClientHello(smtpclient.RelayOffer(), "mx.example")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := parseClientHello(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if !slices.Contains(ch.suites, s.ID) {
			t.Errorf("relay hello lacks %s", s.Name)
		}
	}
	if !slices.Contains(ch.versions, VersionTLS10) || !slices.Contains(ch.versions, VersionTLS13) {
		t.Errorf("relay hello versions %x", ch.versions)
	}
	if ch.serverName != "mx.example" {
		t.Errorf("SNI %q", ch.serverName)
	}
	if _, ok := ch.extensions[35]; ok {
		t.Error("session ticket extension sent although tickets are off")
	}
}

// Weak by name even with 112 bits or more (RC4), by bits, or neither.
func TestWeakSuite(t *testing.T) {
	for id, want := range map[uint16]bool{
		0x0005: true,  // TLS_RSA_WITH_RC4_128_SHA: 128 bits, RC4 (RFC 7465)
		0x0009: true,  // TLS_RSA_WITH_DES_CBC_SHA
		0x0003: true,  // TLS_RSA_EXPORT_WITH_RC4_40_MD5
		0x0002: true,  // TLS_RSA_WITH_NULL_SHA
		0x000a: false, // TLS_RSA_WITH_3DES_EDE_CBC_SHA: 112 bits, the floor
		0x002f: false, // TLS_RSA_WITH_AES_128_CBC_SHA
		0x1302: false, // TLS_AES_256_GCM_SHA384
	} {
		if got := weakSuite(newSuite(id, VersionTLS12)); got != want {
			t.Errorf("%s (%d bits): weak %v, want %v", policy.SuiteName(id), policy.CipherBits(id), got, want)
		}
	}
}
