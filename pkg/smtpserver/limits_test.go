package smtpserver

import (
	"bufio"
	"encoding/base64"
	"net"
	"net/netip"
	"testing"
	"time"
)

// dialFrom connects from a given loopback address.
func (ts *testServer) dialFrom(t *testing.T, local string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	nc, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// TestUnauthenticatedShare: clients outside LimitExempt share
// MaxUnauthenticated until they log in, and each address has MaxPerIP;
// the exempt network is held by neither.
func TestUnauthenticatedShare(t *testing.T) {
	ts := startServer(t, Config{
		MaxConnections: 6, MaxUnauthenticated: 2, MaxPerIP: 1,
		LimitExempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	}, &testBackend{auth: true})
	a := ts.dialFrom(t, "127.0.0.78")
	a.expect("220 ")
	ts.dialFrom(t, "127.0.0.78").expect("421 4.7.0 mx.test Error: too many connections from your address")
	ts.dialFrom(t, "127.0.0.79").expect("220 ")
	ts.dialFrom(t, "127.0.0.80").expect("421 4.7.0 mx.test Error: too many connections,")
	for range 2 { // exempt: neither limit applies
		ts.dialFrom(t, "127.0.0.1").expect("220 ")
	}
	// a logs in and leaves the share: another outside client fits.
	a.ehlo()
	a.startTLS(ts.client)
	a.ehlo()
	a.send("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00secret")) + "\r\n")
	a.expect("235 2.7.0")
	ts.dialFrom(t, "127.0.0.81").expect("220 ")
	if st := ts.Stats(); st.RefusedPerIP != 1 || st.RefusedUnauthenticated != 1 || st.RefusedFull != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestAuthFailureLimit: MaxAuthFailures failed AUTHs close the
// connection with 421, and every later AUTH from that address waits for
// its answer, the right password included; another address does not.
func TestAuthFailureLimit(t *testing.T) {
	const delay = 100 * time.Millisecond
	ts := startServer(t, Config{AuthFailureDelay: delay, AuthFailureDelayMax: 250 * time.Millisecond}, &testBackend{auth: true})
	plain := func(pass string) string {
		return "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user\x00"+pass)) + "\r\n"
	}
	login := func(local string) *rawClient {
		c := ts.dialFrom(t, local)
		c.expect("220 ")
		c.ehlo()
		c.startTLS(ts.client)
		c.ehlo()
		return c
	}
	c := login("127.0.0.90")
	c.send(plain("a"))
	c.expect("535 5.7.8")
	c.send(plain("b"))
	c.expect("535 5.7.8")
	c.send(plain("c"))
	c.expect("421 4.7.0 mx.test Error: too many failed authentication attempts")
	c.closed()
	if st := ts.Stats(); st.AuthFailures != 3 {
		t.Errorf("AuthFailures = %d, want 3", st.AuthFailures)
	}
	c = login("127.0.0.90")
	start := time.Now()
	c.send(plain("secret"))
	c.expect("235 2.7.0")
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("right password after 3 failures answered in %v, want the capped delay", d)
	}
	c = login("127.0.0.91")
	start = time.Now()
	c.send(plain("secret"))
	c.expect("235 2.7.0")
	if d := time.Since(start); d >= delay {
		t.Errorf("another address waited %v", d)
	}
}

// TestClientKey: per-address limits count an IPv6 client by its /64, so
// that one end site cannot pass as many clients (RFC 6177).
func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"192.0.2.7", "192.0.2.7"},
	} {
		if clientKey(netip.MustParseAddr(tc.a)) != clientKey(netip.MustParseAddr(tc.b)) {
			t.Errorf("%s and %s counted apart", tc.a, tc.b)
		}
	}
	if clientKey(netip.MustParseAddr("192.0.2.7")) == clientKey(netip.MustParseAddr("192.0.2.8")) ||
		clientKey(netip.MustParseAddr("2001:db8:1:2::1")) == clientKey(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("different clients counted together")
	}
}
