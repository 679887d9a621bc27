package deep

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/internal/testpeer"
	"github.com/smgctl/smgctl/pkg/policy"
	"github.com/smgctl/smgctl/pkg/smtpclient"
)

func tcpDial(addr string) Dial {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// ids returns the suite IDs of ss, sorted.
func ids(ss []Suite) []uint16 {
	var out []uint16
	for _, s := range ss {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

func enumerate(t *testing.T, dial Dial, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Enumerate(ctx, dial, opts, nil)
	if err != nil {
		t.Fatalf("Enumerate: %v", err)
	}
	if !rep.Complete() {
		t.Fatalf("enumeration incomplete: %v", rep.Errors)
	}
	t.Logf("%d connections in %v; weakest %v, strongest %v, preference %s",
		rep.Connections, rep.Elapsed.Round(time.Millisecond), rep.Weakest, rep.Strongest, rep.Preference)
	return rep
}

// checkVersions asserts exactly which versions were accepted, and for
// those listed in suites, exactly which suites.
func checkVersions(t *testing.T, rep *Report, want map[uint16][]uint16) {
	t.Helper()
	for _, vr := range rep.Versions {
		ws, ok := want[vr.Version]
		if vr.Accepted != ok {
			t.Errorf("%s accepted=%v (refusal %q), want %v", policy.VersionName(vr.Version), vr.Accepted, vr.Refusal, ok)
			continue
		}
		if !ok {
			continue
		}
		ws = slices.Clone(ws)
		slices.Sort(ws)
		if got := ids(vr.Suites); !slices.Equal(got, ws) {
			t.Errorf("%s suites\n got  %s\n want %s", policy.VersionName(vr.Version), hexes(got), hexes(ws))
		}
	}
}

func hexes(v []uint16) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%#04x", x))
	}
	return strings.Join(s, " ")
}

// firstOffered is what a server using the client's order picks: the
// first suite of the client's list that it accepts at that version.
func firstOffered(offer []uint16, accepted []Suite) uint16 {
	for _, id := range offer {
		for _, s := range accepted {
			if s.ID == id {
				return id
			}
		}
	}
	return 0
}

func relayOrder(t *testing.T) []uint16 {
	rec, err := goClientHello(smtpclient.RelayOffer(), "")
	if err != nil {
		t.Fatal(err)
	}
	ch, err := parseClientHello(rec)
	if err != nil {
		t.Fatal(err)
	}
	return ch.suites
}

// Debian 12's OpenSSL 3.0 serves NULL suites at security level 0: the
// deep probe must see them and rate them 0 bits, which policy.Evaluate
// turns into the relay's exact bounce text. Neither a default OpenSSL
// client nor smgctl's relay can negotiate anything with this server.
func TestDeepOpenSSLNullOnly(t *testing.T) {
	s := testpeer.StartOpenSSLServer(t, "-cipher", "eNULL:@SECLEVEL=0", "-tls1_2")
	rep := enumerate(t, tcpDial(s.Addr()), Options{ServerName: "s-server.testpeer.test"})
	checkVersions(t, rep, map[uint16][]uint16{
		// NULL-MD5, NULL-SHA, NULL-SHA256, ECDHE-ECDSA-NULL-SHA,
		// ECDHE-RSA-NULL-SHA, AECDH-NULL-SHA.
		VersionTLS12: {0x0001, 0x0002, 0x003b, 0xc006, 0xc010, 0xc015},
	})
	if rep.Weakest == nil || rep.Weakest.Bits != 0 || rep.Strongest.Bits != 0 {
		t.Errorf("weakest %v strongest %v, want 0 bits both", rep.Weakest, rep.Strongest)
	}
	if rep.Weakest.ID != 0x0001 {
		t.Errorf("weakest %v, want the lowest ID among equals (NULL-MD5)", rep.Weakest)
	}
	v := policy.Evaluate(policy.DefaultRequirement(), policy.Outcome{TLS: true, Version: rep.Weakest.Version, CipherSuite: rep.Weakest.ID})
	if v.Diagnostic != "503 5.7.0 encryption too weak 0 less than 112" {
		t.Errorf("diagnostic %q", v.Diagnostic)
	}
	if rep.OpenSSLDefault.Accepted || rep.OpenSSLDefault.Refusal != "handshake_failure" {
		t.Errorf("openssl default %+v, want refused", rep.OpenSSLDefault)
	}
	if rep.Relay.Accepted || rep.Relay.Refusal != "handshake_failure" {
		t.Errorf("relay %+v, want refused", rep.Relay)
	}
	if vr, _ := rep.Version(VersionTLS13); vr.Refusal != "protocol_version" {
		t.Errorf("TLS 1.3 refusal %q", vr.Refusal)
	}
}

func TestDeepOpenSSLTLS13Only(t *testing.T) {
	s := testpeer.StartOpenSSLServer(t, "-tls1_3")
	rep := enumerate(t, tcpDial(s.Addr()), Options{ServerName: "s-server.testpeer.test"})
	checkVersions(t, rep, map[uint16][]uint16{VersionTLS13: {0x1301, 0x1302, 0x1303}})
	if rep.Preference != PreferClient {
		t.Errorf("preference %s, want client (s_server without -serverpref)", rep.Preference)
	}
	if rep.Weakest.ID != 0x1301 || rep.Weakest.Bits != 128 || rep.Strongest.Bits != 256 {
		t.Errorf("weakest %v strongest %v", rep.Weakest, rep.Strongest)
	}
	if n := rep.OpenSSLDefault; !n.Accepted || n.Suite.ID != 0x1302 || n.Suite.Version != VersionTLS13 {
		t.Errorf("openssl default %+v, want TLSv1.3 TLS_AES_256_GCM_SHA384", n.Suite)
	}
	want := firstOffered(relayOrder(t), rep.Accepted())
	if n := rep.Relay; !n.Accepted || n.Suite.ID != want || n.Suite.Version != VersionTLS13 {
		t.Errorf("relay %+v, want TLSv1.3 %s", n.Suite, policy.SuiteName(want))
	}
}

// A TLS 1.0-only server at security level 0: DHE and CAMELLIA suites,
// which crypto/tls cannot negotiate, must show up; newer hellos are
// answered with TLS 1.0.
func TestDeepOpenSSLTLS10Legacy(t *testing.T) {
	s := testpeer.StartOpenSSLServer(t, "-tls1", "-cipher", "ALL:@SECLEVEL=0")
	rep := enumerate(t, tcpDial(s.Addr()), Options{ServerName: "s-server.testpeer.test"})
	checkVersions(t, rep, map[uint16][]uint16{VersionTLS10: {
		0x002f, 0x0035, // AES128-SHA, AES256-SHA
		0x0033, 0x0039, // DHE-RSA-AES128-SHA, DHE-RSA-AES256-SHA
		0x0034, 0x003a, // ADH-AES128-SHA, ADH-AES256-SHA
		0x0041, 0x0084, // CAMELLIA128-SHA, CAMELLIA256-SHA
		0x0045, 0x0088, // DHE-RSA-CAMELLIA128-SHA, DHE-RSA-CAMELLIA256-SHA
		0x0046, 0x0089, // ADH-CAMELLIA128-SHA, ADH-CAMELLIA256-SHA
		0xc009, 0xc00a, 0xc013, 0xc014, // ECDHE-ECDSA/RSA-AES128/256-SHA
		0xc018, 0xc019, // AECDH-AES128-SHA, AECDH-AES256-SHA
	}})
	for _, v := range []uint16{VersionTLS11, VersionTLS12} {
		if vr, _ := rep.Version(v); vr.Refusal != "server answered with TLSv1.0" {
			t.Errorf("%s refusal %q", policy.VersionName(v), vr.Refusal)
		}
	}
	if n := rep.OpenSSLDefault; !n.Accepted || n.Suite.Version != VersionTLS10 || n.Suite.ID != firstOffered(OpenSSLDefaultSuites, rep.Accepted()) {
		t.Errorf("openssl default %+v", n.Suite)
	}
	if n := rep.Relay; !n.Accepted || n.Suite.Version != VersionTLS10 || n.Suite.ID != firstOffered(relayOrder(t), rep.Accepted()) {
		t.Errorf("relay %+v", n.Suite)
	}
}

// With every suite at level 0 and TLS 1.2, the ARIA and CAMELLIA suites
// that Go lacks are seen; -serverpref is detected, and with one lane the
// order found is the server's own order.
func TestDeepOpenSSLServerPreference(t *testing.T) {
	s := testpeer.StartOpenSSLServer(t, "-tls1_2", "-cipher", "ALL:@SECLEVEL=0", "-serverpref")
	rep := enumerate(t, tcpDial(s.Addr()), Options{ServerName: "s-server.testpeer.test", Groups: 1})
	if rep.Preference != PreferServer || rep.PreferenceVersion != VersionTLS12 {
		t.Errorf("preference %s at %#x, want server at TLS 1.2", rep.Preference, rep.PreferenceVersion)
	}
	vr, _ := rep.Version(VersionTLS12)
	for _, id := range []uint16{0xc050, 0xc051, 0xc052, 0xc053, 0xc060, 0xc061, 0x00ba, 0x00c0, 0x00be, 0x00c4, 0xc072, 0xc073, 0xc076, 0xc077} {
		if !slices.Contains(ids(vr.Suites), id) {
			t.Errorf("TLS 1.2 %s (ARIA/CAMELLIA) not found", policy.SuiteName(id))
		}
	}
	out, err := exec.Command(testpeer.RequireOpenSSL(t), "ciphers", "-V", "ALL:@SECLEVEL=0").Output()
	if err != nil {
		t.Fatal(err)
	}
	var serverOrder []uint16
	for _, line := range strings.Split(string(out), "\n") {
		var hi, lo uint16
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "0x%02X,0x%02X", &hi, &lo); err == nil {
			serverOrder = append(serverOrder, hi<<8|lo)
		}
	}
	var found, want []uint16
	for _, s := range vr.Suites {
		found = append(found, s.ID)
	}
	for _, id := range serverOrder {
		if slices.Contains(found, id) {
			want = append(want, id)
		}
	}
	if !slices.Equal(found, want) {
		t.Errorf("order found\n %s\nwant the server's\n %s", hexes(found), hexes(want))
	}
}

// The hard-coded default OpenSSL client list must be what this machine's
// openssl s_client really sends (cipher list and versions).
func TestOpenSSLDefaultMatchesLocal(t *testing.T) {
	bin := testpeer.RequireOpenSSL(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "s_client", "-connect", l.Addr().String())
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	ch, err := parseClientHello(append(hdr, body...))
	if err != nil {
		t.Fatal(err)
	}
	ver, _ := exec.Command(bin, "version").Output()
	if !strings.HasPrefix(string(ver), "OpenSSL 3.0.") {
		t.Skipf("local %s is not OpenSSL 3.0; the list documents Debian 12's", strings.TrimSpace(string(ver)))
	}
	if !slices.Equal(ch.suites, OpenSSLDefaultSuites) {
		t.Errorf("s_client sends\n %s\nOpenSSLDefaultSuites is\n %s", hexes(ch.suites), hexes(OpenSSLDefaultSuites))
	}
	if !slices.Equal(ch.versions, openSSLDefaultVersions) {
		t.Errorf("s_client offers versions %x, want %x", ch.versions, openSSLDefaultVersions)
	}
}

// Over STARTTLS against real Postfix instances (testpeer): the SMTP
// preamble helper and the enumeration together.
func TestDeepPostfix(t *testing.T) {
	tests := []struct {
		mode   testpeer.TLSMode
		want   map[uint16][]uint16
		weak   int
		strong int
	}{
		// DEFAULT:@SECLEVEL=0 at TLS 1.0 with an ECDSA and an RSA
		// certificate: (EC)DHE and RSA key exchange, AES-CBC.
		{testpeer.TLS10Only, map[uint16][]uint16{
			VersionTLS10: {0x002f, 0x0033, 0x0035, 0x0039, 0xc009, 0xc00a, 0xc013, 0xc014},
		}, 128, 256},
		// eNULL:!aNULL: the authenticated NULL suites, NULL-SHA256
		// only in TLS 1.2.
		{testpeer.TLSNullOnly, map[uint16][]uint16{
			VersionTLS10: {0x0001, 0x0002, 0xc006, 0xc010},
			VersionTLS11: {0x0001, 0x0002, 0xc006, 0xc010},
			VersionTLS12: {0x0001, 0x0002, 0x003b, 0xc006, 0xc010},
		}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			t.Parallel()
			pf := testpeer.StartPostfix(t, testpeer.PostfixOptions{TLS: tt.mode})
			rep := enumerate(t, STARTTLS(pf.Addr(), "probe.smgctl.test", 10*time.Second), Options{ServerName: pf.Hostname})
			checkVersions(t, rep, tt.want)
			if rep.Weakest == nil || rep.Weakest.Bits != tt.weak || rep.Strongest.Bits != tt.strong {
				t.Errorf("weakest %v strongest %v, want %d/%d bits", rep.Weakest, rep.Strongest, tt.weak, tt.strong)
			}
			// Neither a default OpenSSL client nor the relay offers NULL
			// suites; against TLS10Only both get TLS 1.0 in their own
			// order (Postfix uses the client's unless told otherwise).
			if tt.mode == testpeer.TLSNullOnly {
				if rep.OpenSSLDefault.Accepted || rep.Relay.Accepted {
					t.Errorf("openssl %+v relay %+v, want both refused", rep.OpenSSLDefault, rep.Relay)
				}
				return
			}
			if n := rep.OpenSSLDefault; !n.Accepted || n.Suite.ID != firstOffered(OpenSSLDefaultSuites, rep.Accepted()) {
				t.Errorf("openssl default %+v", n)
			}
			if n := rep.Relay; !n.Accepted || n.Suite.ID != firstOffered(relayOrder(t), rep.Accepted()) {
				t.Errorf("relay %+v", n)
			}
		})
	}
}
