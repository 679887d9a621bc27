package relay_test

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smgctl/smgctl/pkg/relay"
)

// ISSUE 10 #8, #11: the per-address limit reaches the running relay from
// its configuration, and what it refuses is counted on /metrics, as are
// AUTH failures.
func TestRelayInboundRefusalsCounted(t *testing.T) {
	dir := t.TempDir()
	cfg := relay.DefaultConfig()
	cfg.Listen, cfg.Admin, cfg.Hostname, cfg.Resolver = "127.0.0.1:0", "127.0.0.1:0", "relay.corp.test", "127.0.0.1:53"
	cfg.Spool, cfg.AuditLog, cfg.Policy = filepath.Join(dir, "spool"), filepath.Join(dir, "audit.log"), filepath.Join(dir, "policy.conf")
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} // loopback is outside
	cfg.MaxConnectionsPerIP = 2
	os.WriteFile(cfg.Policy, nil, 0o644)
	l := runRelay(t, nil, cfg)

	greet := func() string {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.77")}}
		c, err := d.Dial("tcp", l.relay.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return line
	}
	for i, want := range []string{"220 ", "220 ", "421 4.7.0 relay.corp.test Error: too many connections from your address"} {
		if got := greet(); !strings.HasPrefix(got, want) {
			t.Errorf("connection %d: %q, want %q", i+1, got, want)
		}
	}
	m := l.metrics(t)
	if v := scrape(t, m, `smgctl_relay_inbound_refused_total{limit="max_connections_per_ip"}`); v != 1 {
		t.Errorf("refused per IP = %v, want 1", v)
	}
	if v := scrape(t, m, "smgctl_relay_auth_failures_total"); v != 0 {
		t.Errorf("auth failures = %v, want 0", v)
	}
}
